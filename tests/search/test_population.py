"""Parent selection for population-based strategies: roulette wheel and tournaments."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from promptopt.search.population import rank, roulette_select, tournament_select


def test_roulette_draws_in_proportion_to_fitness() -> None:
    rng = random.Random(0)
    weights = [0.1, 0.3, 0.6]
    draws = Counter(roulette_select(rng, weights, k=1)[0] for _ in range(20_000))
    for i, w in enumerate(weights):
        # 20,000 draws: the standard error of a share is below 0.004.
        assert draws[i] / 20_000 == pytest.approx(w, abs=0.02)


def test_roulette_never_draws_a_zero_weight_while_others_are_positive() -> None:
    rng = random.Random(1)
    for _ in range(2_000):
        assert 0 not in roulette_select(rng, [0.0, 0.5, 0.5], k=2)


def test_roulette_parents_are_distinct_and_k_is_cut_to_the_population() -> None:
    rng = random.Random(2)
    for _ in range(500):
        pair = roulette_select(rng, [0.9, 0.05, 0.05], k=2)
        assert len(set(pair)) == 2
    assert sorted(roulette_select(rng, [0.2, 0.4], k=5)) == [0, 1]


def test_roulette_all_zero_is_uniform() -> None:
    rng = random.Random(3)
    draws = Counter(roulette_select(rng, [0.0, 0.0, 0.0, 0.0], k=1)[0] for _ in range(8_000))
    assert set(draws) == {0, 1, 2, 3}
    assert all(abs(n / 8_000 - 0.25) < 0.03 for n in draws.values())


def test_roulette_is_reproducible_with_the_seed() -> None:
    weights = [0.2, 0.5, 0.1, 0.9, 0.3]
    a = [roulette_select(random.Random(7), weights) for _ in range(3)]
    b = [roulette_select(random.Random(7), weights) for _ in range(3)]
    assert a == b


def test_tournament_returns_the_best_entrant() -> None:
    scores = [0.1, 0.9, 0.5, 0.7]
    # A tournament as large as the population always picks the best member.
    assert tournament_select(random.Random(0), scores, size=4) == 1
    assert tournament_select(random.Random(0), scores, size=10) == 1


def test_tournament_of_one_is_uniform_and_of_two_favours_the_fitter() -> None:
    scores = [0.0, 1.0, 2.0, 3.0]
    rng = random.Random(4)
    ones = Counter(tournament_select(rng, scores, size=1) for _ in range(8_000))
    assert all(abs(n / 8_000 - 0.25) < 0.03 for n in ones.values())
    twos = Counter(tournament_select(rng, scores, size=2) for _ in range(12_000))
    # With pairs of distinct members, member i wins when it meets a lower one: i of 6 pairs.
    for i in range(4):
        assert twos[i] / 12_000 == pytest.approx(i / 6, abs=0.02)


def test_tournament_tie_goes_to_the_older_member() -> None:
    assert tournament_select(random.Random(5), [0.5, 0.5, 0.5], size=3) == 0


def test_tournament_over_nothing_is_an_error() -> None:
    with pytest.raises(ValueError, match="empty"):
        tournament_select(random.Random(0), [], size=2)


def test_rank_breaks_ties_by_age() -> None:
    assert rank({"c0002": 0.5, "c0001": 0.5, "c0003": 0.9}) == ["c0003", "c0001", "c0002"]
