"""Best-arm identification under a budget of example evaluations, on paired evidence.

Search strategies hold n candidate prompts and must keep the best k while spending few target calls.
Each candidate is an arm; pulling it scores the prompt on the next examples of one sequence that
every arm shares, so arm i's k-th score and arm j's k-th score are on the same example. Differences
between arms are then differences between prompts, not between the examples each happened to
draw. The budget counts example evaluations (one target call each): every selector charges what a
pull cost and never asks for more than the budget has left.

The second half holds what strategies share on top of that: scoring candidates on the same
examples (`evaluate_paired`), ranking a pool with a selector on one shared sequence
(`select_paired`), the cheap acceptance test of a child against its parent (`acceptance_tests`),
and sizing a plan so that every selection gets target calls (`fit_layout`).
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import math
import random
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol, TypeVar

from promptopt.errors import UsageError
from promptopt.search.context import Candidate, SearchContext
from promptopt.task.example import Example

T = TypeVar("T")


@dataclass(frozen=True)
class Pulled:
    """What a pull returns when some scores were known already: the scores, and the target calls
    the pull actually made (a score a candidate already has is reused, not bought again)."""

    scores: Sequence[float]
    calls: int


PullFn = Callable[[int, int], Awaitable[Sequence[float] | Pulled]]
"""(arm index, batch size) -> per-example scores in [0, 1]; fewer than asked when the data runs
out, never more. Pulls are paired: counting over all of an arm's pulls, its k-th score is on the
same example as every other arm's k-th score. A plain sequence costs one call per score."""


@dataclass(frozen=True)
class Selection:
    """The outcome of a selection: arms best first, what each one scored and what was spent."""

    ranking: tuple[int, ...]
    means: tuple[float, ...]
    pulls: tuple[int, ...]
    spent: int
    estimates: tuple[float, ...] = ()
    """Paired estimates the ranking rests on (see `_Arms.estimate`); empty when the selection
    had nothing to decide."""

    def top(self, k: int) -> tuple[int, ...]:
        """The k best arms, best first."""
        return self.ranking[:k]


class Selector(Protocol):
    """A budgeted best-k-of-n selection procedure."""

    async def select(
        self, n_arms: int, k: int, pull: PullFn, budget: int, rng: random.Random
    ) -> Selection:
        """Spend at most `budget` example evaluations to rank `n_arms` arms, the best `k` first."""
        ...


class _Arms:
    """Per-arm evidence plus the budget; the only place that calls `pull`.

    An arm's scores are kept in pull order, so that with paired pulls the first n scores of any
    two arms are on the same n examples. Ties break by a random permutation drawn once from
    `rng`, so no arm is favoured for its position in the candidate list.
    """

    def __init__(self, n_arms: int, pull: PullFn, budget: int, rng: random.Random) -> None:
        self._pull = pull
        self.budget = budget
        self.spent = 0
        self.sums = [0.0] * n_arms
        self.counts = [0] * n_arms
        # Running sums, cumulative[arm][i] = sum of the arm's first i + 1 scores.
        self.cumulative: list[list[float]] = [[] for _ in range(n_arms)]
        self.exhausted = [False] * n_arms
        order = list(range(n_arms))
        rng.shuffle(order)
        self._tiebreak = [0] * n_arms
        for position, arm in enumerate(order):
            self._tiebreak[arm] = position

    @property
    def remaining(self) -> int:
        return self.budget - self.spent

    def mean(self, arm: int) -> float:
        """The arm's mean over the examples it was scored on."""
        return self.sums[arm] / self.counts[arm] if self.counts[arm] else 0.0

    def reference(self) -> int:
        """The arm with the most evidence (ties: the first in tie-break order)."""
        return min(range(len(self.counts)), key=lambda a: (-self.counts[a], self._tiebreak[a]))

    def estimate(self, arm: int) -> float:
        """The arm's mean, paired with the best-evidenced arm (the reference).

        An arm scored on n examples is compared with the reference on those same n examples
        (the first n of the shared sequence), and the difference is added to the reference's
        mean over all it has seen: mean_ref + (mean_arm[:n] - mean_ref[:n]). Arms scored on
        few examples are thus not judged by how easy their examples happened to be; arms with
        as much evidence as the reference get their plain mean.
        """
        n = self.counts[arm]
        if n == 0:
            return 0.0
        ref = self.reference()
        if n >= self.counts[ref]:
            return self.mean(arm)
        shared = self.cumulative[ref][n - 1]
        return self.mean(ref) + (self.sums[arm] - shared) / n

    def live(self, arms: Sequence[int]) -> list[int]:
        """The arms that can still be pulled, in tie-break order."""
        return sorted((a for a in arms if not self.exhausted[a]), key=self._tiebreak.__getitem__)

    def by_estimate(self, arms: Sequence[int]) -> list[int]:
        """Best first by paired estimate; arms never scored rank after every scored arm."""
        estimates = {a: self.estimate(a) for a in arms}
        return sorted(
            arms,
            key=lambda a: (self.counts[a] == 0, -estimates[a], -self.counts[a], self._tiebreak[a]),
        )

    async def pull_many(self, wants: Sequence[tuple[int, int]], chunk: int | None = None) -> None:
        """Pull each (arm, size), trimming sizes so that together they fit the budget.

        Arms run concurrently; one arm's examples are asked for in pulls of at most `chunk`, one
        after another, stopping when its data runs out. Every arm runs to completion before the
        first failure, if any, is re-raised, so the statistics keep what the other pulls returned.
        """
        asks: list[tuple[int, int]] = []
        reserved = 0
        for arm, size in wants:
            size = min(size, self.remaining - reserved)
            if size <= 0 or self.exhausted[arm]:
                continue
            asks.append((arm, size))
            reserved += size

        async def run(arm: int, size: int) -> None:
            while size > 0 and not self.exhausted[arm]:
                ask = size if chunk is None else min(size, chunk)
                self._record(arm, ask, await self._pull(arm, ask))
                size -= ask

        results = await asyncio.gather(*(run(a, n) for a, n in asks), return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result

    def _record(self, arm: int, asked: int, got: Sequence[float] | Pulled) -> None:
        scores, calls = (got.scores, got.calls) if isinstance(got, Pulled) else (got, len(got))
        if len(scores) > asked:
            raise ValueError(f"pull returned {len(scores)} scores for arm {arm}; asked for {asked}")
        if not 0 <= calls <= len(scores):
            raise ValueError(f"pull of arm {arm} reported {calls} calls for {len(scores)} scores")
        for score in scores:
            if not 0.0 <= score <= 1.0:
                raise ValueError(f"pull returned score {score!r} for arm {arm}; must be in [0, 1]")
        running = self.cumulative[arm]
        for score in scores:
            running.append((running[-1] if running else 0.0) + score)
        self.sums[arm] = running[-1] if running else 0.0
        self.counts[arm] += len(scores)
        self.spent += calls
        if len(scores) < asked:
            self.exhausted[arm] = True

    def selection(self, ranking: Sequence[int]) -> Selection:
        arms = range(len(self.counts))
        return Selection(
            ranking=tuple(ranking),
            means=tuple(self.mean(a) for a in arms),
            pulls=tuple(self.counts),
            spent=self.spent,
            estimates=tuple(self.estimate(a) for a in arms),
        )


def _trivial(n_arms: int, k: int, budget: int) -> Selection | None:
    """Validate arguments; answer without pulling when the choice is already made."""
    if n_arms < 0 or k < 0 or budget < 0:
        raise ValueError(f"need n_arms, k, budget >= 0; got {n_arms}, {k}, {budget}")
    if k == 0 or k >= n_arms:
        # Every arm (or none) is kept, so spending target calls could not change the outcome.
        return Selection(tuple(range(n_arms)), (0.0,) * n_arms, (0,) * n_arms, 0)
    return None


def _check_positive(**values: float | None) -> None:
    for name, value in values.items():
        if value is not None and value <= 0:
            raise ValueError(f"{name} must be > 0, got {value}")


async def _index_policy(
    arms: _Arms,
    n_arms: int,
    batch: int,
    rounds: int | None,
    bonus: Callable[[int, int], float],
) -> list[int]:
    """Pull the arm with the highest paired estimate + bonus(total examples, arm examples) until
    the budget or `rounds` pulls are used up; arms never pulled go first. Returns the ranking by
    paired estimate."""
    everyone = range(n_arms)
    # Shrink the batch when the budget cannot give every arm one full batch, so that each arm is
    # scored at least once before the budget is gone.
    step = max(1, min(batch, arms.budget // n_arms))
    done = 0
    while arms.remaining > 0 and (rounds is None or done < rounds):
        live = arms.live(everyone)
        if not live:
            break
        fresh = [a for a in live if arms.counts[a] == 0]
        if fresh:
            choice = fresh[0]
        else:
            total = sum(arms.counts)
            choice = max(live, key=lambda a: arms.estimate(a) + bonus(total, arms.counts[a]))
        await arms.pull_many([(choice, step)])
        done += 1
    return arms.by_estimate(everyone)


@dataclass(frozen=True)
class UCB:
    """Upper confidence bound: pull the arm maximising estimate + c·sqrt(ln N / n_i).

    N counts every example evaluated so far (not rounds), so exploration starts in the first
    round. Each pull scores `batch` examples; `rounds` caps the number of pulls (None: until the
    budget is spent). The last pull is cut to what the budget has left.
    """

    c: float = 1.0
    batch: int = 32
    rounds: int | None = None

    def __post_init__(self) -> None:
        _check_positive(batch=self.batch, rounds=self.rounds)
        if self.c < 0:
            raise ValueError(f"c must be >= 0, got {self.c}")

    async def select(
        self, n_arms: int, k: int, pull: PullFn, budget: int, rng: random.Random
    ) -> Selection:
        """See `Selector.select`."""
        if (done := _trivial(n_arms, k, budget)) is not None:
            return done
        arms = _Arms(n_arms, pull, budget, rng)
        c = self.c

        def bonus(total: int, n_i: int) -> float:
            return c * math.sqrt(math.log(total) / n_i)

        return arms.selection(await _index_policy(arms, n_arms, self.batch, self.rounds, bonus))


@dataclass(frozen=True)
class UCBE:
    """UCB-E (Audibert & Bubeck): pull the arm maximising estimate + sqrt(a / n_i).

    The theory sets a = 25/36 · (B - K) / H with H = Σ 1/gap_i², which is unknown; by default H is
    estimated as K / gap² for an assumed typical gap between arms (`gap`, in score units).
    """

    a: float | None = None
    gap: float = 0.1
    batch: int = 32
    rounds: int | None = None

    def __post_init__(self) -> None:
        _check_positive(gap=self.gap, batch=self.batch, rounds=self.rounds)
        if self.a is not None and self.a < 0:
            raise ValueError(f"a must be >= 0, got {self.a}")

    def exploration(self, n_arms: int, budget: int) -> float:
        """The exploration parameter a used for `n_arms` arms and `budget` evaluations."""
        if self.a is not None:
            return self.a
        hardness = n_arms / self.gap**2
        return max(0.0, 25 / 36 * (budget - n_arms) / hardness)

    async def select(
        self, n_arms: int, k: int, pull: PullFn, budget: int, rng: random.Random
    ) -> Selection:
        """See `Selector.select`."""
        if (done := _trivial(n_arms, k, budget)) is not None:
            return done
        arms = _Arms(n_arms, pull, budget, rng)
        a = self.exploration(n_arms, budget)

        def bonus(total: int, n_i: int) -> float:
            return math.sqrt(a / n_i)

        return arms.selection(await _index_policy(arms, n_arms, self.batch, self.rounds, bonus))


def successive_rejects_lengths(n_arms: int, k: int, budget: int) -> list[int]:
    """Cumulative examples per surviving arm at the end of each of the n_arms - k phases.

    n_j = ⌈(B - K) / (L · (K + 1 - j))⌉ with L = k/(k+1) + Σ_{i=k+1..K} 1/i. For k = 1, L is
    Audibert & Bubeck's log-bar(K) = 1/2 + Σ_{i=2..K} 1/i; for larger k it is the same sum cut at
    the phase where k arms remain, so the planned pulls still add up to at most B. Each length is
    at least 1, so a budget smaller than K still scores some arms.
    """
    big_k = n_arms
    norm = k / (k + 1) + sum(1 / i for i in range(k + 1, big_k + 1))
    return [
        max(1, math.ceil((budget - big_k) / (norm * (big_k + 1 - j))))
        for j in range(1, big_k - k + 1)
    ]


def _ranking(arms: _Arms, survivors: Sequence[int], eliminated: Sequence[int]) -> list[int]:
    """Survivors by paired estimate, then the eliminated arms, the last eliminated first."""
    return arms.by_estimate(survivors) + list(reversed(eliminated))


@dataclass(frozen=True)
class SuccessiveRejects:
    """Successive Rejects (Audibert & Bubeck, 2010), stopped when k arms remain.

    Phase j brings every surviving arm up to n_j examples (see `successive_rejects_lengths`) and
    then drops the arm with the lowest (paired) mean.

    `batch` caps the examples one pull asks for (None: an arm's whole allocation for a phase in
    one pull); it changes how calls are grouped, not how many are made.
    """

    batch: int | None = None

    def __post_init__(self) -> None:
        _check_positive(batch=self.batch)

    async def select(
        self, n_arms: int, k: int, pull: PullFn, budget: int, rng: random.Random
    ) -> Selection:
        """See `Selector.select`."""
        if (done := _trivial(n_arms, k, budget)) is not None:
            return done
        arms = _Arms(n_arms, pull, budget, rng)
        survivors = list(range(n_arms))
        eliminated: list[int] = []
        for length in successive_rejects_lengths(n_arms, k, budget):
            await arms.pull_many(
                [(a, length - arms.counts[a]) for a in arms.live(survivors)], self.batch
            )
            worst = arms.by_estimate(survivors)[-1]
            survivors.remove(worst)
            eliminated.append(worst)
        return arms.selection(_ranking(arms, survivors, eliminated))


@dataclass(frozen=True)
class SuccessiveHalving:
    """Successive Halving (Karnin et al., 2013): ⌈log2(n/k)⌉ rounds; each round gives every
    survivor an equal share of the budget left for the remaining rounds, then keeps the better
    half (never fewer than k).

    `batch` caps the examples one pull asks for (None: an arm's whole allocation for a phase in
    one pull); it changes how calls are grouped, not how many are made.
    """

    batch: int | None = None

    def __post_init__(self) -> None:
        _check_positive(batch=self.batch)

    async def select(
        self, n_arms: int, k: int, pull: PullFn, budget: int, rng: random.Random
    ) -> Selection:
        """See `Selector.select`."""
        if (done := _trivial(n_arms, k, budget)) is not None:
            return done
        arms = _Arms(n_arms, pull, budget, rng)
        survivors = list(range(n_arms))
        eliminated: list[int] = []
        n_rounds = math.ceil(math.log2(n_arms / k))
        for r in range(n_rounds):
            # Re-dividing what is left each round passes on budget that exhausted arms or
            # rounding did not use.
            share = max(1, arms.remaining // ((n_rounds - r) * len(survivors)))
            await arms.pull_many([(a, share) for a in arms.live(survivors)], self.batch)
            ranked = arms.by_estimate(survivors)
            keep = max(k, math.ceil(len(survivors) / 2))
            survivors = ranked[:keep]
            eliminated.extend(reversed(ranked[keep:]))
        return arms.selection(_ranking(arms, survivors, eliminated))


@dataclass(frozen=True)
class BruteForce:
    """Split the budget evenly over all arms and rank by mean.

    Budget an exhausted arm could not use is split again over the others; when fewer examples
    than arms remain, a random subset of arms gets one each.

    `batch` caps the examples one pull asks for (None: an arm's whole allocation for a phase in
    one pull); it changes how calls are grouped, not how many are made.
    """

    batch: int | None = None

    def __post_init__(self) -> None:
        _check_positive(batch=self.batch)

    async def select(
        self, n_arms: int, k: int, pull: PullFn, budget: int, rng: random.Random
    ) -> Selection:
        """See `Selector.select`."""
        if (done := _trivial(n_arms, k, budget)) is not None:
            return done
        arms = _Arms(n_arms, pull, budget, rng)
        everyone = range(n_arms)
        while arms.remaining > 0 and (live := arms.live(everyone)):
            share = arms.remaining // len(live)
            if share == 0:
                await arms.pull_many([(a, 1) for a in live[: arms.remaining]])
                break
            await arms.pull_many([(a, share) for a in live], self.batch)
        return arms.selection(arms.by_estimate(everyone))


SELECTORS: dict[str, Callable[..., Selector]] = {
    "ucb": UCB,
    "ucb-e": UCBE,
    "successive-rejects": SuccessiveRejects,
    "successive-halving": SuccessiveHalving,
    "brute-force": BruteForce,
}


def keep_count(keep: int, n_arms: int) -> int:
    """How many arms to ask a selector for when a search keeps `keep` of `n_arms`.

    A selector asked for all of its arms has nothing to decide and scores none of them, which
    would leave new candidates without evidence for the ranking that follows. Asking for one
    fewer makes it spend its budget comparing them all.
    """
    return max(0, min(keep, n_arms - 1))


def make_selector(name: str, **params: object) -> Selector:
    """Build the selector registered as `name` with `params`; UsageError names what is valid."""
    factory = SELECTORS.get(name)
    if factory is None:
        valid = ", ".join(sorted(SELECTORS))
        raise UsageError(f"unknown selector {name!r}; choose one of: {valid}")
    accepted = (
        sorted(f.name for f in dataclasses.fields(factory))
        if isinstance(factory, type) and dataclasses.is_dataclass(factory)
        else []
    )
    unknown = sorted(set(params) - set(accepted))
    if unknown:
        takes = ", ".join(accepted) if accepted else "no parameters"
        raise UsageError(f"selector {name!r} does not take {', '.join(unknown)}; it takes {takes}")
    try:
        return factory(**params)
    except (TypeError, ValueError) as exc:
        raise UsageError(f"selector {name!r}: {exc}") from exc


# --- paired evaluation for strategies -------------------------------------------------------

ScoreFn = Callable[[Candidate, Sequence[Example]], Awaitable[Sequence[float]]]
"""Scores a candidate on training examples (a strategy may route this through its own record of
outputs); called only for examples the candidate has no score on yet."""

# Examples each arm of a selection is scored on at least when a plan is sized: enough to tell a
# prompt that broke the output format (scoring 0) from one that works, the commonest failure of a
# weak optimizer, while small enough to leave budget for the arms that look good.
MIN_EVIDENCE = 8


@dataclass(frozen=True)
class ScoreMatrix:
    """Candidates scored on the same examples: `scores[i][j]` is candidate i on example j."""

    candidates: tuple[str, ...]
    examples: tuple[str, ...]
    scores: tuple[tuple[float, ...], ...]
    calls: int
    """Target calls made; scores the candidates already had cost none."""

    def row(self, cand_id: str) -> tuple[float, ...]:
        """One candidate's scores, in example order."""
        return self.scores[self.candidates.index(cand_id)]

    def mean(self, cand_id: str) -> float:
        """One candidate's mean over the examples (0 when there are none)."""
        row = self.row(cand_id)
        return math.fsum(row) / len(row) if row else 0.0


async def _default_score(
    ctx: SearchContext, cand: Candidate, examples: Sequence[Example]
) -> list[float]:
    return [r.score for r in await ctx.score(cand, examples)]


async def _gather(coros: Iterable[Awaitable[T]]) -> list[T]:
    """Run concurrently and let every coroutine finish before the first failure is re-raised, so
    that scores already paid for are kept."""
    results = await asyncio.gather(*coros, return_exceptions=True)
    out: list[T] = []
    for result in results:
        if isinstance(result, BaseException):
            raise result
        out.append(result)
    return out


async def evaluate_paired(
    ctx: SearchContext,
    candidates: Sequence[Candidate],
    examples: Sequence[Example],
    *,
    score: ScoreFn | None = None,
) -> ScoreMatrix:
    """Score every candidate on the same training examples, concurrently.

    A score a candidate already has on an example (from an earlier minibatch or selection) is
    reused: only the missing (candidate, example) pairs cost target calls.

    Args:
        ctx: The search context (training data and scoring).
        candidates: Distinct candidates; each is scored on every example.
        examples: Training examples, in the order of the matrix's columns.
        score: How to score a candidate on examples it has no score on; by default
            `ctx.score`.

    Returns:
        The score matrix and the target calls it cost.
    """
    calls = 0

    async def row(cand: Candidate) -> tuple[float, ...]:
        nonlocal calls
        known = cand.scores.get("train", {})
        todo = [e for e in examples if e.id not in known]
        if todo:
            got = await (score(cand, todo) if score else _default_score(ctx, cand, todo))
            calls += len(todo)
            fresh = dict(zip((e.id for e in todo), got, strict=True))
        else:
            fresh = {}
        return tuple(fresh[e.id] if e.id in fresh else known[e.id] for e in examples)

    rows = await _gather(row(c) for c in candidates)
    return ScoreMatrix(
        candidates=tuple(c.id for c in candidates),
        examples=tuple(e.id for e in examples),
        scores=tuple(rows),
        calls=calls,
    )


class PairedPulls:
    """The pull function of a selection over candidates and one shared sequence of examples:
    every arm's k-th score is on the sequence's k-th example."""

    def __init__(
        self,
        ctx: SearchContext,
        candidates: Sequence[Candidate],
        sequence: Sequence[Example],
        score: ScoreFn | None = None,
    ) -> None:
        self._ctx = ctx
        self._candidates = tuple(candidates)
        self.sequence = tuple(sequence)
        self._score = score
        self.positions = [0] * len(self._candidates)

    def seen(self, arm: int) -> tuple[str, ...]:
        """The ids of the examples an arm was scored on in this selection, in order."""
        return tuple(e.id for e in self.sequence[: self.positions[arm]])

    async def __call__(self, arm: int, size: int) -> Pulled:
        """Score arm `arm` on the next `size` examples of the shared sequence (see `PullFn`)."""
        start = self.positions[arm]
        batch = self.sequence[start : start + size]
        self.positions[arm] = start + len(batch)
        if not batch:
            return Pulled((), 0)
        matrix = await evaluate_paired(self._ctx, [self._candidates[arm]], batch, score=self._score)
        return Pulled(matrix.scores[0], matrix.calls)


@dataclass(frozen=True)
class PairedSelection:
    """A pool ranked by a selector on one shared sequence of examples."""

    ranking: tuple[Candidate, ...]
    """The whole pool, best first: the selector's own ranking."""
    selection: Selection
    examples: tuple[str, ...]
    """The ids of the shared sequence as far as any arm got; arm i saw the first pulls[i]."""


def shared_sequence(ctx: SearchContext, last: Sequence[Example] = ()) -> list[Example]:
    """One random order of the training examples for a selection, drawn from `ctx.rng`.

    Examples in `last` (say, the minibatch whose errors the new candidates were written to
    fix, on which they look better than they are) come after all the others, so they are used
    only when nothing fresher is left.
    """
    held = {e.id for e in last}
    fresh = [e for e in ctx.train if e.id not in held]
    late = [e for e in ctx.train if e.id in held]
    ctx.rng.shuffle(fresh)
    ctx.rng.shuffle(late)
    return fresh + late


async def select_paired(
    ctx: SearchContext,
    pool: Sequence[Candidate],
    keep: int,
    *,
    selector: Selector,
    budget: int,
    last: Sequence[Example] = (),
    score: ScoreFn | None = None,
) -> PairedSelection:
    """Rank a pool with a selector, every arm scored on the same training examples.

    One sequence of training examples is drawn for the whole selection (`shared_sequence`);
    each arm is scored on a prefix of it, reusing the scores it already has, and the selector
    compares arms on paired evidence. The returned ranking is the selector's own: a strategy
    reports it as is, rather than re-sorting by train means that favour arms scored on a lucky
    handful of examples. A "selection" event records the budget, what was spent, each arm's
    pulls and estimate, the ranking and the examples used.

    Args:
        ctx: The search context.
        pool: Distinct candidates to rank.
        keep: How many the search keeps; the selector is asked to tell apart at least
            these from the rest (see `keep_count`).
        selector: The best-arm identification procedure.
        budget: Most target calls the selection may make.
        last: Training examples to use only after all others (see `shared_sequence`).
        score: How to score a candidate on new examples; by default `ctx.score`.
    """
    sequence = shared_sequence(ctx, last)
    pulls = PairedPulls(ctx, pool, sequence, score)
    selection = await selector.select(
        len(pool), keep_count(keep, len(pool)), pulls, budget, ctx.rng
    )
    ranking = tuple(pool[i] for i in selection.ranking)
    used = max(pulls.positions, default=0)
    examples = tuple(e.id for e in sequence[:used])
    ctx.event(
        "selection",
        budget=budget,
        spent=selection.spent,
        pulls={pool[i].id: n for i, n in enumerate(selection.pulls)},
        estimates={
            pool[i].id: round(x, 6) for i, x in enumerate(selection.estimates) if selection.pulls[i]
        },
        ranking=[c.id for c in ranking],
        examples=list(examples),
    )
    return PairedSelection(ranking, selection, examples)


# --- the acceptance test ---------------------------------------------------------------------


@dataclass(frozen=True)
class Acceptance:
    """The outcome of one acceptance test: a child against its parent on the same examples."""

    child: str
    parent: str
    accepted: bool
    examples: tuple[str, ...]
    child_scores: tuple[float, ...]
    parent_scores: tuple[float, ...]


def acceptance_minibatch(
    failed: Sequence[Example], passed: Sequence[Example], rng: random.Random
) -> list[Example]:
    """The examples a child is tested on: the failures that motivated it and as many examples
    its parent got right (a random subset of `passed`, all of them when there are fewer), so
    that a child that fixes the failures by breaking what worked does not pass."""
    right = rng.sample(list(passed), min(len(failed), len(passed)))
    return [*failed, *right]


async def acceptance_tests(
    ctx: SearchContext,
    trials: Sequence[tuple[Candidate, Candidate, Sequence[Example]]],
    *,
    score: ScoreFn | None = None,
) -> list[Acceptance]:
    """GEPA-style cheap filter: each child passes only if, on its parent's minibatch, it scores
    at least as well as its parent (a tie passes).

    Parents are scored first (usually they already were, on that minibatch, for free), then the
    children concurrently; only a child's scores cost target calls. A child that fails is
    recorded as a "rejected" event (reason "worse_on_minibatch") with both rows of scores; it
    stays in the candidate log with its lineage but must not enter a selection.

    Args:
        ctx: The search context.
        trials: (child, parent, minibatch) triples; children are distinct.
        score: How to score a candidate on new examples; by default `ctx.score`.

    Returns:
        One `Acceptance` per trial, in order.
    """
    with ctx.stable_event_order():
        needed: dict[str, tuple[Candidate, dict[str, Example]]] = {}
        for _, parent, examples in trials:
            _, by_id = needed.setdefault(parent.id, (parent, {}))
            by_id.update((e.id, e) for e in examples)
        await _gather(
            evaluate_paired(ctx, [parent], list(by_id.values()), score=score)
            for parent, by_id in needed.values()
        )
        rows = await _gather(
            evaluate_paired(ctx, [parent, child], examples, score=score)
            for child, parent, examples in trials
        )
        out: list[Acceptance] = []
        for (child, parent, _), matrix in zip(trials, rows, strict=True):
            parent_row, child_row = matrix.scores
            # Exact sums, so that a child with the parent's very scores ties rather than losing
            # to rounding.
            accepted = math.fsum(child_row) >= math.fsum(parent_row)
            verdict = Acceptance(
                child.id, parent.id, accepted, matrix.examples, child_row, parent_row
            )
            out.append(verdict)
            if not accepted:
                ctx.event(
                    "rejected",
                    operator=child.operator,
                    reason="worse_on_minibatch",
                    message=(
                        f"scored {math.fsum(child_row):g} of {len(child_row)} on its parent's "
                        f"minibatch; the parent scored {math.fsum(parent_row):g}"
                    ),
                    id=child.id,
                    parent=parent.id,
                    minibatch=list(matrix.examples),
                    scores={"child": list(child_row), "parent": list(parent_row)},
                )
    return out


# --- plans that keep selection fed -----------------------------------------------------------


def min_evidence(batch: int, available: int) -> int:
    """Examples each arm of a selection should be scored on at least: one pull of `batch`,
    at most `MIN_EVIDENCE`, no more than the training data holds (and at least 1)."""
    return max(1, min(batch, MIN_EVIDENCE, available))


def ladder(value: int, floor: int = 1) -> list[int]:
    """Values to try for a plan parameter, from `value` down to `floor`: every integer up to 8,
    then steps of about a quarter, so that large settings give short ladders."""
    floor = max(0, min(floor, value))
    out: list[int] = []
    x = float(value)
    while True:
        v = max(floor, round(x))
        if not out or v < out[-1]:
            out.append(v)
        if v <= floor:
            return out
        x = x - 1 if x <= 8 else x * 0.75


def fit_layout(
    options: Mapping[str, Sequence[int]],
    assess: Callable[[Mapping[str, int]], Mapping[str, int] | None],
    weights: Mapping[str, float] | None = None,
) -> dict[str, int] | None:
    """The plan parameters that fit the budget and keep the most of what was configured.

    Each option lists a parameter's values, the configured (largest) one first, all >= 1.
    `assess` returns the values a combination puts in effect (never more than asked: say, a
    beam larger than what one round can fill) when it fits, None when it does not. The fitting
    combination whose values in effect keep the largest weighted product of fractions of the
    configured values wins, so that parameters shrink together rather than one going to its
    floor first; ties go to the combination listed first (larger earlier parameters).

    Returns:
        The values in effect of the chosen combination, or None when none fits.
    """
    names = list(options)
    tops = {n: options[n][0] for n in names}
    weight = {n: (weights or {}).get(n, 1.0) for n in names}

    def utility(values: Mapping[str, int]) -> float:
        return math.fsum(weight[n] * math.log(values[n] / tops[n]) for n in names)

    combos = [dict(zip(names, v, strict=True)) for v in itertools.product(*options.values())]
    order = sorted(range(len(combos)), key=lambda i: (-utility(combos[i]), i))
    best: dict[str, int] | None = None
    best_utility = -math.inf
    for i in order:
        # Values in effect never exceed those asked, so no later combination can do better.
        if utility(combos[i]) <= best_utility:
            break
        effect = assess(combos[i])
        if effect is not None and (u := utility(effect)) > best_utility:
            best, best_utility = dict(effect), u
    return best
