"""Diff reports: two prompt revisions scored on the same examples, and what changed.

A `DiffReport` is built either by scoring both prompts now (promptopt.app.compare, used by
`promptopt diff`; the response cache makes a repeat free) or from a finished run's
final_eval.json (`promptopt.reporting.run_files.diff_from_final_eval`, used by run reports; no
model call). How a report looks is up to `promptopt.reporting.view` and the renderers.

JSON schema of `DiffReport.to_json()` (`promptopt diff --format json`); fields may be added,
never renamed or removed::

    {
      "schema": "promptopt.diff/1",
      "provenance": {
        "task": str, "task_hash": str, "data_hash": str,
        "split": str, "n": int, "seed": int, "promptopt_version": str,
        "models": {ROLE: {"model": "provider:name", "reported": [str, ...]}},
        "old": SIDE, "new": SIDE,
        "mismatches": [str, ...]          # what --force let through; [] normally
      },
      "prompts": {
        "old": str, "new": str,
        "word_diff": [{"op": "equal" | "insert" | "delete", "text": str}, ...]
      },
      "metric": {
        "name": str, "binary": bool, "confidence": float,
        "old": float, "new": float, "old_ci95": [lo, hi], "new_ci95": [lo, hi],
        "delta": float, "delta_ci95": [lo, hi],   # new - old, paired bootstrap
        "mcnemar": {"b": int, "c": int, "p_value": float} | null,  # 0/1 scores only
        "sign_test": {"worse": int, "better": int, "p_value": float} | null  # graded only
      },
      "verdict": "improved" | "regressed" | "no significant change",
      "counts": {"regressions": int, "improvements": int, "unchanged": int},
      "flips": [                                  # regressions first, largest drop first
        {"id": str, "kind": "regression" | "improvement", "input": str,
         "expected": [str, ...], "old_output": str, "new_output": str,
         "old_score": float, "new_score": float,
         "old_error": str | null, "new_error": str | null}
      ],
      "usage": {                                  # null where a value was not recorded
        "old": USAGE, "new": USAGE,
        "delta": {"input_tokens", "output_tokens", "cost_usd", "mean_latency_s"}  # new - old
      },
      "demos": {                                  # few-shot demonstrations sent with each side,
        "old": [DEMO, ...], "new": [DEMO, ...]    # in order; [] for none
      }
    }

where SIDE is {"label": str, "source": str, "commit": COMMIT | null} (the commit when the prompt
was read from a git revision, REV:path or --rev), COMMIT is {"hash": str, "author":
"name <email>", "date": ISO 8601 str, "subject": str}, and USAGE is {"input_tokens": int|null,
"output_tokens": int|null, "cost_usd": float|null, "mean_latency_s": float|null,
"requests": int|null, "cache_hits": int|null}: tokens, cost and latency are what one evaluation
of the prompt on these examples takes at list price (cached answers count at the price they
were first paid), `requests` and `cache_hits` what this diff actually sent. DEMO is {"id": str,
"input": str, "output": str}: a training example's id, its input and the answer it shows, as
best_demos.json holds them. The word diff compares the system prompts; "demos" is what else each
side sends.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from promptopt.errors import UsageError
from promptopt.run.records import ModelUsed
from promptopt.scoring.stats import Comparison, Verdict, compare, mean_ci
from promptopt.task.prompt import Demo
from promptopt.version import __version__

_DIGITS = re.compile(r"(\d+)")


def natural_key(text: str) -> tuple[tuple[int, int, str], ...]:
    """A sort key that orders the numbers inside text by value: test-4 before test-39.

    Each run of digits compares as a number and every other run as text; the tags keep a
    number and a word at the same position comparable (numbers first, as digits sort before
    letters).
    """
    return tuple(
        (0, int(part), "") if part.isdigit() else (1, 0, part)
        for part in _DIGITS.split(text)
        if part
    )


SCHEMA = "promptopt.diff/1"
CONFIDENCE = 0.95

Op = Literal["equal", "insert", "delete"]
Kind = Literal["regression", "improvement", "unchanged"]

# Whitespace runs are tokens too, so that joining the segments gives back each prompt exactly.
_TOKENS = re.compile(r"\s+|[^\s]+")


@dataclass(frozen=True)
class Segment:
    """A run of word tokens that both prompts share, or that only one of them has."""

    op: Op
    text: str


def sign_json(comparison: Comparison) -> dict[str, Any] | None:
    """The sign test of a graded comparison as the JSON documents hold it (null for 0/1
    scores, which McNemar's test covers)."""
    sign = comparison.sign
    if sign is None:
        return None
    return {"worse": sign.worse, "better": sign.better, "p_value": sign.p_value}


def word_diff(old: str, new: str) -> tuple[Segment, ...]:
    """The word-level difference of two prompts; adjacent segments of one kind are merged.

    Joining the "equal" and "delete" segments gives `old`; "equal" and "insert" give `new`.
    """
    a, b = _TOKENS.findall(old), _TOKENS.findall(new)
    out: list[Segment] = []

    def add(op: Op, tokens: Sequence[str]) -> None:
        text = "".join(tokens)
        if not text:
            return
        if out and out[-1].op == op:
            out[-1] = Segment(op, out[-1].text + text)
        else:
            out.append(Segment(op, text))

    matcher = difflib.SequenceMatcher(a=a, b=b, autojunk=False)
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag == "equal":
            add("equal", a[i1:i2])
        else:
            # Deletions before insertions, the order a reader expects in "replace".
            add("delete", a[i1:i2])
            add("insert", b[j1:j2])
    return tuple(out)


@dataclass(frozen=True)
class ExampleOutcome:
    """One example scored under both prompts."""

    id: str
    input: str
    expected: tuple[str, ...]
    old_output: str
    new_output: str
    old_score: float
    new_score: float
    old_error: str | None = None
    new_error: str | None = None
    old_latency_s: float | None = None
    new_latency_s: float | None = None

    @property
    def kind(self) -> Kind:
        """Whether the new prompt did worse, better, or the same on this example."""
        if self.new_score < self.old_score:
            return "regression"
        if self.new_score > self.old_score:
            return "improvement"
        return "unchanged"

    def to_json(self) -> dict[str, Any]:
        """A flip record of the JSON schema."""
        return {
            "id": self.id,
            "kind": self.kind,
            "input": self.input,
            "expected": list(self.expected),
            "old_output": self.old_output,
            "new_output": self.new_output,
            "old_score": self.old_score,
            "new_score": self.new_score,
            "old_error": self.old_error,
            "new_error": self.new_error,
        }


@dataclass(frozen=True)
class SideUsage:
    """What evaluating one prompt on the examples takes; None where it was not recorded."""

    input_tokens: int | None = None
    output_tokens: int | None = None
    cost_usd: float | None = None
    mean_latency_s: float | None = None
    requests: int | None = None
    cache_hits: int | None = None

    def to_json(self) -> dict[str, Any]:
        """The USAGE object of the JSON schema."""
        return {
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "cost_usd": None if self.cost_usd is None else round(self.cost_usd, 8),
            "mean_latency_s": (
                None if self.mean_latency_s is None else round(self.mean_latency_s, 4)
            ),
            "requests": self.requests,
            "cache_hits": self.cache_hits,
        }


def _minus(new: float | None, old: float | None) -> float | None:
    return None if new is None or old is None else new - old


@dataclass(frozen=True)
class Commit:
    """The git commit a prompt was read at."""

    hash: str
    author: str
    """Name and e-mail address: "Ada <ada@example.com>"."""
    date: str
    """The author date, ISO 8601."""
    subject: str

    @property
    def short(self) -> str:
        """The hash's first 8 characters."""
        return self.hash[:8]

    def describe(self) -> str:
        """One line: short hash, date, author and subject."""
        return f"{self.short} {self.date[:10]} {self.author}: {self.subject}"

    def to_json(self) -> dict[str, str]:
        """The COMMIT object of the JSON schemas."""
        return {
            "hash": self.hash,
            "author": self.author,
            "date": self.date,
            "subject": self.subject,
        }


@dataclass(frozen=True)
class Provenance:
    """Where the two prompts and the scores come from."""

    task: str
    task_hash: str
    data_hash: str
    split: str
    seed: int
    models: Mapping[str, ModelUsed]
    old_label: str
    new_label: str
    old_source: str
    new_source: str
    promptopt_version: str = __version__
    mismatches: tuple[str, ...] = ()
    old_commit: Commit | None = None
    new_commit: Commit | None = None


@dataclass(frozen=True)
class DiffReport:
    """Two prompts scored on the same examples: the statistics, the flips and the costs."""

    provenance: Provenance
    old_prompt: str
    new_prompt: str
    outcomes: tuple[ExampleOutcome, ...]
    comparison: Comparison
    old_usage: SideUsage = field(default_factory=SideUsage)
    new_usage: SideUsage = field(default_factory=SideUsage)
    metric_name: str = "score"
    old_demos: tuple[Demo, ...] = ()
    """Few-shot demonstrations sent with the old prompt, in order."""
    new_demos: tuple[Demo, ...] = ()
    """Few-shot demonstrations sent with the new prompt, in order."""

    @property
    def verdict(self) -> Verdict:
        """improved, regressed, or no significant change."""
        return self.comparison.verdict

    @property
    def segments(self) -> tuple[Segment, ...]:
        """The word-level diff of the prompts."""
        return word_diff(self.old_prompt, self.new_prompt)

    @property
    def n(self) -> int:
        """Number of examples both prompts were scored on."""
        return len(self.outcomes)

    @property
    def old_scores(self) -> list[float]:
        """Per-example scores of the old prompt."""
        return [o.old_score for o in self.outcomes]

    @property
    def new_scores(self) -> list[float]:
        """Per-example scores of the new prompt."""
        return [o.new_score for o in self.outcomes]

    def mean_ci(self, side: Literal["old", "new"]) -> tuple[float, float, float]:
        """(mean, low, high) of one prompt's score."""
        scores = self.old_scores if side == "old" else self.new_scores
        return mean_ci(scores, confidence=CONFIDENCE, seed=self.provenance.seed)

    @property
    def flips(self) -> list[ExampleOutcome]:
        """Examples whose score changed: regressions first, each group largest change first."""
        changed = [o for o in self.outcomes if o.kind != "unchanged"]
        return sorted(
            changed,
            key=lambda o: (
                o.kind != "regression",
                -abs(o.new_score - o.old_score),
                natural_key(o.id),
            ),
        )

    def counts(self) -> dict[str, int]:
        """How many examples regressed, improved, or kept their score."""
        kinds = [o.kind for o in self.outcomes]
        return {
            "regressions": kinds.count("regression"),
            "improvements": kinds.count("improvement"),
            "unchanged": kinds.count("unchanged"),
        }

    def usage_delta(self) -> dict[str, float | None]:
        """New minus old for tokens, cost and mean latency (None when either is unknown)."""
        o, n = self.old_usage, self.new_usage
        return {
            "input_tokens": _minus(n.input_tokens, o.input_tokens),
            "output_tokens": _minus(n.output_tokens, o.output_tokens),
            "cost_usd": _minus(n.cost_usd, o.cost_usd),
            "mean_latency_s": _minus(n.mean_latency_s, o.mean_latency_s),
        }

    def to_json(self) -> dict[str, Any]:
        """The stable JSON document described in this module's docstring."""
        p = self.provenance
        paired, mcnemar = self.comparison.paired, self.comparison.mcnemar
        old_mean, old_lo, old_hi = self.mean_ci("old")
        new_mean, new_lo, new_hi = self.mean_ci("new")
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
                "models": {role: info.to_json() for role, info in p.models.items()},
                "old": _side(p.old_label, p.old_source, p.old_commit),
                "new": _side(p.new_label, p.new_source, p.new_commit),
                "mismatches": list(p.mismatches),
            },
            "prompts": {
                "old": self.old_prompt,
                "new": self.new_prompt,
                "word_diff": [{"op": s.op, "text": s.text} for s in self.segments],
            },
            "metric": {
                "name": self.metric_name,
                "binary": mcnemar is not None,
                "confidence": paired.confidence,
                "old": old_mean,
                "new": new_mean,
                "old_ci95": [old_lo, old_hi],
                "new_ci95": [new_lo, new_hi],
                "delta": paired.delta,
                "delta_ci95": [paired.ci_low, paired.ci_high],
                "mcnemar": (
                    None
                    if mcnemar is None
                    else {"b": mcnemar.b, "c": mcnemar.c, "p_value": mcnemar.p_value}
                ),
                "sign_test": sign_json(self.comparison),
            },
            "verdict": self.verdict,
            "counts": self.counts(),
            "flips": [o.to_json() for o in self.flips],
            "usage": {
                "old": self.old_usage.to_json(),
                "new": self.new_usage.to_json(),
                "delta": self.usage_delta(),
            },
            "demos": {
                "old": [d.to_json() for d in self.old_demos],
                "new": [d.to_json() for d in self.new_demos],
            },
        }


def _side(label: str, source: str, commit: Commit | None) -> dict[str, Any]:
    return {
        "label": label,
        "source": source,
        "commit": None if commit is None else commit.to_json(),
    }


def build_diff(
    provenance: Provenance,
    old_prompt: str,
    new_prompt: str,
    outcomes: Sequence[ExampleOutcome],
    *,
    old_usage: SideUsage | None = None,
    new_usage: SideUsage | None = None,
    metric_name: str = "score",
    old_demos: Sequence[Demo] = (),
    new_demos: Sequence[Demo] = (),
) -> DiffReport:
    """A diff report from per-example outcomes; the statistics use `provenance.seed`."""
    if not outcomes:
        raise UsageError(f"the {provenance.split} split has no examples to compare the prompts on")
    old = [o.old_score for o in outcomes]
    new = [o.new_score for o in outcomes]
    comparison = compare(old, new, confidence=CONFIDENCE, seed=provenance.seed)
    return DiffReport(
        provenance,
        old_prompt,
        new_prompt,
        tuple(outcomes),
        comparison,
        old_usage or SideUsage(),
        new_usage or SideUsage(),
        metric_name,
        tuple(old_demos),
        tuple(new_demos),
    )
