"""Few-shot demonstrations: candidate sets drawn from training data, chosen by paired selection.

The search for demonstrations is one step, shared by every strategy (the engine runs it after
the instruction search when the task sets `prompt.demos.k`) and used alone by the `demos`
strategy. For one instruction (the base):

1. Training examples are shuffled once and split in two: a demonstration pool and the
   examples the sets are compared on. No set is ever scored on an example it holds, and
   dev and test are never touched (a strategy sees training data only).
2. With `source: bootstrap` (as DSPy bootstraps), the target answers every pool example with the
   base instruction; those it answers with full marks become demonstrations, with the target's
   own answer. With `source: labelled`, demonstrations are pool examples with their expected
   answer, and nothing is spent on bootstrapping.
3. `candidates` sets of `k` demonstrations are drawn from the pool; each becomes a candidate with
   the base's text and the set. Bootstrapped sets vary as DSPy's MIPROv2 varies them: the first
   takes the first k bootstrapped demonstrations in pool order, the second only labelled
   examples (whatever bootstrapping found), and each further set a random number s (1 to k)
   of them: s bootstrapped demonstrations at random (all of them when fewer were found). Every
   set is then filled up to k with labelled pool examples that it did not take bootstrapped,
   sent after the bootstrapped ones, as BootstrapFewShot fills its demos. A target whose right
   answers all share one label (a small model that always says "No") thus still gets sets
   that show it the other labels. With a label metric, when every bootstrapped demonstration
   shows the same label (or none was found), a third of the sets instead show one other
   label alone: up to k labelled pool examples of it, a fresh sample each, the other labels
   taking turns (the one the pool holds most of first). Such a target keeps to its one answer
   as long as any demonstration shows it, so every set that shows it ties, and only a set of
   another label alone can move it; which examples do differs from sample to sample, and the
   comparison decides. A target that answers several labels right is not stuck, and gets
   MIPROv2's sets only. A draw that repeats an earlier set (the same examples with the same
   answers) is dropped, and no more sets are planned than a small pool can hold.
4. The base itself (no demonstrations) and every set are scored on the same comparison
   examples (`evaluate_paired`) and ranked by their exact total, a tie keeping the earlier arm
   (the base first): a set must help on the same examples to win.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from random import Random
from typing import Any, NamedTuple

from promptopt.search.context import Candidate, SearchContext, StepReport
from promptopt.search.selection import evaluate_paired
from promptopt.task.example import Example
from promptopt.task.prompt import FEW_DEMO_SETS, MANY_DEMO_SETS, Demo, DemoSource, DemosSpec

OPERATOR = "demos"
DEMOS_STRATEGY = "demos"
"""The strategy that searches demonstrations alone (the engine then adds no demonstration step)."""
FULL_MARKS = 1.0 - 1e-9
"""A bootstrapped demonstration must have been answered with (numerically) full marks."""


@dataclass(frozen=True)
class DemoSizing:
    """What a demonstration search does within its budget."""

    pool: int
    """Training examples demonstrations are drawn from."""
    bootstrap: int
    """Target calls spent answering pool examples (0 for labelled demonstrations)."""
    sets: int
    """Demonstration sets tried."""
    eval_examples: int
    """Training examples every set, and the base without demonstrations, is scored on."""

    @property
    def target_calls(self) -> int:
        """The most target calls the search makes."""
        return self.bootstrap + (self.sets + 1) * self.eval_examples

    def to_json(self) -> dict[str, Any]:
        """As events and `run --dry-run` show it."""
        return asdict(self) | {"target_calls": self.target_calls}


NO_SEARCH = DemoSizing(0, 0, 0, 0)


def size_demo_search(spec: DemosSpec, train: int, target_left: int | None) -> DemoSizing:
    """Fit a demonstration search to the training data and the target calls it may make.

    Half of train (at least k examples, leaving at least one) is the pool; the rest are the
    comparison examples. Under a budget, bootstrapping answers at most a quarter of it (or 2k
    examples). A spec that leaves `candidates` unset then tries as many sets as the rest pays
    for on every comparison example (at least `FEW_DEMO_SETS`, at most `MANY_DEMO_SETS`, as
    MIPROv2's light and heavy presets try); without a budget it tries `FEW_DEMO_SETS`. The
    comparison shrinks to what the rest can pay for every arm; when not even one comparison
    example fits, fewer sets are tried, and when not one set fits, nothing is searched.

    Args:
        spec: The task's `prompt.demos` (k > 0).
        train: How many training examples there are.
        target_left: Target calls the search may make (None: uncapped).

    Returns:
        The sizing; `NO_SEARCH` when k is 0, train is too small, or the budget cannot score one
        set against the base.
    """
    k = spec.k
    if k <= 0 or train < k + 1:
        return NO_SEARCH
    pool = min(train - 1, max(k, train // 2))
    wanted = spec.candidates or (FEW_DEMO_SETS if target_left is None else MANY_DEMO_SETS)
    sets = min(wanted, _distinct_sets(pool, k, spec.source))
    if target_left is None:
        boot = pool if spec.source == "bootstrap" else 0
        return DemoSizing(pool, boot, sets, train - pool)
    if spec.source == "bootstrap":
        # A quarter of the budget for bootstrapping (at least 2k examples to find k right
        # answers among): the comparison that decides between the sets needs the rest.
        pool = min(pool, max(2 * k, target_left // 4))
        sets = min(sets, _distinct_sets(pool, k, spec.source))
        boot = pool
    else:
        boot = 0
    left = target_left - boot
    if spec.candidates is None:
        # More sets give the selection more to choose from, but only while every one is still
        # compared on all the examples: a smaller comparison would decide by noise.
        affordable = left // (train - pool) - 1
        sets = min(sets, max(FEW_DEMO_SETS, affordable))
    evals = min(train - pool, left // (sets + 1)) if left > 0 else 0
    if evals < 1:
        sets = min(sets, left - 1)
        evals = 1
    if sets < 1:
        return NO_SEARCH
    return DemoSizing(pool, boot, sets, evals)


def _distinct_sets(pool: int, k: int, source: DemoSource) -> int:
    """About how many distinct sets a pool holds: its subsets of k, each also with expected
    answers instead of the target's when bootstrapping; a pool of few more than k examples
    holds few, and no more are planned (and paid for) than can be drawn."""
    return math.comb(pool, k) * (2 if source == "bootstrap" else 1)


def demo_step_sizing(
    spec: DemosSpec | None, strategy: str, train: int, search_target: int | None
) -> DemoSizing:
    """The demonstration step the engine runs after an instruction search, as reserved from
    the search's target budget: at most half of it, so the instructions keep the other half.

    Args:
        spec: The task's `prompt.demos` (None: the task asks for no demonstrations).
        strategy: The run's strategy; the `demos` strategy searches them itself.
        train: How many training examples there are.
        search_target: Target calls of the whole search, instructions and demonstrations
            (None: uncapped, and nothing needs reserving).

    Returns:
        The sizing, `NO_SEARCH` when no demonstration step runs.
    """
    if spec is None or strategy == DEMOS_STRATEGY:
        return NO_SEARCH
    target = None if search_target is None else search_target // 2
    return size_demo_search(step_spec(spec), train, target)


def step_spec(spec: DemosSpec) -> DemosSpec:
    """`spec` as the step after an instruction search sizes itself: an unset `candidates` is
    `FEW_DEMO_SETS`, not as many as the budget pays for, because the step shares the search's
    budget and what it leaves goes to the instruction search."""
    if spec.candidates is not None:
        return spec
    return spec.model_copy(update={"candidates": FEW_DEMO_SETS})


def _split(ctx: SearchContext, sizing: DemoSizing) -> tuple[list[Example], list[Example]]:
    """The pool and the comparison examples: one shuffle of train, split in two."""
    train = list(ctx.train)
    ctx.rng.shuffle(train)
    pool = train[: sizing.pool]
    return pool, train[sizing.pool : sizing.pool + sizing.eval_examples]


async def _demonstrations(
    ctx: SearchContext, base: Candidate, pool: Sequence[Example], source: DemoSource
) -> tuple[list[Demo], list[Demo]]:
    """The bootstrapped demonstrations (correct answers of the base) and the labelled ones
    (every pool example with its expected answer)."""
    labelled = [Demo(e.id, ctx.render_input(e), e.target) for e in pool]
    if source == "labelled" or not pool:
        return [], labelled
    results = await ctx.score(base, pool)
    boot = [
        Demo(e.id, ctx.render_input(e), r.output.strip())
        for e, r in zip(pool, results, strict=True)
        if r.error is None and r.score >= FULL_MARKS and r.output.strip()
    ]
    return boot, labelled


def _bootstrapped_count(draw: int, k: int, rng: Random) -> int:
    """How many bootstrapped demonstrations draw number `draw` asks for (MIPROv2's candidate
    sets: its unshuffled bootstrapped set, its labelled-only set, then random sizes)."""
    if draw == 0:
        return k
    if draw == 1:
        return 0
    return rng.randint(1, k)


class DrawnSet(NamedTuple):
    """One candidate set of demonstrations and how it was drawn."""

    demos: tuple[Demo, ...]
    bootstrapped: int
    """How many of its first demonstrations are bootstrapped."""
    label: str | None = None
    """The one label its demonstrations all show, for a set of a label bootstrapping missed."""


UNSHOWN_LABEL_SHARE = 3
"""For a target stuck on one label, one set in this many shows another label alone."""


def _label_key(text: str) -> str:
    return " ".join(text.casefold().split())


def _missed_labels(
    boot: Sequence[Demo], labelled: Sequence[Demo], labels: Sequence[str]
) -> list[tuple[str, list[Demo]]]:
    """When the bootstrapped demonstrations show one label at most (the target is stuck on
    it), each label they do not show with the pool examples of it, the label the pool holds
    most of first (the task's order on ties)."""
    if not labels:
        return []
    expected = {d.id: _label_key(d.output) for d in labelled}
    shown = {expected.get(d.id) for d in boot}
    if len(shown) > 1:
        return []
    by_label: dict[str, list[Demo]] = {}
    for demo in labelled:
        by_label.setdefault(expected[demo.id], []).append(demo)
    missed = [
        (label, by_label[_label_key(label)])
        for label in labels
        if _label_key(label) not in shown and _label_key(label) in by_label
    ]
    missed.sort(key=lambda item: -len(item[1]))
    return missed


def _draw_sets(
    ctx: SearchContext,
    boot: Sequence[Demo],
    labelled: Sequence[Demo],
    k: int,
    n: int,
    labels: Sequence[str] = (),
) -> list[DrawnSet]:
    """Up to `n` distinct sets of `k` demonstrations: for draw i, the bootstrapped ones
    `_bootstrapped_count` asks for (the first ones in pool order for draw 0, a random sample
    for later draws; all there are when fewer were found), then labelled pool examples the
    set did not take bootstrapped, at random, up to k. A draw that repeats an earlier set is
    dropped and the next draw follows (draw 1, the labelled set, is not retried).

    When the target is stuck on one label, the labels it missed (`_missed_labels`) then get a
    third of the sets, in place of the last draws and placed after the first two: each up to
    k pool examples of one label alone, a fresh sample each time, the labels taking turns (when
    a label holds fewer distinct sets, further draws make up the number). The draws before them
    are the ones a search without them makes; for a stuck target they all show its label and
    tie, and which examples of another label move it differs from sample to sample."""
    missed = _missed_labels(boot, labelled, labels)
    planned = n // UNSHOWN_LABEL_SHARE if missed else 0
    seen: set[tuple[tuple[str, str], ...]] = set()

    def fresh(demos: Sequence[Demo]) -> bool:
        same = tuple(sorted((d.id, d.output) for d in demos))
        if not demos or same in seen:
            return False
        seen.add(same)
        return True

    sets: list[DrawnSet] = []
    draws = iter(range(n * 10))

    def draw_until(count: int) -> None:
        while len(sets) < count and (draw := next(draws, None)) is not None:
            size = min(_bootstrapped_count(draw, k, ctx.rng), len(boot))
            picked = list(boot[:size]) if draw == 0 else ctx.rng.sample(list(boot), size)
            taken = {d.id for d in picked}
            rest = [d for d in labelled if d.id not in taken]
            picked += ctx.rng.sample(rest, min(k - len(picked), len(rest)))
            if fresh(picked):
                sets.append(DrawnSet(tuple(picked), size))

    draw_until(n - planned)
    alone: list[DrawnSet] = []
    for attempt in range(planned * 10):
        if len(alone) >= planned:
            break
        label, of_label = missed[attempt % len(missed)]
        demos = tuple(ctx.rng.sample(of_label, min(k, len(of_label))))
        if fresh(demos):
            alone.append(DrawnSet(demos, 0, label))
    # A label with few examples holds few distinct sets: more draws make up the number.
    draw_until(n - len(alone))
    sets[2:2] = alone
    return sets


async def search_demos(
    ctx: SearchContext, base: Candidate, spec: DemosSpec, sizing: DemoSizing
) -> StepReport | None:
    """Search demonstration sets for one instruction and rank them with it on the same
    examples.

    Args:
        ctx: The search context (training data only).
        base: The instruction the demonstrations accompany; it bootstraps them.
        spec: k, the number of sets and where demonstrations come from.
        sizing: What the budget allows (`size_demo_search`).

    Returns:
        A step report whose ranking holds the base and every set, best first (the base wins
        ties), with the mean scores on the comparison examples; None when nothing could be
        searched (an event says why).
    """
    if sizing.sets < 1 or sizing.eval_examples < 1:
        ctx.event("demos_skipped", reason="the budget or the training data is too small")
        return None
    pool, compare_on = _split(ctx, sizing)
    boot, labelled = await _demonstrations(ctx, base, pool, spec.source)
    labels = ctx.labels if spec.source == "bootstrap" else ()
    sets = _draw_sets(ctx, boot, labelled, spec.k, sizing.sets, labels)
    arms: list[Candidate] = [base]
    for i, drawn in enumerate(sets):
        cand = ctx.add_demo_candidate(
            base,
            drawn.demos,
            operator=OPERATOR,
            feedback={
                "source": spec.source,
                "set": i,
                "bootstrapped": drawn.bootstrapped,
                **({"label": drawn.label} if drawn.label is not None else {}),
            },
        )
        if cand is not None:
            arms.append(cand)
    ctx.event(
        "demos_plan",
        base=base.id,
        source=spec.source,
        k=spec.k,
        pool=[e.id for e in pool],
        bootstrapped=[d.id for d in boot],
        sets={c.id: [d.id for d in c.demos] for c in arms[1:]},
        examples=[e.id for e in compare_on],
    )
    if len(arms) == 1:
        ctx.event("demos_skipped", reason="no demonstration set could be drawn")
        return None
    matrix = await evaluate_paired(ctx, arms, compare_on)
    # Exact sums over the same examples, so that equal sets tie exactly and the earlier arm
    # (the base without demonstrations first) keeps its place.
    totals = {c.id: math.fsum(matrix.row(c.id)) for c in arms}
    order = {c.id: i for i, c in enumerate(arms)}
    ranking = tuple(sorted(totals, key=lambda cid: (-totals[cid], order[cid])))
    means = {cid: round(matrix.mean(cid), 4) for cid in ranking}
    ctx.event("demos_selection", ranking=list(ranking), means=means, spent=matrix.calls)
    return StepReport(
        "demos",
        ranking,
        matrix.mean(ranking[0]),
        {"base": base.id, "sets": len(arms) - 1, "eval_examples": len(compare_on), "means": means},
    )
