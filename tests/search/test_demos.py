"""Few-shot demonstrations: the message layout, bootstrapping from training data only, paired
selection of demonstration sets, the `demos` strategy and the demonstration step after an
instruction search, through whole runs with scripted models."""

from __future__ import annotations

import json
import math
import random
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import yaml

from promptopt.app.compare import compare_prompts, prepare_diff
from promptopt.app.evaluate import evaluate_prompt, read_demos_file
from promptopt.app.run import dry_run_plan, execute_run, prepare_run
from promptopt.errors import UsageError
from promptopt.llm.budget import BudgetCaps
from promptopt.llm.cache import NullCache
from promptopt.llm.journal import ResponseJournal
from promptopt.llm.messages import ChatRequest
from promptopt.reporting.html import diff_html, run_html
from promptopt.reporting.markdown import diff_markdown, render_run_markdown
from promptopt.reporting.templating import md_cell
from promptopt.reporting.view import RunView
from promptopt.run.folder import BEST_DEMOS, CANDIDATES, EVENTS, RESPONSES, RunFolder
from promptopt.scoring.runtime import Runtime, RuntimeOptions
from promptopt.scoring.scorer import build_messages
from promptopt.search.context import BudgetedPlanner, Candidate, SearchContext, StepReport
from promptopt.search.demos import (
    NO_SEARCH,
    DemoSizing,
    DrawnSet,
    _draw_sets,
    demo_step_sizing,
    search_demos,
    size_demo_search,
)
from promptopt.search.engine import Engine
from promptopt.search.meta_prompts import load_meta_prompts
from promptopt.search.plan import (
    RunSettings,
    StopRules,
    demo_cost_share,
    final_eval_cost,
    final_reserve,
    initial_system_prompt,
    plan_run,
    planned_demo_sizing,
    search_sizes,
    strategy_plan,
    target_call_max_cost_usd,
    task_demo_sizing,
)
from promptopt.search.state import SearchState
from promptopt.search.strategies.registry import make_strategy
from promptopt.task.loader import LoadedTask, load_task
from promptopt.task.prompt import FEW_DEMO_SETS, MANY_DEMO_SETS, Demo, DemosSpec
from tests.support.search import (
    WORDS_GOOD,
    Counter,
    providers,
    stable,
    target_answer,
    write_task,
)

KEY = "superb"
"""The word whose demonstration makes the scripted target answer right."""
assert KEY in WORDS_GOOD


def demo_inputs(request: ChatRequest) -> list[str]:
    return [m["content"] for m in request.messages[1:-1] if m["role"] == "user"]


def helped_by_key_demo(request: ChatRequest) -> str:
    """Right on every review when a demonstration's review says KEY; else always "positive"
    (so, without demonstrations, right on the positive half only)."""
    review = request.messages[-1]["content"]
    if any(KEY in text for text in demo_inputs(request)):
        return "positive" if any(w in review for w in WORDS_GOOD) else "negative"
    return "positive"


def toy_task(tmp: Path, demos: dict[str, Any] | None, **search: Any) -> LoadedTask:
    path = write_task(tmp, **search)
    spec = yaml.safe_load(path.read_text())
    if demos is not None:
        spec["prompt"] = {"instruction": spec["prompt"], "demos": demos}
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return load_task(path)


class Search:
    """A search context on the toy task, outside the engine."""

    def __init__(self, tmp: Path, target: Counter, demos: dict[str, Any] | None = None) -> None:
        self.task = toy_task(tmp, demos or {"k": 2, "candidates": 4})
        self.target = target
        self.runtime = Runtime(
            self.task,
            RuntimeOptions(concurrency=4),
            store=NullCache(),
            providers=providers(target),
        )
        runtime = self.runtime
        self.state = SearchState(
            train=self.task.splits["train"],
            dev=self.task.split("dev"),
            test=self.task.split("test"),
            scorer=runtime.scorer,
            optimizer=lambda: runtime.client("optimizer"),
            ledger=runtime.ledger,
            meta_prompts=load_meta_prompts(),
            rng=random.Random(0),
            render_input=self.task.render_input,
            layout=self.task.spec.prompt_layout(),
        )
        self.ctx: SearchContext = self.state.context
        initial = self.state.add_candidate(self.state.layout.initial, operator="initial")
        assert initial is not None
        self.initial: Candidate = initial

    def events(self, kind: str) -> list[dict[str, Any]]:
        return [e for e in self.state.pending_events if e["event"] == kind]

    async def search(self) -> tuple[StepReport | None, DemoSizing]:
        """The demonstration search for the initial prompt, as the task's demos ask, unbudgeted."""
        spec = self.ctx.demos_spec
        assert spec is not None
        sizing = size_demo_search(spec, len(self.ctx.train), None)
        async with self.runtime:
            report = await search_demos(self.ctx, self.initial, spec, sizing)
        return report, sizing


# --- messages --------------------------------------------------------------------------------


def test_demo_turns_come_in_order_before_the_input() -> None:
    demos = [Demo("a", "in a", "out a"), Demo("b", "in b", "out b")]
    assert build_messages("sys", "x", demos) == (
        {"role": "system", "content": "sys"},
        {"role": "user", "content": "in a"},
        {"role": "assistant", "content": "out a"},
        {"role": "user", "content": "in b"},
        {"role": "assistant", "content": "out b"},
        {"role": "user", "content": "x"},
    )
    # Without demonstrations, the two messages of old (and so the same cache keys).
    assert build_messages("sys", "x") == (
        {"role": "system", "content": "sys"},
        {"role": "user", "content": "x"},
    )


# --- sizing ----------------------------------------------------------------------------------


@pytest.mark.parametrize("left", [None, 3, 10, 41, 100, 1000])
@pytest.mark.parametrize("source", ["bootstrap", "labelled"])
def test_a_sized_demo_search_fits_its_budget(left: int | None, source: str) -> None:
    spec = DemosSpec.model_validate({"k": 4, "candidates": 6, "source": source})
    sizing = size_demo_search(spec, 40, left)
    if left is not None:
        assert sizing.target_calls <= left
    if sizing != NO_SEARCH:
        assert sizing.pool >= 4 and sizing.pool + sizing.eval_examples <= 40
        assert 1 <= sizing.sets <= 6 and sizing.eval_examples >= 1
        assert sizing.bootstrap == (sizing.pool if source == "bootstrap" else 0)
    assert size_demo_search(spec, 4, None) == NO_SEARCH  # not one example left to compare on
    assert size_demo_search(DemosSpec(k=0), 40, None) == NO_SEARCH


def test_the_demo_step_takes_at_most_half_of_the_search_budget() -> None:
    spec = DemosSpec(k=4, candidates=6)
    assert demo_step_sizing(spec, "ape", 40, 200).target_calls <= 100
    assert demo_step_sizing(None, "ape", 40, 200) == NO_SEARCH
    assert demo_step_sizing(spec, "demos", 40, 200) == NO_SEARCH  # searches them itself


# --- the search ------------------------------------------------------------------------------


async def test_bootstrapped_demos_come_from_train_answered_correctly(tmp_path: Path) -> None:
    s = Search(tmp_path, Counter(target_answer), {"k": 3, "candidates": 5})
    report, sizing = await s.search()
    assert report is not None
    train = {e.id: e for e in s.task.splits["train"]}
    held_out = {e.id for e in (*s.state.dev, *s.state.test)}
    (plan,) = s.events("demos_plan")
    sets = [c for c in s.state.candidates.values() if c.demos]
    assert len(sets) == 5 and all(len(c.demos) == 3 for c in sets)
    boot = set(plan["bootstrapped"])
    # The scripted target says "positive" to every review, so only positive reviews are
    # answered right and bootstrapped.
    assert boot and all(train[i].target == "positive" for i in boot)
    for cand in sets:
        assert cand.text == s.initial.text and cand.parents == (s.initial.id,)
        for demo in cand.demos:
            # From train's pool only, shown with its expected answer (which, for a bootstrapped
            # one, is also the target's answer).
            assert demo.id in train and demo.id not in held_out and demo.id in plan["pool"]
            assert demo.output == train[demo.id].target
            assert demo.input == s.task.render_input(train[demo.id])
    # As MIPROv2 varies its sets: all bootstrapped, then all labelled, then mixed, whose
    # labelled part was not bootstrapped; the third set shows "negative" alone, which the
    # target never answered right.
    counts = [sum(d.id in boot for d in c.demos) for c in sets]
    assert counts[0] == 3 and counts[2] == 0 and all(1 <= n <= 3 for n in counts[3:])
    assert {d.id for d in sets[1].demos} <= set(plan["pool"])
    assert {d.output for d in sets[2].demos} == {"negative"}
    for cand in sets[3:]:
        assert all(d.output == "negative" for d in cand.demos if d.id not in boot)
    # Every arm, the instruction without demonstrations too, was compared on the same examples,
    # none of them inside any set.
    compared = plan["examples"]
    assert len(compared) == sizing.eval_examples
    assert not {d.id for c in sets for d in c.demos} & set(compared)
    for cand in sets:
        assert sorted(cand.scores["train"]) == sorted(compared)
    assert set(compared) <= set(s.initial.scores["train"])
    assert set(report.ranking) == {s.initial.id, *(c.id for c in sets)}
    # Bootstrapping answered the pool once; then every arm answered the comparison examples.
    assert s.target.calls == sizing.pool + 6 * sizing.eval_examples


async def test_a_target_biased_to_one_label_still_gets_sets_showing_the_others(
    tmp_path: Path,
) -> None:
    # The scripted target says "positive" to every review, so every bootstrapped demonstration
    # is positive; the labelled and mixed sets show "negative" too.
    s = Search(tmp_path, Counter(target_answer), {"k": 4, "candidates": 6})
    await s.search()
    sets = [c for c in s.state.candidates.values() if c.demos]
    assert len(sets) == 6
    assert {d.output for d in sets[0].demos} == {"positive"}
    showing_both = [c for c in sets if {d.output for d in c.demos} == {"positive", "negative"}]
    assert len(showing_both) >= 2
    # A third of the sets, the third and the fourth, show the label it never answered right
    # alone, each another sample of it.
    alone = sets[2:4]
    for cand in alone:
        assert {d.output for d in cand.demos} == {"negative"} and len(cand.demos) == 4
        assert cand.feedback is not None
        assert cand.feedback["label"] == "negative" and cand.feedback["bootstrapped"] == 0
    assert {d.id for d in alone[0].demos} != {d.id for d in alone[1].demos}
    assert all("label" not in (c.feedback or {}) for c in sets if c not in alone)
    (plan,) = s.events("demos_plan")
    assert len(plan["sets"]) == 6


def sticks_to_positive(request: ChatRequest) -> str:
    """A target that answers "positive" while any demonstration shows it (or none is sent), and
    reads the review once every demonstration is negative."""
    outputs = [m["content"] for m in request.messages[1:-1] if m["role"] == "assistant"]
    review = request.messages[-1]["content"]
    if outputs and all(o == "negative" for o in outputs):
        return "positive" if any(w in review for w in WORDS_GOOD) else "negative"
    return "positive"


async def test_a_set_of_the_label_a_target_never_gives_can_win(tmp_path: Path) -> None:
    s = Search(tmp_path, Counter(sticks_to_positive), {"k": 4, "candidates": 6})
    report, _ = await s.search()
    assert report is not None
    best = s.state.candidates[report.ranking[0]]
    assert {d.output for d in best.demos} == {"negative"}
    assert best.feedback is not None and best.feedback["label"] == "negative"
    assert report.best_score == pytest.approx(1.0)
    # Every set that shows "positive" did no better than the instruction, which ranks first
    # among them.
    after = [
        cid for cid in report.ranking if "label" not in (s.state.candidates[cid].feedback or {})
    ]
    assert after[0] == s.initial.id


def _labelled_draws(
    boot: int, pool: int, k: int, n: int, seed: int = 0, labels: tuple[str, ...] = ()
) -> list[DrawnSet]:
    """The sets drawn from a pool whose first `boot` examples the target answered right ("yes":
    the target's answer, "no": an expected answer it missed), for a label metric's `labels`."""
    ctx = SimpleNamespace(rng=random.Random(seed))
    demos = [Demo(f"e{i}", f"input {i}", "yes" if i < boot else "no") for i in range(pool)]
    return _draw_sets(ctx, demos[:boot], demos, k, n, labels)  # type: ignore[arg-type]


def _draws(
    boot: int, pool: int, k: int, n: int, seed: int = 0
) -> list[tuple[tuple[Demo, ...], int]]:
    """The sets drawn without a label metric, each with how many of its demonstrations are
    bootstrapped."""
    return [(d.demos, d.bootstrapped) for d in _labelled_draws(boot, pool, k, n, seed)]


def _drawn(boot: int, pool: int, k: int, n: int, seed: int = 0) -> list[tuple[Demo, ...]]:
    return [demos for demos, _ in _draws(boot, pool, k, n, seed)]


def test_a_strong_target_still_gets_full_sets() -> None:
    # 9 of 10 pool examples answered right leave one that was not: every set is filled up to k
    # with labelled examples it did not take bootstrapped, whatever the target answered.
    sets = _drawn(boot=9, pool=10, k=4, n=6)
    assert len(sets) == 6 and all(len(s) == 4 for s in sets)
    assert all(len({d.id for d in s}) == 4 for s in sets)


def test_the_sets_are_mipro_s_whatever_bootstrapping_found() -> None:
    # Two right answers among ten, k = 4: the first set takes both and fills up, the second is
    # labelled only (before, every set took both), later ones take one or both at random.
    draws = _draws(boot=2, pool=10, k=4, n=6)
    assert [b for _, b in draws[:2]] == [2, 0]
    assert all(1 <= b <= 2 for _, b in draws[2:])
    assert all(len(s) == 4 for s, _ in draws)
    # Bootstrapped demonstrations come first, as BootstrapFewShot sends them.
    assert all({d.id for d in s[:b]} <= {"e0", "e1"} for s, b in draws)
    # The labelled fill comes from the whole pool but the set's own bootstrapped picks: with
    # nine right answers, a set asking for one bootstrapped demonstration fills up with
    # examples the target also answered right (before, only with the one it missed, then
    # with bootstrapped ones).
    draws = _draws(boot=9, pool=10, k=4, n=20, seed=3)
    one = [s for s, b in draws if b == 1]
    assert one and any("e9" not in {d.id for d in s} for s in one)
    first, taken = draws[0]
    assert taken == 4 and [d.id for d in first] == ["e0", "e1", "e2", "e3"]


def test_each_label_bootstrapping_missed_gets_a_set_of_its_own() -> None:
    # Every right answer is "yes": two of six sets (the third and fourth) show the pool's "no"
    # examples alone, in place of the last random draws; the other draws are those made
    # without labels.
    plain = _labelled_draws(boot=3, pool=12, k=4, n=6)
    draws = _labelled_draws(boot=3, pool=12, k=4, n=6, labels=("yes", "no"))
    assert len(draws) == 6 and [d for d in draws if d.label is None] == plain[:4]
    focused = [d for d in draws if d.label is not None]
    assert [d.label for d in focused] == ["no", "no"] and focused == draws[2:4]
    for drawn in focused:
        assert drawn.bootstrapped == 0 and len(drawn.demos) == 4
        assert {d.output for d in drawn.demos} == {"no"}
    assert focused[0].demos != focused[1].demos
    # A target that answered both labels right somewhere is not stuck: only MIPROv2's sets.
    ctx = SimpleNamespace(rng=random.Random(0))
    both = [Demo("a", "x", "yes"), Demo("b", "y", "no")]
    pool = [*both, *(Demo(f"e{i}", "z", ("yes", "no")[i % 2]) for i in range(10))]
    labels = ("yes", "no")
    assert all(d.label is None for d in _draw_sets(ctx, both, pool, 4, 6, labels))  # type: ignore[arg-type]
    # A label the pool does not hold gets no set; labels match answers whatever their case
    # and spacing.
    draws = _labelled_draws(boot=3, pool=12, k=4, n=6, labels=("YES ", "maybe", " NO"))
    assert {d.label for d in draws if d.label is not None} == {" NO"}


def test_missed_labels_take_turns_in_a_third_of_the_sets_most_frequent_first() -> None:
    ctx = SimpleNamespace(rng=random.Random(0))
    # Nothing right: every label is missed. The pool holds 6 "c", 4 "b" and 2 "a".
    pool = [Demo(f"e{i}", "x", "c" if i < 6 else "b" if i < 10 else "a") for i in range(12)]
    draws = _draw_sets(ctx, [], pool, 2, 12, ("a", "b", "c"))  # type: ignore[arg-type]
    assert len(draws) == 12
    assert [d.label for d in draws if d.label is not None] == ["c", "b", "a", "c"]
    # Right answers of two labels of three: the third gets no set of its own.
    ctx = SimpleNamespace(rng=random.Random(0))
    right = [Demo("e0", "x", "c"), Demo("e6", "x", "b")]
    assert all(d.label is None for d in _draw_sets(ctx, right, pool, 2, 6, ("a", "b", "c")))  # type: ignore[arg-type]
    # Fewer than k of a label: all there are, once (a second sample would repeat it, and is
    # dropped as any repeated set is); another draw takes its place.
    ctx = SimpleNamespace(rng=random.Random(0))
    draws = _draw_sets(ctx, [], pool, 3, 6, ("a",))  # type: ignore[arg-type]
    (alone,) = [d for d in draws if d.label == "a"]
    assert sorted(d.id for d in alone.demos) == ["e10", "e11"] and len(draws) == 6
    # Two "yes" among twelve, k = 4, 18 sets: one "yes" set alone, and still 18 sets.
    ctx = SimpleNamespace(rng=random.Random(0))
    few = [Demo(f"e{i}", "x", "yes" if i < 2 else "no") for i in range(12)]
    draws = _draw_sets(ctx, few[2:4], few, 4, 18, ("no", "yes"))  # type: ignore[arg-type]
    assert len(draws) == 18 and [d.label for d in draws if d.label] == ["yes"]
    # Too few sets to spare one (n // 3 is 0).
    ctx = SimpleNamespace(rng=random.Random(0))
    assert all(d.label is None for d in _draw_sets(ctx, [], pool, 2, 2, ("a",)))  # type: ignore[arg-type]


def test_repeated_sets_are_dropped_and_the_draws_go_on() -> None:
    # A pool of exactly k holds one set of k: it comes once, and no shorter set makes up the
    # number; with one example more, the repeats are dropped and distinct sets follow.
    sets = _drawn(boot=4, pool=4, k=4, n=3)
    assert [len(s) for s in sets] == [4]
    sets = _drawn(boot=5, pool=5, k=4, n=4)
    assert len(sets) == 4 and len({tuple(sorted(d.id for d in s)) for s in sets}) == 4


def test_no_more_sets_are_planned_than_the_pool_holds() -> None:
    # Nine training examples and k = 4: a pool of 4 holds one set of examples (bootstrapped,
    # or labelled when an expected answer differs from the target's), and the calls for four
    # or five more were set aside for nothing (taken from the instruction search).
    spec = DemosSpec(k=4, candidates=6)
    assert size_demo_search(spec, 9, None).sets == 2
    assert size_demo_search(spec, 9, 100).sets == 2
    assert size_demo_search(DemosSpec(k=4, candidates=6, source="labelled"), 9, None).sets == 1
    small = size_demo_search(DemosSpec(k=1, candidates=6), 40, 8)
    assert small.sets == min(6, 2 * math.comb(small.pool, 1)) < 6
    assert size_demo_search(spec, 40, None).sets == 6


def test_an_unset_set_count_grows_with_the_budget_while_every_set_sees_every_example() -> None:
    # Fifty training examples, k = 4: a pool of 25 (bootstrapped for 25 calls) and 25
    # comparison examples, each costing 25 calls per arm (the base is one arm).
    unset = DemosSpec(k=4)
    assert size_demo_search(unset, 50, None).sets == FEW_DEMO_SETS
    wide = size_demo_search(unset, 50, 500)
    assert (wide.sets, wide.eval_examples) == (MANY_DEMO_SETS, 25)
    assert wide.target_calls == 25 + 19 * 25 <= 500
    assert size_demo_search(unset, 50, 250).sets == 8  # (250 - 25) // 25 arms, one the base
    assert size_demo_search(unset, 50, 10_000).sets == MANY_DEMO_SETS
    # Too little for six sets on every example: six, compared on fewer, as a set count does.
    tight = size_demo_search(unset, 50, 100)
    assert tight == size_demo_search(DemosSpec(k=4, candidates=FEW_DEMO_SETS), 50, 100)
    assert (tight.sets, tight.eval_examples) == (FEW_DEMO_SETS, 10)
    # A count the task sets is kept whatever the budget.
    assert size_demo_search(DemosSpec(k=4, candidates=6), 50, 500).sets == 6
    assert size_demo_search(DemosSpec(k=4, candidates=30), 50, None).sets == 30


def test_the_step_after_an_instruction_search_keeps_to_six_sets_when_unset() -> None:
    # The step shares the search's budget: what it does not spend goes to the instructions.
    step = demo_step_sizing(DemosSpec(k=4), "opro", 50, 1000)
    assert step.sets == FEW_DEMO_SETS and step.eval_examples == 25
    assert step == demo_step_sizing(DemosSpec(k=4, candidates=FEW_DEMO_SETS), "opro", 50, 1000)


def test_the_demos_strategy_plans_the_sets_its_budget_pays_for() -> None:
    strategy, _ = make_strategy("demos", {})
    assert isinstance(strategy, BudgetedPlanner)
    plan = strategy.plan_for_budget({"train": 50, "dev": 50, "test": 100}, 500, None)
    assert plan.layout["sets"] == MANY_DEMO_SETS and plan.target_calls == 500
    pinned, _ = make_strategy("demos", {"candidates": 6})
    assert isinstance(pinned, BudgetedPlanner)
    assert pinned.plan_for_budget({"train": 50}, 500, None).layout["sets"] == 6


async def test_labelled_demos_need_no_bootstrap_and_keep_expected_answers(
    tmp_path: Path,
) -> None:
    s = Search(tmp_path, Counter(target_answer), {"k": 4, "candidates": 3, "source": "labelled"})
    _, sizing = await s.search()
    train = {e.id: e for e in s.task.splits["train"]}
    demos = [d for c in s.state.candidates.values() for d in c.demos]
    assert len(demos) == 12
    assert all(d.output == train[d.id].target for d in demos)
    assert {d.output for d in demos} == {"positive", "negative"}
    # Nothing was bootstrapped, so no label was missed: no set of one label alone.
    assert all("label" not in (c.feedback or {}) for c in s.state.candidates.values())
    assert s.target.calls == 4 * sizing.eval_examples


async def test_paired_selection_picks_the_set_that_helps(tmp_path: Path) -> None:
    s = Search(tmp_path, Counter(helped_by_key_demo), {"k": 2, "candidates": 6})
    report, _ = await s.search()
    assert report is not None
    cands = s.state.candidates
    helping = [c for c in cands.values() if any(KEY in d.input for d in c.demos)]
    assert helping, "the seed must draw at least one set with the key demonstration"
    best = cands[report.ranking[0]]
    assert any(KEY in d.input for d in best.demos)
    assert report.best_score == pytest.approx(1.0)
    assert (best.mean("train") or 0) > (s.initial.mean("train") or 0)
    # The sets without the key did no better than the instruction alone, which ranks first
    # among equals.
    others = [cid for cid in report.ranking if not any(KEY in d.input for d in cands[cid].demos)]
    assert others[0] == s.initial.id


async def test_a_demonstration_must_be_a_training_example(tmp_path: Path) -> None:
    s = Search(tmp_path, Counter(target_answer))
    dev = s.state.dev[0]
    with pytest.raises(ValueError, match="training examples"):
        s.ctx.add_demo_candidate(s.initial, [Demo(dev.id, "x", "y")], operator="demos")
    assert len(s.state.candidates) == 1


async def test_the_same_examples_with_other_answers_are_another_set(tmp_path: Path) -> None:
    # A bootstrapped demonstration holds the target's answer, a labelled one the expected
    # answer: the same examples with either are two prompts (before, the second was dropped as
    # a duplicate of the first).
    s = Search(tmp_path, Counter(target_answer))
    example = s.ctx.train[0]
    mine = s.ctx.add_demo_candidate(s.initial, [Demo(example.id, "x", "good")], operator="demos")
    other = s.ctx.add_demo_candidate(s.initial, [Demo(example.id, "x", "Good.")], operator="demos")
    again = s.ctx.add_demo_candidate(s.initial, [Demo(example.id, "x", "good")], operator="demos")
    assert mine is not None and other is not None and again is None


# --- whole runs ------------------------------------------------------------------------------


async def run(
    task: LoadedTask,
    folder: RunFolder,
    strategy_name: str,
    target: Counter,
    caps: BudgetCaps | None = None,
    *,
    resume: bool = False,
    initial_demos: tuple[Demo, ...] = (),
    **params: Any,
) -> dict[str, Any]:
    strategy, validated = make_strategy(strategy_name, params)
    settings = RunSettings(
        strategy=strategy_name,
        params=validated.model_dump(mode="json"),
        seed=0,
        caps=caps or BudgetCaps(),
        stop=StopRules(),
        concurrency=4,
        initial_demos=initial_demos,
    )
    runtime = Runtime(
        task,
        RuntimeOptions(concurrency=4, caps=settings.caps),
        store=NullCache(),
        journal=ResponseJournal(folder.file(RESPONSES)),
        providers=providers(target),
    )
    async with runtime:
        engine = Engine(task, runtime, folder, settings, strategy, load_meta_prompts())
        return (await engine.run(resume=resume)).to_json()


def test_the_demos_strategy_s_dry_run_plans_the_task_s_sets(tmp_path: Path) -> None:
    # The plan follows the task's prompt.demos as the search will: an explicit count, an
    # unset one grown to the target budget, and an unset one kept at 6 under a cost cap.
    # 40 training examples: 20 bootstrapped, then 20 comparison examples per arm, the base
    # and 18 sets (20 + 19 * 20 = 400).
    budget = RESERVE + 400

    def planned(demos: dict[str, Any], **caps: Any) -> Any:
        task = toy_task(tmp_path, demos)
        return dry_run_plan(prepare_run(task, strategy="demos", target_calls=budget, **caps))

    pinned = planned({"k": 2, "candidates": 3})
    assert (pinned.layout["sets"], pinned.layout["eval_examples"]) == (3, 20)
    assert planned({"k": 2}).layout["sets"] == MANY_DEMO_SETS
    labelled = planned({"k": 2, "source": "labelled"}).layout
    assert labelled["bootstrap"] == 0 and labelled["sets"] == MANY_DEMO_SETS
    assert planned({"k": 2}, max_cost=100.0).layout["sets"] == FEW_DEMO_SETS


async def test_the_demos_strategy_tries_the_sets_the_run_planned(tmp_path: Path) -> None:
    async def sets_tried(demos: dict[str, Any], **caps: Any) -> int:
        task = toy_task(tmp_path, demos)
        prepared = prepare_run(task, strategy="demos", target_calls=RESERVE + 400, **caps)
        shown = dry_run_plan(prepared).layout["sets"]
        folders: list[RunFolder] = []
        await execute_run(
            prepared,
            out=tmp_path / "runs",
            no_cache=True,
            on_folder=folders.append,
            providers=providers(Counter(target_answer)),
        )
        (plan,) = [e for e in folders[0].read_jsonl(EVENTS) if e["event"] == "demos_plan"]
        assert len(plan["sets"]) == shown
        return len(plan["sets"])

    assert await sets_tried({"k": 2}) == MANY_DEMO_SETS
    assert await sets_tried({"k": 2, "candidates": 3}) == 3
    assert await sets_tried({"k": 2}, max_cost=100.0) == FEW_DEMO_SETS


def final_requests(target: Counter, prefix: str) -> list[list[dict[str, str]]]:
    """The target requests on held-out inputs ("review 1xx" is dev, "review 2xx" test)."""
    requests = [json.loads(raw) for raw in target.requests]
    return [r for r in requests if r[-1]["content"].startswith(f"review {prefix}")]


RESERVE = final_reserve(20, 20, 3)


async def test_the_demos_strategy_end_to_end(tmp_path: Path) -> None:
    task = toy_task(tmp_path, {"k": 2, "candidates": 6})
    folder = RunFolder.create(tmp_path / "runs", "toy")
    target = Counter(helped_by_key_demo)
    cap = RESERVE + 80
    summary = await run(task, folder, "demos", target, BudgetCaps(target_calls=cap))

    assert target.calls <= cap
    assert summary["usage"]["optimizer"]["requests"] == 0
    # The instruction is unchanged; the demonstrations made the difference, on test too.
    assert summary["best_instruction"] == summary["initial_instruction"]
    assert summary["scores"]["initial"]["test"] == pytest.approx(0.5)
    assert summary["scores"]["best"]["test"] == pytest.approx(1.0)
    assert summary["test_comparison"]["verdict"] == "improved"
    best_demos = folder.read_json(BEST_DEMOS)
    assert best_demos is not None and best_demos["id"] == summary["best_id"]
    assert [d["id"] for d in best_demos["demos"]] == summary["best_demos"]
    assert len(summary["best_demos"]) == 2
    assert any(KEY in d["input"] for d in best_demos["demos"])
    assert all(i.startswith("r") and int(i[1:]) < 40 for i in summary["best_demos"])  # train
    # The final evaluation sent the chosen demonstrations, in order, before every test input.
    sent = [d["input"] for d in best_demos["demos"]]
    with_demos = [r for r in final_requests(target, "2") if len(r) > 2]
    assert len(with_demos) == 20
    assert all([m["content"] for m in r[1:-1:2]] == sent for r in with_demos)
    # candidates.jsonl records each set with its candidate.
    records = {c["id"]: c for c in folder.read_jsonl(CANDIDATES)}
    assert [d["id"] for d in records[summary["best_id"]]["demos"]] == summary["best_demos"]
    assert "demos" not in records["c0000"]
    # The report names them.
    markdown = render_run_markdown(folder)
    ids = ", ".join(summary["best_demos"])
    assert f"few-shot demonstrations before the input (best_demos.json): {ids}" in markdown
    # And shows what each one tells the target, in the order they are sent.
    for number, demo in enumerate(best_demos["demos"], 1):
        row = f"| {number} | {demo['id']} | {md_cell(demo['input'])} | {demo['output']} |"
        assert row in markdown
    html = run_html(RunView.from_folder(folder))
    assert all(f"<pre>{d['input']}</pre>" in html for d in best_demos["demos"])


async def test_with_an_instruction_strategy_the_demo_step_follows_within_budget(
    tmp_path: Path,
) -> None:
    task = toy_task(tmp_path, {"k": 2, "candidates": 5})  # 4 MIPROv2 sets and "negative" alone
    folder = RunFolder.create(tmp_path / "runs", "toy")
    target = Counter(helped_by_key_demo)
    cap = RESERVE + 150
    summary = await run(
        task,
        folder,
        "opro",
        target,
        BudgetCaps(target_calls=cap, optimizer_calls=6),
        steps=2,
        proposals_per_step=3,
    )
    assert target.calls <= cap
    events = folder.read_jsonl(EVENTS)
    steps = [e for e in events if e["event"] == "step"]
    assert steps[-1]["name"] == "demos"
    (plan,) = [e for e in events if e["event"] == "demos_plan"]
    # The demonstrations were searched for the instruction search's best instruction.
    assert plan["base"] == steps[-2]["ranking"][0]
    assert "best_demos" in summary and (folder.path / BEST_DEMOS).exists()
    assert summary["scores"]["best"]["test"] == pytest.approx(1.0)
    assert len(summary["best_demos"]) == 2


async def test_under_a_cost_cap_alone_the_demo_step_keeps_its_share(tmp_path: Path) -> None:
    # With dollars capped and calls not, the instruction search spent every dollar it could,
    # and the demonstration step that followed was refused its first call. Output tokens
    # alone are priced and answers are one token of at most two, so that a call's worst case
    # (what is set aside) is near what it costs.
    task = priced_toy_task(tmp_path, {"k": 2, "candidates": 2})
    probe = Runtime(task, RuntimeOptions(), store=NullCache(), providers=providers())
    async with probe:
        client = probe.client("target")
        final = final_eval_cost(task, client.spec, client.price, 3)
        per_call = target_call_max_cost_usd(task, client.spec, client.price)
    sizing = task_demo_sizing(task, RunSettings(strategy="opro", params={}, seed=0))
    # Less than the instruction search spends on its own, and too little for the whole
    # demonstration step at its worst: the step is made smaller to fit half of it.
    cap = final.usd(initial_system_prompt(task)) + sizing.target_calls * per_call / 2
    # The dry run shows the smaller step the run takes (it showed the step the calls allow).
    dry = dry_run_plan(prepare_run(task, strategy="opro", max_cost=cap))
    shown = dry.layout["demos"]
    assert any("makes the demonstration step smaller" in note for note in dry.notes)
    folder = RunFolder.create(tmp_path / "runs", "toy")
    target = Counter(helped_by_key_demo)
    summary = await run(
        task, folder, "opro", target, BudgetCaps(cost_usd=cap), steps=60, proposals_per_step=3
    )
    events = folder.read_jsonl(EVENTS)
    assert not [e for e in events if e["event"] == "budget_exhausted" and e.get("phase")]
    (plan,) = [e for e in events if e["event"] == "demos_plan"]
    assert plan["sets"] and len(plan["pool"]) < sizing.pool
    assert (shown["pool"], shown["eval_examples"]) == (len(plan["pool"]), len(plan["examples"]))
    assert shown["target_calls"] < sizing.target_calls
    assert [e for e in events if e["event"] == "demos_selection"]
    assert summary["stop_reason"] == "budget"  # the instruction search did spend its share
    assert summary["usage"]["target"]["cost_usd"] <= cap
    assert summary["best_demos"] is not None


def priced_toy_task(tmp: Path, demos: dict[str, Any]) -> LoadedTask:
    """The toy task with only output tokens priced, at most two of them an answer."""
    task = toy_task(tmp, demos)
    spec = yaml.safe_load(task.path.read_text())
    spec["models"]["target"].update(price={"input": 0.0, "output": 1.0}, max_tokens=2)
    task.path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return load_task(task.path)


def test_a_derived_optimizer_cap_plans_for_the_calls_a_cost_cap_gives_back(
    tmp_path: Path,
) -> None:
    # The instruction search gets back the target calls that a cost cap takes from the
    # demonstration step; the optimizer cap derived from its plan was sized without them.
    task = priced_toy_task(tmp_path, {"k": 2, "candidates": 4})
    target = task.spec.models.target
    assert target is not None and target.price is not None
    final = final_eval_cost(task, target, target.price, 3)
    per_call = target_call_max_cost_usd(task, target, target.price)
    budget = RESERVE + 400
    uncapped = RunSettings(strategy="ape", params={}, seed=0, caps=BudgetCaps(target_calls=budget))
    by_calls = task_demo_sizing(task, uncapped)
    cap = final.usd(initial_system_prompt(task)) + by_calls.target_calls * per_call / 2
    prepared = prepare_run(task, strategy="ape", target_calls=budget, max_cost=cap)
    sizes = {name: len(rows) for name, rows in task.splits.items()}
    by_budget = task_demo_sizing(task, prepared.settings, sizes)
    demos = planned_demo_sizing(task, prepared.settings, target.price, by_budget)
    assert 0 < demos.target_calls < by_calls.target_calls
    strategy, _ = make_strategy("ape", {})
    settings = replace(
        prepared.settings, caps=replace(prepared.settings.caps, optimizer_calls=None)
    )
    planned = strategy_plan(strategy, sizes, settings, demos.target_calls).optimizer_calls
    assert (
        planned != strategy_plan(strategy, sizes, settings, by_calls.target_calls).optimizer_calls
    )
    assert prepared.settings.caps.optimizer_calls == planned
    assert any(
        f"capped at {planned}" in note and "the cost cap makes smaller" in note
        for note in prepared.notes
    )


def test_the_dry_run_says_when_a_cost_cap_leaves_no_room_for_demos(tmp_path: Path) -> None:
    task = priced_toy_task(tmp_path, {"k": 2, "candidates": 2})
    target = task.spec.models.target
    assert target is not None and target.price is not None
    final = final_eval_cost(task, target, target.price, 3)
    per_call = target_call_max_cost_usd(task, target, target.price)
    # Half of what the search may spend pays for 4 calls: the bootstrapping alone needs 4
    # (2k), so no set could be scored and the step is dropped.
    cap = final.usd(initial_system_prompt(task)) + 9 * per_call
    dry = dry_run_plan(prepare_run(task, strategy="opro", max_cost=cap))
    assert "demos" not in dry.layout
    assert any("leaves no room for the demonstration step" in note for note in dry.notes)


async def test_a_task_without_demos_writes_nothing_about_them(tmp_path: Path) -> None:
    task = toy_task(tmp_path, None)
    folder = RunFolder.create(tmp_path / "runs", "toy")
    target = Counter(target_answer)
    summary = await run(
        task, folder, "opro", target, BudgetCaps(target_calls=RESERVE + 60), steps=1
    )
    assert "best_demos" not in summary
    assert "demonstrations" not in render_run_markdown(folder)
    assert not (folder.path / BEST_DEMOS).exists()
    assert all("demos" not in c for c in folder.read_jsonl(CANDIDATES))
    assert not any(e["event"].startswith("demos") for e in folder.read_jsonl(EVENTS))
    assert all(len(json.loads(raw)) == 2 for raw in target.requests)


async def test_eval_and_diff_of_a_run_send_its_best_demos(tmp_path: Path) -> None:
    task = toy_task(tmp_path, {"k": 2, "candidates": 6})
    folder = RunFolder.create(tmp_path / "runs", "toy")
    await run(task, folder, "demos", Counter(helped_by_key_demo))

    demos = read_demos_file(folder.file(BEST_DEMOS))
    assert len(demos) == 2
    target = Counter(helped_by_key_demo)
    evaluation = await evaluate_prompt(
        task,
        task.spec.system_prompt,
        split="test",
        providers=providers(target),
        store=NullCache(),
        demos=demos,
    )
    assert evaluation.result.score == pytest.approx(1.0)
    assert all(len(json.loads(raw)) == 6 for raw in target.requests)

    plan = prepare_diff(folder.path, None, task)
    assert not plan.old.demos and plan.new.demos == demos
    assert "+ 2 demos" in plan.new.described and "demos" not in plan.old.described
    report = await compare_prompts(
        plan, providers=providers(Counter(helped_by_key_demo)), store=NullCache()
    )
    assert report.verdict == "improved"
    # The system prompts are the same; the report says what else each side sends.
    assert report.old_prompt == report.new_prompt
    assert report.to_json()["demos"] == {"old": [], "new": [d.to_json() for d in demos]}
    markdown = diff_markdown(report)
    assert "the old prompt has no demonstrations, the new one 2 demonstrations" in markdown
    for number, demo in enumerate(demos, 1):
        assert f"| new | {number} | {demo.id} | {md_cell(demo.input)} | {demo.output} |" in markdown
    assert "<td>new</td>" in diff_html(report)
    # A best_demos.json of another candidate than the best (left by an interrupted replay) is
    # stale: neither diff nor the report sends or shows it.
    stale = folder.read_json(BEST_DEMOS)
    assert stale is not None
    folder.write_json(BEST_DEMOS, stale | {"id": "c9999"})
    assert prepare_diff(folder.path, None, task).new.demos == ()
    assert "| training example | input | answer shown |" not in render_run_markdown(folder)


def test_a_damaged_demos_file_is_a_usage_error(tmp_path: Path) -> None:
    path = tmp_path / BEST_DEMOS
    path.write_text('{"demos": [{"id": "r1"}]}')
    with pytest.raises(UsageError, match="id, input and output"):
        read_demos_file(path)
    path.write_text("[]")
    assert read_demos_file(path) == ()
    path.write_text("[" * 50_000 + "]" * 50_000)
    with pytest.raises(UsageError, match="nests too deeply"):
        read_demos_file(path)


class Killed(BaseException):
    """Stands in for the process being killed mid-run."""


async def test_a_run_killed_in_the_demo_step_resumes_to_the_same_folder(tmp_path: Path) -> None:
    task = toy_task(tmp_path, {"k": 2, "candidates": 4})
    caps = BudgetCaps(target_calls=RESERVE + 150, optimizer_calls=6)
    params: dict[str, Any] = {"steps": 2, "proposals_per_step": 3}
    baseline = RunFolder.create(tmp_path / "base", "toy")
    counted = Counter(helped_by_key_demo)
    await run(task, baseline, "opro", counted, caps, **params)
    # The final evaluation makes the last RESERVE calls at most; kill before it, in the demos.
    kill = counted.calls - RESERVE - 5
    first_with_demos = next(i for i, raw in enumerate(counted.requests) if len(json.loads(raw)) > 2)
    assert first_with_demos + 1 < kill  # after the demo step sent its first set

    def kill_at(n: int) -> None:
        if n == kill:
            raise Killed

    folder = RunFolder.create(tmp_path / "runs", "toy")
    with pytest.raises(Killed):
        await run(task, folder, "opro", Counter(helped_by_key_demo, kill_at), caps, **params)
    await run(task, folder, "opro", Counter(helped_by_key_demo), caps, resume=True, **params)
    assert stable(folder) == stable(baseline)
    assert folder.read_json(BEST_DEMOS) == baseline.read_json(BEST_DEMOS)


def test_dry_run_shows_the_demo_step_within_the_budget(tmp_path: Path) -> None:
    task = toy_task(tmp_path, {"k": 4, "candidates": 6})
    strategy, validated = make_strategy("ape", {})
    settings = RunSettings(
        strategy="ape",
        params=validated.model_dump(mode="json"),
        seed=0,
        caps=BudgetCaps(target_calls=RESERVE + 200),
    )
    sizes = {name: len(rows) for name, rows in task.splits.items()}
    demos = task_demo_sizing(task, settings, sizes)
    assert 0 < demos.target_calls <= 100  # at most half of the search's 200
    instructions = strategy_plan(strategy, sizes, settings, demos.target_calls)
    assert instructions.target_calls <= 200 - demos.target_calls
    plan = plan_run(task, settings, instructions, {}, demos)
    assert plan.target_calls <= RESERVE + 200
    assert plan.layout["demos"]["target_calls"] == demos.target_calls
    assert any("demonstrations" in note for note in plan.notes)


# --- an initial prompt with demonstrations of its own (run --demos-file) ------------------------


def train_demos(task: LoadedTask, *, key: bool, n: int = 2) -> tuple[Demo, ...]:
    """`n` training examples as demonstrations with their expected answers: reviews saying KEY,
    or reviews that do not."""
    chosen = [e for e in task.splits["train"] if (KEY in task.render_input(e)) == key][:n]
    return tuple(Demo(e.id, task.render_input(e), e.target) for e in chosen)


async def test_a_run_starting_from_demos_sends_them_until_a_set_beats_them(
    tmp_path: Path,
) -> None:
    task = toy_task(tmp_path, {"k": 2, "candidates": 6})
    folder = RunFolder.create(tmp_path / "runs", "toy")
    target = Counter(helped_by_key_demo)
    start = train_demos(task, key=False)
    summary = await run(task, folder, "demos", target, initial_demos=start)

    assert summary["initial_demos"] == [d.id for d in start]
    # The initial prompt was scored with its demonstrations, which do not help the target.
    assert summary["scores"]["initial"]["test"] == pytest.approx(0.5)
    assert summary["scores"]["best"]["test"] == pytest.approx(1.0)
    assert summary["test_comparison"]["verdict"] == "improved"
    assert summary["best_demos"] != summary["initial_demos"]
    best = folder.read_json(BEST_DEMOS)
    assert best is not None and any(KEY in d["input"] for d in best["demos"])
    # Every request carried demonstrations: the initial prompt's, or a set's in their place.
    requests = [json.loads(raw) for raw in target.requests]
    assert all(len(r) == 2 + 2 * 2 for r in requests)
    shown = [d.input for d in start]
    tests = {task.render_input(e) for e in task.split("test")}
    initial_tests = [
        r for r in requests if r[-1]["content"] in tests and r[1]["content"] == shown[0]
    ]
    assert len(initial_tests) == len(tests)
    # No prompt is scored on an example its demonstrations answer.
    assert not any(r[-1]["content"] in shown for r in requests)
    # config.json keeps them, so a resumed run starts from the same prompt.
    config = folder.config()
    assert config is not None
    settings = RunSettings.from_json(config.settings.model_dump())
    assert settings.initial_demos == start
    markdown = render_run_markdown(folder)
    assert "The initial prompt was sent with 2 of its own (--demos-file)" in markdown


async def test_instructions_are_compared_with_the_initial_prompt_s_demos(tmp_path: Path) -> None:
    # A task that searches no demonstrations: every instruction is sent with the initial
    # prompt's, and the best prompt keeps them (best_demos.json says so).
    task = toy_task(tmp_path, None)
    folder = RunFolder.create(tmp_path / "runs", "toy")
    target = Counter(helped_by_key_demo)
    start = train_demos(task, key=True, n=1)
    summary = await run(
        task,
        folder,
        "opro",
        target,
        BudgetCaps(target_calls=RESERVE + 60),
        initial_demos=start,
        steps=1,
    )
    assert all(len(json.loads(raw)) == 4 for raw in target.requests)
    assert summary["scores"]["initial"]["test"] == pytest.approx(1.0)
    assert summary["initial_demos"] == summary["best_demos"] == [start[0].id]
    best = folder.read_json(BEST_DEMOS)
    assert best is not None and [d["id"] for d in best["demos"]] == [start[0].id]
    assert "They are the initial prompt's own (--demos-file)." in render_run_markdown(folder)


def test_a_run_without_initial_demos_keeps_its_config_as_it_was() -> None:
    settings = RunSettings(strategy="ape", params={}, seed=0)
    assert "initial_demos" not in settings.to_json()
    assert RunSettings.from_json(settings.to_json()) == settings


@pytest.mark.parametrize(
    ("demo_id", "message"),
    [
        ("r105", "is a dev example"),
        ("r203", "is a test example"),
        ("elsewhere-1", "not a training example"),
    ],
)
def test_initial_demos_must_be_training_examples(
    tmp_path: Path, demo_id: str, message: str
) -> None:
    task = toy_task(tmp_path, None)
    demo = Demo(demo_id, "review: a film", "positive")
    with pytest.raises(UsageError, match=message) as raised:
        prepare_run(task, initial_demos=(demo,))
    assert "--demos-file" in str(raised.value)


async def test_a_cost_cap_counts_the_initial_prompt_s_demos(tmp_path: Path) -> None:
    task = toy_task(tmp_path, None)
    spec = yaml.safe_load(task.path.read_text())
    spec["models"]["target"].update(price={"input": 1.0, "output": 1.0}, max_tokens=2)
    task.path.write_text(yaml.safe_dump(spec, sort_keys=False))
    task = load_task(task.path)
    target = task.spec.models.target
    assert target is not None and target.price is not None
    # Long demonstrations: every call sends them, so they dominate what a call costs.
    key = train_demos(task, key=True, n=1)[0]
    start = (replace(key, input=key.input + " (a long aside)" * 200),)
    plain = final_eval_cost(task, target, target.price, 3).usd(initial_system_prompt(task))
    final = final_eval_cost(task, target, target.price, 3, start).usd(initial_system_prompt(task))
    assert final > 2 * plain
    per_call = target_call_max_cost_usd(task, target, target.price, start)
    assert per_call > target_call_max_cost_usd(task, target, target.price)
    # A cap that covers the final evaluation without them does not cover it with them.
    with pytest.raises(UsageError, match="does not cover the worst case of the final"):
        prepare_run(task, strategy="opro", max_cost=(plain + final) / 2, initial_demos=start)
    # One that covers it with them is kept, and the run stays within it.
    cap = final + 20 * per_call
    prepared = prepare_run(task, strategy="opro", max_cost=cap, initial_demos=start)
    folder = RunFolder.create(tmp_path / "runs", "toy")
    summary = await run(
        task,
        folder,
        "opro",
        Counter(helped_by_key_demo),
        prepared.settings.caps,
        initial_demos=start,
        steps=60,
        proposals_per_step=3,
    )
    assert summary["usage"]["target"]["cost_usd"] <= cap
    assert summary["scores"]["best"]["test"] == pytest.approx(1.0)
    assert summary["test_comparison"] is not None


async def test_diff_of_a_run_sends_the_initial_prompt_s_demos_too(tmp_path: Path) -> None:
    # The run scored its initial prompt with its demonstrations; a diff of the run folder that
    # left them out would report a gain the run never measured.
    task = toy_task(tmp_path, None)
    folder = RunFolder.create(tmp_path / "runs", "toy")
    start = train_demos(task, key=True, n=1)
    summary = await run(
        task,
        folder,
        "opro",
        Counter(helped_by_key_demo),
        BudgetCaps(target_calls=RESERVE + 60),
        initial_demos=start,
        steps=1,
    )
    assert summary["test_comparison"]["verdict"] == "no significant change"
    plan = prepare_diff(folder.path, None, task)
    assert plan.old.demos == start and plan.new.demos == start
    assert f"+ 1 demos ({start[0].id})" in plan.old.described
    report = await compare_prompts(
        plan, providers=providers(Counter(helped_by_key_demo)), store=NullCache()
    )
    assert report.verdict == "no significant change"
    markdown = diff_markdown(report)
    assert "Both prompts are sent with the same 1 demonstration," in markdown
    assert f"| both | 1 | {start[0].id} |" in markdown and "| old | 1 |" not in markdown
    # The run's own report lists them under the best prompt (its candidate has none of its
    # own) and in its test diff, from the run folder alone.
    report_md = render_run_markdown(folder)
    assert f"| 1 | {start[0].id} | {md_cell(start[0].input)} | {start[0].output} |" in report_md
    assert f"| both | 1 | {start[0].id} |" in report_md


def test_the_demo_step_is_sized_without_the_initial_prompt_s_demos(tmp_path: Path) -> None:
    task = toy_task(tmp_path, {"k": 2, "candidates": 4})
    settings = RunSettings(strategy="opro", params={}, seed=0)
    start = train_demos(task, key=False, n=4)
    full = task_demo_sizing(task, settings)
    less = task_demo_sizing(task, replace(settings, initial_demos=start))
    # 40 training examples, 4 of them shown: the pool and comparison share the other 36.
    assert full.pool + full.eval_examples == 40
    assert less.pool + less.eval_examples == 36
    # So does the step a cost cap makes one call smaller (a dollar a call, half of what is
    # left for the step): counting the 40 would plan a pool of 20 and 17 examples to compare.
    shown = search_sizes(task, replace(settings, initial_demos=start))["train"]
    assert shown == 36
    _, fitted = demo_cost_share(task, less, 2.0 * (less.target_calls - 1), 1.0, shown)
    assert fitted.target_calls < less.target_calls
    assert fitted.pool + fitted.eval_examples <= 36


def test_initial_demos_may_not_repeat_or_use_up_train(tmp_path: Path) -> None:
    task = toy_task(tmp_path, None)
    twice = train_demos(task, key=True, n=1) * 2
    with pytest.raises(UsageError, match="there twice"):
        prepare_run(task, initial_demos=twice)
    every = tuple(Demo(e.id, task.render_input(e), e.target) for e in task.splits["train"])
    with pytest.raises(UsageError, match="none left"):
        prepare_run(task, initial_demos=every)
