"""Best-arm identification under a budget of example evaluations.

Search strategies hold n candidate prompts and must keep the best k while spending few target calls.
Each candidate is an arm; pulling it scores the prompt on a batch of examples it has not seen yet.
The budget counts example evaluations (one target call each), so every selector charges what a
pull returns and never asks for more than the budget has left.
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
import random
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from promptopt.errors import UsageError

PullFn = Callable[[int, int], Awaitable[Sequence[float]]]
"""(arm index, batch size) -> per-example scores in [0, 1]; fewer than asked when the arm's data
runs out, never more."""


@dataclass(frozen=True)
class Selection:
    """The outcome of a selection: arms best first, what each one scored and what was spent."""

    ranking: tuple[int, ...]
    means: tuple[float, ...]
    pulls: tuple[int, ...]
    spent: int

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
    """Per-arm statistics plus the budget; the only place that calls `pull`.

    Means are running averages over every example seen, since each pull evaluates fresh examples
    and all of them are valid evidence. Ties break by a random permutation drawn once from `rng`,
    so no arm is favoured for its position in the candidate list.
    """

    def __init__(self, n_arms: int, pull: PullFn, budget: int, rng: random.Random) -> None:
        self._pull = pull
        self.budget = budget
        self.spent = 0
        self.sums = [0.0] * n_arms
        self.counts = [0] * n_arms
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
        return self.sums[arm] / self.counts[arm] if self.counts[arm] else 0.0

    def live(self, arms: Sequence[int]) -> list[int]:
        """The arms that can still be pulled, in tie-break order."""
        return sorted((a for a in arms if not self.exhausted[a]), key=self._tiebreak.__getitem__)

    def by_mean(self, arms: Sequence[int]) -> list[int]:
        """Best first; arms never scored rank after every scored arm."""
        return sorted(
            arms,
            key=lambda a: (self.counts[a] == 0, -self.mean(a), -self.counts[a], self._tiebreak[a]),
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

    def _record(self, arm: int, asked: int, scores: Sequence[float]) -> None:
        if len(scores) > asked:
            raise ValueError(f"pull returned {len(scores)} scores for arm {arm}; asked for {asked}")
        for score in scores:
            if not 0.0 <= score <= 1.0:
                raise ValueError(f"pull returned score {score!r} for arm {arm}; must be in [0, 1]")
        self.sums[arm] += math.fsum(scores)
        self.counts[arm] += len(scores)
        self.spent += len(scores)
        if len(scores) < asked:
            self.exhausted[arm] = True

    def selection(self, ranking: Sequence[int]) -> Selection:
        return Selection(
            ranking=tuple(ranking),
            means=tuple(self.mean(a) for a in range(len(self.counts))),
            pulls=tuple(self.counts),
            spent=self.spent,
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
    """Pull the arm with the highest mean + bonus(total examples, arm examples) until the budget
    or `rounds` pulls are used up; arms never pulled go first. Returns the ranking by mean."""
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
            choice = max(live, key=lambda a: arms.mean(a) + bonus(total, arms.counts[a]))
        await arms.pull_many([(choice, step)])
        done += 1
    return arms.by_mean(everyone)


@dataclass(frozen=True)
class UCB:
    """Upper confidence bound: pull the arm maximising mean + c·sqrt(ln N / n_i).

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
    """UCB-E (Audibert & Bubeck): pull the arm maximising mean + sqrt(a / n_i).

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
    """Survivors by mean, then the eliminated arms, the last eliminated first."""
    return arms.by_mean(survivors) + list(reversed(eliminated))


@dataclass(frozen=True)
class SuccessiveRejects:
    """Successive Rejects (Audibert & Bubeck, 2010), stopped when k arms remain.

    Phase j brings every surviving arm up to n_j examples (see `successive_rejects_lengths`) and
    then drops the arm with the lowest mean.

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
            worst = arms.by_mean(survivors)[-1]
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
            ranked = arms.by_mean(survivors)
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
        return arms.selection(arms.by_mean(everyone))


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
