"""Population-based search: ranking, parent selection and fitness on a shared subset.

Shared by the strategies that keep a population of prompts and score every member on the same
training examples (OPRO's trajectory, EvoPrompt, Promptbreeder, the phrase-edit
metaheuristics). All randomness comes from the run's seeded `random.Random`, so a seed gives the
same parents, and the same run folder, every time.
"""

from __future__ import annotations

import asyncio
import math
import random
from collections.abc import Awaitable, Mapping, Sequence
from typing import TypeVar

from promptopt.search.context import Candidate, SearchContext
from promptopt.search.selection import evaluate_paired
from promptopt.task.example import Example

T = TypeVar("T")


def rank(scores: Mapping[str, float]) -> list[str]:
    """Candidate ids best first; on a tie the older candidate (the initial prompt first) wins,
    so a new prompt must score higher to displace one found before it."""
    return sorted(scores, key=lambda cid: (-scores[cid], cid))


async def gather_all(ctx: SearchContext, coros: Sequence[Awaitable[T]]) -> list[T]:
    """Run coroutines concurrently, results in call order, events in a fixed order; all of them
    finish before the first failure is raised, so no call already made is left unwaited."""
    with ctx.stable_event_order():
        results = await asyncio.gather(*coros, return_exceptions=True)
    done: list[T] = []
    for result in results:
        if isinstance(result, BaseException):
            raise result
        done.append(result)
    return done


def draw_subset(ctx: SearchContext, size: int) -> list[Example]:
    """The training examples every member of a population is scored on, drawn once."""
    train = list(ctx.train)
    if size >= len(train):
        return train
    return ctx.rng.sample(train, size)


async def fitness(
    ctx: SearchContext, members: Sequence[Candidate], subset: Sequence[Example]
) -> dict[str, float]:
    """Each member's mean score on the shared subset, scored concurrently; scores a member
    already has on an example are reused, so re-ranking survivors costs nothing."""
    with ctx.stable_event_order():
        matrix = await evaluate_paired(ctx, members, subset)
    return {cid: matrix.mean(cid) for cid in matrix.candidates}


def affordable(ctx: SearchContext, wanted: int, size: int, optimizer_per_child: int = 1) -> int:
    """How many of `wanted` children the budgets left can both ask for (`optimizer_per_child`
    optimizer calls each) and score on `size` examples each."""
    n = wanted
    target = ctx.remaining_target_calls()
    if target is not None:
        n = min(n, target // max(1, size))
    optimizer = ctx.remaining_optimizer_calls()
    if optimizer is not None and optimizer_per_child > 0:
        n = min(n, optimizer // optimizer_per_child)
    return max(0, n)


def roulette_select(rng: random.Random, weights: Sequence[float], k: int = 2) -> list[int]:
    """Indices of `k` distinct members drawn with probability proportional to their weights
    (fitness-proportionate, "roulette-wheel" selection), without replacement.

    Negative weights count as 0; when every remaining weight is 0 the draw is uniform, so a
    population that scores 0 everywhere can still breed. `k` larger than the population is
    cut to its size.
    """
    pool = list(range(len(weights)))
    chosen: list[int] = []
    for _ in range(min(k, len(pool))):
        w = [max(0.0, weights[i]) for i in pool]
        total = math.fsum(w)
        if total <= 0:
            pick = rng.randrange(len(pool))
        else:
            r = rng.random() * total
            acc = 0.0
            pick = len(pool) - 1
            for j, wj in enumerate(w):
                acc += wj
                if r < acc:
                    pick = j
                    break
        chosen.append(pool.pop(pick))
    return chosen


def tournament_select(rng: random.Random, scores: Sequence[float], size: int) -> int:
    """The index of the best of `size` distinct members drawn uniformly (tournament selection);
    a tie goes to the lower index, the older member. `size` is cut to the population's size."""
    if not scores:
        raise ValueError("tournament over an empty population")
    entrants = rng.sample(range(len(scores)), min(max(1, size), len(scores)))
    return min(entrants, key=lambda i: (-scores[i], i))
