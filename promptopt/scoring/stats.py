"""Statistics for scores: confidence intervals and paired comparisons of two prompts.

Every interval is a seeded percentile bootstrap, so reports are reproducible and one method
serves binary and graded metrics alike. A paired comparison is also tested on the examples
that changed: binary (0/1) scores with McNemar's exact test, graded ones with the exact sign
test (of which McNemar's is the 0/1 case), so that a handful of changed examples, which the
bootstrap alone can call significant, never is.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Literal

import numpy as np
import numpy.typing as npt

Verdict = Literal["improved", "regressed", "no significant change"]

# Resampled index matrices are built in slices of about this many cells to bound memory.
_CHUNK_CELLS = 1_000_000


@dataclass(frozen=True)
class PairedResult:
    """Mean paired difference new - old with its bootstrap confidence interval."""

    delta: float
    ci_low: float
    ci_high: float
    n: int
    confidence: float


@dataclass(frozen=True)
class McNemarResult:
    """McNemar's exact test on paired 0/1 scores.

    `b` counts examples the old prompt got right and the new one wrong; `c` the reverse.
    """

    b: int
    c: int
    p_value: float


@dataclass(frozen=True)
class SignResult:
    """The exact sign test on paired graded scores: `worse` counts examples the new prompt
    scored lower on, `better` higher; equal scores are left out."""

    worse: int
    better: int
    p_value: float


@dataclass(frozen=True)
class Comparison:
    """Everything a report says about old versus new on the same examples."""

    paired: PairedResult
    mcnemar: McNemarResult | None
    verdict: Verdict
    sign: SignResult | None = None
    """The sign test, for graded (not 0/1) scores; None when `mcnemar` is given."""


def _as_array(scores: Sequence[float], name: str) -> npt.NDArray[np.float64]:
    values = np.asarray(scores, dtype=np.float64)
    if values.ndim != 1:
        raise ValueError(f"{name} must be a flat sequence of scores")
    if not np.all(np.isfinite(values)):
        raise ValueError(f"{name} contains a NaN or infinite score")
    return values


def _check_confidence(confidence: float) -> None:
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be between 0 and 1, got {confidence}")


def _bootstrap_interval(
    values: npt.NDArray[np.float64], confidence: float, n_boot: int, seed: int
) -> tuple[float, float, float]:
    """(mean, low, high) by the percentile bootstrap of the mean; degenerate for n <= 1."""
    _check_confidence(confidence)
    n = len(values)
    if n == 0:
        raise ValueError("need at least one score")
    mean = float(values.mean())
    if n == 1 or n_boot < 1:
        return mean, mean, mean
    rng = np.random.default_rng(seed)
    rows = max(1, _CHUNK_CELLS // n)
    means = np.empty(n_boot, dtype=np.float64)
    for start in range(0, n_boot, rows):
        stop = min(n_boot, start + rows)
        idx = rng.integers(0, n, size=(stop - start, n))
        means[start:stop] = values[idx].mean(axis=1)
    alpha = 1 - confidence
    low, high = np.quantile(means, [alpha / 2, 1 - alpha / 2])
    # Rounding can put a constant sample's mean a hair outside its own interval.
    return mean, min(float(low), mean), max(float(high), mean)


def mean_ci(
    scores: Sequence[float], *, confidence: float = 0.95, n_boot: int = 2000, seed: int = 0
) -> tuple[float, float, float]:
    """(mean, ci_low, ci_high): the mean score and its percentile bootstrap interval.

    Deterministic for a given seed. With one score the interval is that score; with none,
    ValueError (an empty split is the caller's bug, not a statistic).
    """
    return _bootstrap_interval(_as_array(scores, "scores"), confidence, n_boot, seed)


def paired_bootstrap(
    old: Sequence[float],
    new: Sequence[float],
    *,
    confidence: float = 0.95,
    n_boot: int = 10000,
    seed: int = 0,
) -> PairedResult:
    """Mean of new - old over the same examples, with a percentile bootstrap interval.

    Resampling examples (not the two prompts separately) keeps the pairing, so per-example
    difficulty cancels out. Identical inputs give (0, 0, 0).
    """
    a, b = _as_array(old, "old"), _as_array(new, "new")
    if len(a) != len(b):
        raise ValueError(f"paired scores need equal lengths, got {len(a)} and {len(b)}")
    delta, low, high = _bootstrap_interval(b - a, confidence, n_boot, seed)
    return PairedResult(delta, low, high, len(a), confidence)


def is_binary(scores: Sequence[float]) -> bool:
    """True when every score is exactly 0 or 1 (McNemar's test applies)."""
    return all(s in (0, 1) for s in scores)


def _binomial_cdf_half(k: int, n: int) -> Fraction:
    """P(X <= k) for X ~ Binomial(n, 1/2), exactly."""
    return Fraction(sum(math.comb(n, i) for i in range(k + 1)), 2**n)


def mcnemar_exact(old: Sequence[float], new: Sequence[float]) -> McNemarResult:
    """McNemar's exact test: two-sided binomial p-value on the discordant pairs.

    p = min(1, 2 * P(X <= min(b, c))) with X ~ Binomial(b + c, 1/2); p = 1 when b + c = 0.
    Raises ValueError unless both sequences are 0/1 scores of equal length.
    """
    if len(old) != len(new):
        raise ValueError(f"paired scores need equal lengths, got {len(old)} and {len(new)}")
    if not (is_binary(old) and is_binary(new)):
        raise ValueError("McNemar's test needs 0/1 scores")
    b = sum(1 for o, n in zip(old, new, strict=True) if o == 1 and n == 0)
    c = sum(1 for o, n in zip(old, new, strict=True) if o == 0 and n == 1)
    if b + c == 0:
        return McNemarResult(b, c, 1.0)
    p = min(Fraction(1), 2 * _binomial_cdf_half(min(b, c), b + c))
    return McNemarResult(b, c, float(p))


def paired_sign_test(old: Sequence[float], new: Sequence[float]) -> SignResult:
    """The exact sign test on paired scores: how many examples new scored lower and higher
    on, and the two-sided p-value of that split (`sign_test`)."""
    if len(old) != len(new):
        raise ValueError(f"paired scores need equal lengths, got {len(old)} and {len(new)}")
    worse = sum(1 for o, n in zip(old, new, strict=True) if n < o)
    better = sum(1 for o, n in zip(old, new, strict=True) if n > o)
    return SignResult(worse, better, sign_test(better, worse))


def verdict(
    paired: PairedResult,
    mcnemar: McNemarResult | None,
    alpha: float = 0.05,
    sign: SignResult | None = None,
) -> Verdict:
    """Whether new is better, worse, or indistinguishable from old.

    Rule: a change is significant when the bootstrap interval excludes 0 (its sign gives the
    direction) and the test on the changed examples given (McNemar's for binary scores, the
    sign test for graded ones) is below `alpha` too, with more changes that way than the
    other (graded scores can gain on the mean while most changed examples lose). If they
    disagree the answer is "no significant change": a CI gate should not fire on evidence
    only one test sees.
    """
    if paired.ci_low > 0:
        direction: Verdict = "improved"
    elif paired.ci_high < 0:
        direction = "regressed"
    else:
        return "no significant change"
    counts = [(t.p_value, t.c, t.b) for t in (mcnemar,) if t is not None]
    counts += [(t.p_value, t.better, t.worse) for t in (sign,) if t is not None]
    for p_value, up, down in counts:
        agrees = up > down if direction == "improved" else down > up
        if not (p_value < alpha and agrees):
            return "no significant change"
    return direction


def compare(
    old: Sequence[float],
    new: Sequence[float],
    *,
    confidence: float = 0.95,
    n_boot: int = 10000,
    seed: int = 0,
) -> Comparison:
    """Paired bootstrap, McNemar's test when both score lists are 0/1 (the sign test
    otherwise), and the verdict.

    The second test's threshold is 1 - confidence, so both tests work at the same level.
    """
    paired = paired_bootstrap(old, new, confidence=confidence, n_boot=n_boot, seed=seed)
    alpha = 1 - confidence
    if is_binary(old) and is_binary(new):
        test = mcnemar_exact(old, new)
        return Comparison(paired, test, verdict(paired, test, alpha=alpha))
    sign = paired_sign_test(old, new)
    return Comparison(paired, None, verdict(paired, None, alpha=alpha, sign=sign), sign)


@dataclass(frozen=True)
class WinRate:
    """How often the new prompt's answer was preferred to the old one's on the same inputs.

    `rate` counts a tie as half a win. The interval is the percentile bootstrap of that mean
    over inputs; `sign_p` is the two-sided exact sign test of wins against losses (ties
    dropped), the test that needs no scale, only which answer was better.
    """

    wins: int
    losses: int
    ties: int
    rate: float
    ci_low: float
    ci_high: float
    sign_p: float
    verdict: Verdict

    @property
    def n(self) -> int:
        """The inputs with a preference (ties included)."""
        return self.wins + self.losses + self.ties


def sign_test(wins: int, losses: int) -> float:
    """Two-sided exact sign test: p = min(1, 2 P(X <= min(wins, losses))), X ~ Bin(w+l, 1/2);
    1 when there is no win and no loss."""
    if wins < 0 or losses < 0:
        raise ValueError("wins and losses are counts")
    decided = wins + losses
    if decided == 0:
        return 1.0
    return float(min(Fraction(1), 2 * _binomial_cdf_half(min(wins, losses), decided)))


def win_rate(
    outcomes: Sequence[float], *, confidence: float = 0.95, n_boot: int = 10000, seed: int = 0
) -> WinRate:
    """The win rate of new over old from per-input outcomes (1 new preferred, 0 old
    preferred, 0.5 a tie), its bootstrap interval, the sign test and the verdict.

    The verdict is "improved" (or "regressed") only when the interval excludes 0.5 and the
    sign test is below 1 - `confidence` too, as with scores: a CI gate should not fire on
    evidence only one test sees. ValueError for an outcome other than 0, 0.5 or 1, or none.
    """
    values = _as_array(outcomes, "outcomes")
    if not np.all(np.isin(values, (0.0, 0.5, 1.0))):
        raise ValueError("each outcome must be 1 (win), 0 (loss) or 0.5 (tie)")
    wins = int(np.sum(values == 1.0))
    losses = int(np.sum(values == 0.0))
    ties = int(np.sum(values == 0.5))
    rate, low, high = _bootstrap_interval(values, confidence, n_boot, seed)
    p = sign_test(wins, losses)
    verdict: Verdict = "no significant change"
    if p < 1 - confidence:
        if low > 0.5:
            verdict = "improved"
        elif high < 0.5:
            verdict = "regressed"
    return WinRate(wins, losses, ties, rate, low, high, p, verdict)
