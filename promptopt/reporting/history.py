"""History reports: one prompt file's revisions in git, each scored on the same examples.

A `HistoryReport` is built by `promptopt.app.history` (used by `promptopt history`): every
revision's score with its 95% CI, the paired comparison of each revision with the one before
it (bootstrap CI of the difference, and McNemar's exact test on the flips for 0/1 scores or the
exact sign test for graded ones), the
significant improvements and regressions, the best revision, and optionally the newest
revision against a baseline revision.

JSON schema of `HistoryReport.to_json()` (`promptopt history --format json`); fields may be
added, never renamed or removed::

    {
      "schema": "promptopt.history/1",
      "provenance": {
        "task": str, "task_hash": str, "data_hash": str, "split": str, "n": int, "seed": int,
        "promptopt_version": str, "file": str,        # the prompt file, relative to the repo
        "models": {ROLE: {"model": "provider:name", "reported": [str, ...]}},
        "metric": str, "confidence": float
      },
      "revisions": [                                  # oldest first
        {"commit": COMMIT, "prompt": str, "score": float, "ci95": [lo, hi],
         "errors": int, "requests": int, "cache_hits": int}
      ],
      "steps": [STEP, ...],                           # revision i-1 -> revision i, in order
      "baseline": null | {"commit": COMMIT, "prompt": str, "score": float, "ci95": [lo, hi],
                          "comparison": STEP},        # --baseline REV -> the newest revision
      "best": COMMIT,                                 # the highest score (newest on a tie)
      "improvements": [str, ...],                     # hashes of significantly better revisions
      "regressions": [str, ...],                      # hashes of significantly worse revisions
      "newest_regressed": bool                        # what --fail-on-regression checks
    }

where COMMIT is {"hash", "author", "date", "subject"} (as in promptopt.diff/1) and STEP is
{"from": hash, "to": hash, "delta": float, "delta_ci95": [lo, hi],
"mcnemar": {"b": int, "c": int, "p_value": float} | null,
"sign_test": {"worse": int, "better": int, "p_value": float} | null,
"verdict": "improved" | "regressed" | "no significant change",
"word_diff": [{"op": "equal" | "insert" | "delete", "text": str}, ...]}.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import pairwise
from typing import Any

from promptopt.errors import UsageError
from promptopt.reporting.diff import CONFIDENCE, Commit, Segment, sign_json, word_diff
from promptopt.run.records import ModelUsed
from promptopt.scoring.stats import Comparison, Verdict, compare, mean_ci
from promptopt.version import __version__

SCHEMA = "promptopt.history/1"


@dataclass(frozen=True)
class RevisionScore:
    """One revision of the prompt file and its per-example scores."""

    commit: Commit
    prompt: str
    scores: tuple[float, ...]
    mean: float
    ci_low: float
    ci_high: float
    errors: int = 0
    requests: int = 0
    cache_hits: int = 0

    def to_json(self) -> dict[str, Any]:
        """A revision record of the JSON schema."""
        return {
            "commit": self.commit.to_json(),
            "prompt": self.prompt,
            "score": self.mean,
            "ci95": [self.ci_low, self.ci_high],
            "errors": self.errors,
            "requests": self.requests,
            "cache_hits": self.cache_hits,
        }


@dataclass(frozen=True)
class Step:
    """One revision against an earlier one, on the same examples."""

    old: RevisionScore
    new: RevisionScore
    comparison: Comparison

    @property
    def verdict(self) -> Verdict:
        """improved, regressed, or no significant change."""
        return self.comparison.verdict

    @property
    def segments(self) -> tuple[Segment, ...]:
        """The word-level diff of the two revisions' prompts."""
        return word_diff(self.old.prompt, self.new.prompt)

    def to_json(self) -> dict[str, Any]:
        """A STEP object of the JSON schema."""
        paired, mcnemar = self.comparison.paired, self.comparison.mcnemar
        return {
            "from": self.old.commit.hash,
            "to": self.new.commit.hash,
            "delta": paired.delta,
            "delta_ci95": [paired.ci_low, paired.ci_high],
            "mcnemar": (
                None
                if mcnemar is None
                else {"b": mcnemar.b, "c": mcnemar.c, "p_value": mcnemar.p_value}
            ),
            "sign_test": sign_json(self.comparison),
            "verdict": self.verdict,
            "word_diff": [{"op": s.op, "text": s.text} for s in self.segments],
        }


@dataclass(frozen=True)
class HistoryProvenance:
    """What the revisions were scored on, and with what."""

    task: str
    task_hash: str
    data_hash: str
    split: str
    seed: int
    file: str
    models: Mapping[str, ModelUsed]
    metric_name: str = "score"
    promptopt_version: str = __version__


@dataclass(frozen=True)
class HistoryReport:
    """A prompt file's revisions, oldest first, scored on the same examples."""

    provenance: HistoryProvenance
    revisions: tuple[RevisionScore, ...]
    steps: tuple[Step, ...]
    baseline: Step | None = None
    n: int = 0

    @property
    def best(self) -> RevisionScore:
        """The revision with the highest mean score; the newest of equals."""
        return max(reversed(self.revisions), key=lambda r: r.mean)

    @property
    def improvements(self) -> list[Step]:
        """The steps that were significant improvements."""
        return [s for s in self.steps if s.verdict == "improved"]

    @property
    def regressions(self) -> list[Step]:
        """The steps that were significant regressions."""
        return [s for s in self.steps if s.verdict == "regressed"]

    @property
    def gate(self) -> Step | None:
        """The comparison --fail-on-regression checks: the baseline against the newest revision
        when there is a baseline, else the newest revision against the one before it."""
        if self.baseline is not None:
            return self.baseline
        return self.steps[-1] if self.steps else None

    @property
    def newest_regressed(self) -> bool:
        """Whether the newest revision is significantly worse than what it is gated against."""
        return self.gate is not None and self.gate.verdict == "regressed"

    def to_json(self) -> dict[str, Any]:
        """The stable JSON document described in this module's docstring."""
        p = self.provenance
        baseline = None
        if self.baseline is not None:
            base = self.baseline.old
            baseline = {
                "commit": base.commit.to_json(),
                "prompt": base.prompt,
                "score": base.mean,
                "ci95": [base.ci_low, base.ci_high],
                "comparison": self.baseline.to_json(),
            }
        return {
            "schema": SCHEMA,
            "provenance": {
                "task": p.task,
                "task_hash": p.task_hash,
                "data_hash": p.data_hash,
                "split": p.split,
                "n": self.n,
                "seed": p.seed,
                "promptopt_version": p.promptopt_version,
                "file": p.file,
                "models": {role: info.to_json() for role, info in p.models.items()},
                "metric": p.metric_name,
                "confidence": CONFIDENCE,
            },
            "revisions": [r.to_json() for r in self.revisions],
            "steps": [s.to_json() for s in self.steps],
            "baseline": baseline,
            "best": self.best.commit.to_json(),
            "improvements": [s.new.commit.hash for s in self.improvements],
            "regressions": [s.new.commit.hash for s in self.regressions],
            "newest_regressed": self.newest_regressed,
        }


def score_revision(
    commit: Commit,
    prompt: str,
    scores: Sequence[float],
    *,
    seed: int,
    errors: int = 0,
    requests: int = 0,
    cache_hits: int = 0,
) -> RevisionScore:
    """A revision's scores with their mean and bootstrap 95% CI (seeded)."""
    mean, low, high = mean_ci(scores, confidence=CONFIDENCE, seed=seed)
    return RevisionScore(
        commit, prompt, tuple(scores), mean, low, high, errors, requests, cache_hits
    )


def compare_revisions(old: RevisionScore, new: RevisionScore, seed: int) -> Step:
    """`new` against `old`: paired bootstrap, McNemar for 0/1 scores (the sign test for
    graded ones), verdict."""
    return Step(old, new, compare(old.scores, new.scores, confidence=CONFIDENCE, seed=seed))


def build_history(
    provenance: HistoryProvenance,
    revisions: Sequence[RevisionScore],
    baseline: RevisionScore | None = None,
) -> HistoryReport:
    """The history report of scored revisions (oldest first), each compared with the one
    before it; with `baseline`, the newest is also compared with it.

    Raises:
        UsageError: No revision, or revisions scored on different numbers of examples.
    """
    if not revisions:
        raise UsageError(f"no revision of {provenance.file} to score")
    n = len(revisions[0].scores)
    if n == 0:
        raise UsageError(f"the {provenance.split} split has no examples to score revisions on")
    seed = provenance.seed
    steps = tuple(compare_revisions(old, new, seed) for old, new in pairwise(revisions))
    base = None if baseline is None else compare_revisions(baseline, revisions[-1], seed)
    return HistoryReport(provenance, tuple(revisions), steps, base, n)
