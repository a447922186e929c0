"""Tests for promptopt.scoring.stats against hand-computed cases."""

from __future__ import annotations

from math import comb

import numpy as np
import pytest

from promptopt.scoring.stats import (
    McNemarResult,
    PairedResult,
    SignResult,
    compare,
    is_binary,
    mcnemar_exact,
    mean_ci,
    paired_bootstrap,
    paired_sign_test,
    sign_test,
    verdict,
    win_rate,
)


def discordant(b: int, c: int, ties: int = 0) -> tuple[list[float], list[float]]:
    """Paired 0/1 scores with b (old right, new wrong) and c (old wrong, new right) pairs."""
    old = [1.0] * b + [0.0] * c + [1.0] * ties
    new = [0.0] * b + [1.0] * c + [1.0] * ties
    return old, new


# --- McNemar -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("b", "c", "p"),
    [
        (1, 9, 2 * (1 + 10) / 1024),  # 0.021484375
        (9, 1, 0.021484375),
        (0, 5, 2 / 32),  # 0.0625
        (0, 0, 1.0),
        (3, 3, 1.0),
        (7, 7, 1.0),
        (0, 1, 1.0),  # 2 * 1/2 = 1
        (2, 10, 2 * (1 + 12 + 66) / 4096),
    ],
)
def test_mcnemar_exact_hand_computed(b: int, c: int, p: float) -> None:
    old, new = discordant(b, c, ties=4)
    result = mcnemar_exact(old, new)
    assert result == McNemarResult(b=b, c=c, p_value=p)


def test_mcnemar_large_counts_stay_exact() -> None:
    # 2000 discordant pairs: 2**2000 overflows a float, so this needs exact arithmetic.
    result = mcnemar_exact(*discordant(1000, 1000))
    assert result.p_value == 1.0
    result = mcnemar_exact(*discordant(900, 1100))
    expected = 2 * sum(comb(2000, i) for i in range(901)) / 2**2000
    assert result.p_value == pytest.approx(expected, rel=1e-12)
    assert 0 < result.p_value < 1e-4


def test_mcnemar_rejects_non_binary_and_unequal() -> None:
    with pytest.raises(ValueError, match="0/1"):
        mcnemar_exact([0.5, 1.0], [1.0, 1.0])
    with pytest.raises(ValueError, match="equal lengths"):
        mcnemar_exact([1.0], [1.0, 0.0])


def test_is_binary() -> None:
    assert is_binary([0, 1, 1.0, 0.0])
    assert not is_binary([0, 0.5])
    assert is_binary([])


# --- mean_ci -----------------------------------------------------------------------------------


def test_mean_ci_small_samples() -> None:
    assert mean_ci([0.7]) == (0.7, 0.7, 0.7)
    assert mean_ci([1.0, 1.0, 1.0]) == (1.0, 1.0, 1.0)
    with pytest.raises(ValueError, match="at least one"):
        mean_ci([])


def test_mean_ci_constant_sample_contains_its_mean() -> None:
    mean, low, high = mean_ci([0.7] * 30)
    assert low <= mean <= high
    assert high - low < 1e-12


def test_mean_ci_brackets_mean_and_is_seeded() -> None:
    scores = [1.0] * 60 + [0.0] * 40
    mean, low, high = mean_ci(scores)
    assert mean == pytest.approx(0.6)
    # normal approximation: 0.6 +- 1.96 * sqrt(0.24 / 100) = 0.6 +- 0.096
    assert low == pytest.approx(0.504, abs=0.025)
    assert high == pytest.approx(0.696, abs=0.025)
    assert mean_ci(scores, seed=0) == (mean, low, high)
    assert mean_ci(scores, seed=1) != (mean, low, high)


def test_mean_ci_narrows_with_lower_confidence() -> None:
    scores = [1.0] * 60 + [0.0] * 40
    _, low95, high95 = mean_ci(scores, confidence=0.95)
    _, low50, high50 = mean_ci(scores, confidence=0.5)
    assert low95 < low50 < high50 < high95


def test_mean_ci_validates_input() -> None:
    with pytest.raises(ValueError, match="confidence"):
        mean_ci([0.1, 0.2], confidence=1.5)
    with pytest.raises(ValueError, match="NaN"):
        mean_ci([0.1, float("nan")])


# --- paired bootstrap --------------------------------------------------------------------------


def test_paired_bootstrap_identical_inputs() -> None:
    scores = [0.0, 1.0, 0.5, 0.25, 1.0]
    assert paired_bootstrap(scores, scores) == PairedResult(0.0, 0.0, 0.0, 5, 0.95)


def test_paired_bootstrap_contains_true_delta_and_is_deterministic() -> None:
    rng = np.random.default_rng(123)
    old = rng.uniform(0, 1, 200)
    new = np.clip(old + rng.normal(0.1, 0.1, 200), 0, 1)
    true_delta = float(np.mean(new - old))
    first = paired_bootstrap(old.tolist(), new.tolist(), seed=7)
    assert first.delta == pytest.approx(true_delta)
    assert first.ci_low < true_delta < first.ci_high
    assert first.ci_low > 0  # a clear improvement
    assert paired_bootstrap(old.tolist(), new.tolist(), seed=7) == first


def test_paired_bootstrap_uses_pairing() -> None:
    # Every example improves by exactly 0.1: paired differences have no spread at all,
    # even though each prompt's scores vary widely.
    old = [0.0, 0.3, 0.5, 0.9] * 10
    new = [s + 0.1 for s in old]
    result = paired_bootstrap(old, new)
    assert result.ci_low == pytest.approx(0.1)
    assert result.ci_high == pytest.approx(0.1)


def test_paired_bootstrap_one_pair_and_errors() -> None:
    assert paired_bootstrap([0.2], [0.5]) == PairedResult(0.3, 0.3, 0.3, 1, 0.95)
    with pytest.raises(ValueError, match="equal lengths"):
        paired_bootstrap([0.0, 1.0], [1.0])
    with pytest.raises(ValueError, match="at least one"):
        paired_bootstrap([], [])


def test_paired_bootstrap_large_sample_chunks_identically() -> None:
    # n * n_boot exceeds one chunk; the result must still be a proper interval around delta.
    old, new = discordant(300, 500, ties=4200)
    result = paired_bootstrap(old, new, n_boot=500)
    assert result.delta == pytest.approx(200 / 5000)
    assert 0 < result.ci_low < result.delta < result.ci_high


# --- verdict -----------------------------------------------------------------------------------


def test_verdict_rule() -> None:
    up = PairedResult(0.2, 0.05, 0.35, 50, 0.95)
    down = PairedResult(-0.2, -0.35, -0.05, 50, 0.95)
    straddle = PairedResult(0.05, -0.02, 0.12, 50, 0.95)
    assert verdict(up, None) == "improved"
    assert verdict(down, None) == "regressed"
    assert verdict(straddle, None) == "no significant change"
    assert verdict(up, McNemarResult(1, 9, 0.021484375)) == "improved"
    # the tests disagree: no claim (on p, or on the direction)
    assert verdict(up, McNemarResult(9, 1, 0.021484375)) == "no significant change"
    assert verdict(down, McNemarResult(9, 1, 0.021484375)) == "regressed"
    assert verdict(up, McNemarResult(2, 8, 0.072265625)) == "no significant change"
    assert verdict(straddle, McNemarResult(1, 9, 0.021484375)) == "no significant change"
    assert verdict(down, McNemarResult(9, 1, 0.021484375), alpha=0.01) == "no significant change"


def test_compare_identical_prompts() -> None:
    scores = [1.0, 0.0, 1.0, 1.0, 0.0] * 10
    result = compare(scores, scores)
    assert result.verdict == "no significant change"
    assert result.mcnemar == McNemarResult(0, 0, 1.0)
    assert (result.paired.delta, result.paired.ci_low, result.paired.ci_high) == (0.0, 0.0, 0.0)


def test_compare_binary_improvement_and_regression() -> None:
    old, new = discordant(2, 20, ties=30)
    improved = compare(old, new)
    assert improved.verdict == "improved"
    assert improved.mcnemar is not None and improved.mcnemar.p_value < 0.001
    assert compare(new, old).verdict == "regressed"


def test_compare_graded_scores_skip_mcnemar() -> None:
    old = [0.5, 0.4, 0.6] * 20
    new = [0.9, 0.8, 0.95] * 20
    result = compare(old, new)
    assert result.mcnemar is None
    assert result.sign is not None and (result.sign.worse, result.sign.better) == (0, 60)
    assert result.sign.p_value == pytest.approx(2 / 2**60)
    assert result.verdict == "improved"
    assert compare(new, old).verdict == "regressed"


def test_a_few_changed_graded_examples_are_not_a_significant_change() -> None:
    # Four partial-credit gains out of 100: the bootstrap alone called it improved (its
    # interval excludes 0), though 4 wins and no loss have a sign test p of 0.125, as 4
    # binary flips have a McNemar p of 0.125 and are not significant either.
    old = [0.0] * 100
    new = [0.5] * 4 + [0.0] * 96
    result = compare(old, new)
    assert result.paired.ci_low > 0
    assert result.sign == SignResult(0, 4, 0.125)
    assert result.verdict == "no significant change"
    assert compare(old, [1.0] * 4 + [0.0] * 96).verdict == "no significant change"


def test_a_graded_gain_on_the_mean_that_most_examples_lose_is_not_improved() -> None:
    # 20 examples from 0 to 1, 60 from 0.5 to 0.4: the mean gains (+0.14, interval above 0)
    # while the sign test says, as significantly, that most changed examples got worse.
    old = [0.0] * 20 + [0.5] * 60
    new = [1.0] * 20 + [0.4] * 60
    result = compare(old, new)
    assert result.paired.ci_low > 0
    assert result.sign is not None and result.sign.p_value < 0.001
    assert (result.sign.worse, result.sign.better) == (60, 20)
    assert result.verdict == "no significant change"
    assert compare(new, old).verdict == "no significant change"


def test_a_tiny_graded_sample_is_never_significant() -> None:
    # n = 1 and a constant gain at n = 3 had a zero-width interval above 0: "improved".
    assert compare([0.0], [0.1]).verdict == "no significant change"
    result = compare([0.2, 0.3, 0.1], [0.3, 0.4, 0.2])
    assert result.paired.ci_low > 0
    assert result.verdict == "no significant change"
    assert result.sign is not None and result.sign.p_value == pytest.approx(0.25)


def test_the_sign_test_leaves_equal_scores_out() -> None:
    old = [0.5] * 30 + [0.2] * 3
    new = [0.5] * 30 + [0.8] * 3
    assert paired_sign_test(old, new) == SignResult(0, 3, 0.25)
    with pytest.raises(ValueError, match="equal lengths"):
        paired_sign_test([0.1], [0.1, 0.2])


@pytest.mark.parametrize(
    ("wins", "losses", "p"),
    [
        (0, 0, 1.0),
        (3, 0, 2 * 1 / 8),
        (10, 2, 2 * sum(comb(12, i) for i in range(3)) / 2**12),
        (2, 10, 2 * sum(comb(12, i) for i in range(3)) / 2**12),
        (5, 5, 1.0),
    ],
)
def test_sign_test_hand_computed(wins: int, losses: int, p: float) -> None:
    assert sign_test(wins, losses) == pytest.approx(p)


def test_win_rate_counts_ties_as_half_and_gives_a_verdict_both_ways() -> None:
    outcomes = [1.0] * 14 + [0.0] * 2 + [0.5] * 4
    r = win_rate(outcomes, seed=1)
    assert (r.wins, r.losses, r.ties, r.n) == (14, 2, 4, 20)
    assert r.rate == pytest.approx(16 / 20)
    assert r.ci_low < r.rate < r.ci_high and r.ci_low > 0.5
    assert r.sign_p == pytest.approx(sign_test(14, 2)) and r.sign_p < 0.05
    assert r.verdict == "improved"
    flipped = win_rate([1.0 - o for o in outcomes], seed=1)
    assert flipped.verdict == "regressed" and flipped.rate == pytest.approx(4 / 20)
    # Ties alone, or a narrow margin, prove nothing.
    assert win_rate([0.5] * 30).verdict == "no significant change"
    assert win_rate([1.0, 1.0, 0.0, 0.5]).verdict == "no significant change"
    # The same seed gives the same interval.
    assert win_rate(outcomes, seed=1) == r


def test_win_rate_refuses_what_is_not_an_outcome() -> None:
    with pytest.raises(ValueError, match="outcome"):
        win_rate([1.0, 0.7])
    with pytest.raises(ValueError):
        win_rate([])
