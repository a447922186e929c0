import asyncio
import random
from collections.abc import Sequence
from dataclasses import dataclass, field

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from promptopt.errors import UsageError
from promptopt.search.selection import (
    SELECTORS,
    UCB,
    UCBE,
    BruteForce,
    Selection,
    Selector,
    SuccessiveHalving,
    SuccessiveRejects,
    make_selector,
    successive_rejects_lengths,
)

MEANS = [0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9]  # arm 7 is best by a 0.1 margin


@dataclass
class Arms:
    """Synthetic arms: Bernoulli(mean), or the mean itself when `constant`; optional data sizes.

    Checks the selector's side of the pull contract on every call."""

    means: Sequence[float]
    budget: int
    seed: int = 0
    constant: bool = False
    data: Sequence[int] | None = None
    asks: list[tuple[int, int]] = field(default_factory=list)
    returned: int = 0
    short: set[int] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)
        self.used = [0] * len(self.means)

    async def pull(self, arm: int, size: int) -> list[float]:
        assert size >= 1
        assert arm not in self.short, "pulled an arm after its data ran out"
        assert self.returned + size <= self.budget, "asked for more than the budget has left"
        self.asks.append((arm, size))
        if self.data is not None:
            size_left = self.data[arm] - self.used[arm]
            if size_left < size:
                self.short.add(arm)
            size = min(size, size_left)
        self.used[arm] += size
        self.returned += size
        mean = self.means[arm]
        if self.constant:
            return [mean] * size
        return [1.0 if self.rng.random() < mean else 0.0 for _ in range(size)]


def run(selector: Selector, arms: Arms, k: int = 1, seed: int = 0) -> Selection:
    return asyncio.run(
        selector.select(len(arms.means), k, arms.pull, arms.budget, random.Random(seed))
    )


def check_consistent(sel: Selection, arms: Arms) -> None:
    assert sel.spent <= arms.budget
    assert sel.spent == sum(sel.pulls) == arms.returned
    assert sorted(sel.ranking) == list(range(len(arms.means)))
    assert len(sel.means) == len(sel.pulls) == len(arms.means)


# (name, budget, required success rate over 50 seeds); budgets are a quarter of ProTeGi's
# 8 arms x 8 rounds x 32 examples, where a wrong pick means confusing 0.9 with 0.8.
ACCURACY_CASES = [
    ("ucb", 512, 0.9),
    ("ucb-e", 512, 0.9),
    ("successive-rejects", 512, 0.9),
    ("successive-halving", 512, 0.9),
    ("brute-force", 512, 0.9),
]


@pytest.mark.parametrize(("name", "budget", "rate"), ACCURACY_CASES)
def test_finds_the_best_arm(name: str, budget: int, rate: float) -> None:
    hits = 0
    for seed in range(50):
        arms = Arms(MEANS, budget, seed=seed)
        sel = run(make_selector(name), arms, seed=seed)
        check_consistent(sel, arms)
        hits += sel.ranking[0] == 7
    assert hits / 50 >= rate


@pytest.mark.parametrize("name", ["successive-rejects", "successive-halving", "brute-force"])
def test_finds_the_top_three(name: str) -> None:
    hits = 0
    for seed in range(50):
        arms = Arms(MEANS, 1024, seed=seed)
        sel = run(make_selector(name), arms, k=3, seed=seed)
        hits += set(sel.top(3)) == {5, 6, 7}
    assert hits / 50 >= 0.9


@pytest.mark.parametrize("name", ["ucb", "ucb-e", "successive-rejects", "successive-halving"])
def test_adaptive_selectors_spend_more_on_the_best_arm_than_the_worst(name: str) -> None:
    best = worst = 0
    for seed in range(20):
        sel = run(make_selector(name), Arms(MEANS, 512, seed=seed), seed=seed)
        best += sel.pulls[7]
        worst += sel.pulls[0]
    assert best > 1.5 * worst


def test_ucb_pulls_every_arm_before_any_arm_twice() -> None:
    arms = Arms(MEANS, 512, seed=3)
    run(UCB(batch=16), arms)
    first_round = [arm for arm, _ in arms.asks[: len(MEANS)]]
    assert sorted(first_round) == list(range(len(MEANS)))


def test_ucb_keeps_exploring_right_after_the_first_round() -> None:
    # With a log of the round index the bonus would vanish and the 0.5 arm would never be
    # pulled again; counting total pulls gives it a second look straight away.
    explore = Arms([0.6, 0.5], budget=40, constant=True)
    sel = run(UCB(c=1.0, batch=1), explore)
    assert [arm for arm, _ in explore.asks[:4]].count(1) >= 2
    assert sel.ranking == (0, 1)
    greedy = Arms([0.6, 0.5], budget=40, constant=True)
    assert run(UCB(c=0.0, batch=1), greedy).pulls == (39, 1)


def test_ucb_shrinks_its_batch_so_every_arm_is_scored_on_a_small_budget() -> None:
    arms = Arms(MEANS, budget=40, seed=1)
    sel = run(UCB(batch=32), arms)
    assert all(n >= 1 for n in sel.pulls)
    assert sel.spent == 40


def test_ucb_rounds_caps_the_number_of_pulls() -> None:
    arms = Arms(MEANS, budget=10_000, seed=1)
    sel = run(UCB(batch=8, rounds=10), arms)
    assert len(arms.asks) == 10
    assert sel.spent == 80


def test_ucbe_default_exploration_grows_with_the_budget() -> None:
    sel = UCBE()
    assert sel.exploration(8, 8) == 0.0
    assert 0 < sel.exploration(8, 512) < sel.exploration(8, 2048)
    assert UCBE(a=3.0).exploration(8, 2048) == 3.0


def test_successive_rejects_phase_lengths_match_the_formula() -> None:
    # K = 4, B = 100: logbar(4) = 1/2 + 1/2 + 1/3 + 1/4 = 19/12; n_k = ceil(96 / (19/12 * (5 - k)))
    # = ceil(15.16), ceil(20.21), ceil(30.32).
    assert successive_rejects_lengths(4, 1, 100) == [16, 21, 31]
    arms = Arms([0.1, 0.2, 0.3, 0.4], budget=100, constant=True)
    sel = run(SuccessiveRejects(), arms)
    assert sel.pulls == (16, 21, 31, 31)
    assert sel.ranking == (3, 2, 1, 0)
    assert sel.spent == 99


def test_successive_rejects_top_k_uses_the_budget_for_fewer_phases() -> None:
    # k = 2: L = 2/3 + 1/3 + 1/4 = 5/4; n_j = ceil(96 / (5/4 * (5 - j))) = ceil(19.2), ceil(25.6).
    assert successive_rejects_lengths(4, 2, 100) == [20, 26]
    arms = Arms([0.1, 0.2, 0.3, 0.4], budget=100, constant=True)
    sel = run(SuccessiveRejects(), arms, k=2)
    assert sel.pulls == (20, 26, 26, 26)
    assert sel.top(2) == (3, 2)


def test_successive_halving_splits_the_budget_over_rounds_and_survivors() -> None:
    # 8 arms, 3 rounds: 240 / (3 * 8) = 10 each; then 160 / (2 * 4) = 20; then 80 / 2 = 40.
    arms = Arms([i / 10 for i in range(8)], budget=240, constant=True)
    sel = run(SuccessiveHalving(), arms)
    assert sel.pulls == (10, 10, 10, 10, 30, 30, 70, 70)
    assert sel.ranking == (7, 6, 5, 4, 3, 2, 1, 0)
    assert sel.spent == 240


def test_batch_groups_calls_without_changing_the_allocation() -> None:
    arms = Arms([i / 10 for i in range(8)], budget=240, constant=True)
    sel = run(SuccessiveHalving(batch=7), arms)
    assert sel.pulls == (10, 10, 10, 10, 30, 30, 70, 70)
    assert max(size for _, size in arms.asks) == 7


def test_brute_force_gives_what_an_exhausted_arm_left_to_the_others() -> None:
    arms = Arms([0.9, 0.5, 0.4], budget=30, constant=True, data=[4, 100, 100])
    sel = run(BruteForce(), arms)
    assert sel.pulls == (4, 13, 13)
    assert sel.ranking == (0, 1, 2)


@pytest.mark.parametrize("name", sorted(SELECTORS))
def test_stops_pulling_an_arm_whose_data_ran_out(name: str) -> None:
    arms = Arms(MEANS, budget=600, seed=2, data=[0, 3, 50, 50, 50, 50, 50, 50])
    sel = run(make_selector(name), arms)
    check_consistent(sel, arms)  # Arms.pull asserts no arm is pulled after coming up short
    assert sel.pulls[0] == 0
    assert sel.pulls[1] <= 3
    assert sel.ranking[-1] == 0  # never scored, so ranked last


@pytest.mark.parametrize("name", sorted(SELECTORS))
def test_edge_cases(name: str) -> None:
    selector = make_selector(name)
    assert run(selector, Arms([], budget=10)) == Selection((), (), (), 0)
    one = Arms([0.5], budget=10)
    assert run(selector, one).ranking == (0,)
    assert one.asks == []
    everyone = Arms(MEANS, budget=100)
    sel = run(selector, everyone, k=len(MEANS) + 2)
    assert sel.ranking == tuple(range(len(MEANS)))
    assert sel.spent == 0
    poor = Arms(MEANS, budget=5, seed=4)
    check_consistent(run(selector, poor), poor)
    assert poor.returned == 5
    broke = Arms(MEANS, budget=0)
    assert run(selector, broke).spent == 0


@pytest.mark.parametrize("name", sorted(SELECTORS))
@settings(max_examples=40, deadline=None)
@given(
    means=st.lists(st.floats(0, 1), min_size=0, max_size=9),
    k=st.integers(0, 10),
    budget=st.integers(0, 400),
    data=st.lists(st.integers(0, 80), min_size=9, max_size=9),
    seed=st.integers(0, 2**16),
)
def test_never_exceeds_the_budget(
    name: str, means: list[float], k: int, budget: int, data: list[int], seed: int
) -> None:
    arms = Arms(means, budget, seed=seed, data=data[: len(means)])
    sel = run(make_selector(name), arms, k=k, seed=seed)
    check_consistent(sel, arms)


def test_unknown_name_lists_the_valid_ones() -> None:
    with pytest.raises(UsageError) as err:
        make_selector("thompson")
    for name in SELECTORS:
        assert name in str(err.value)


def test_bad_parameters_are_usage_errors() -> None:
    with pytest.raises(UsageError, match="takes batch"):
        make_selector("brute-force", c=2.0)
    with pytest.raises(UsageError, match="batch must be > 0"):
        make_selector("ucb", batch=0)
    assert make_selector("ucb", c=0.5, batch=4) == UCB(c=0.5, batch=4)


def test_a_pull_that_breaks_the_contract_is_rejected() -> None:
    async def too_many(arm: int, size: int) -> list[float]:
        return [0.5] * (size + 1)

    async def out_of_range(arm: int, size: int) -> list[float]:
        return [1.5] * size

    for pull in (too_many, out_of_range):
        with pytest.raises(ValueError):
            asyncio.run(BruteForce().select(3, 1, pull, 30, random.Random(0)))


def test_a_failing_pull_propagates_after_the_others_finish() -> None:
    arms = Arms([0.5, 0.5, 0.5], budget=30, constant=True)

    async def flaky(arm: int, size: int) -> list[float]:
        if arm == 1:
            raise RuntimeError("endpoint down")
        return await arms.pull(arm, size)

    with pytest.raises(RuntimeError, match="endpoint down"):
        asyncio.run(BruteForce().select(3, 1, flaky, 30, random.Random(0)))
    assert sorted(arm for arm, _ in arms.asks) == [0, 2]


def test_keep_count_makes_a_selector_compare_a_small_pool() -> None:
    from promptopt.search.selection import keep_count

    assert keep_count(2, 2) == 1  # keeping everything would score nothing
    assert keep_count(3, 8) == 3
    assert keep_count(4, 1) == 0
    assert keep_count(4, 0) == 0
