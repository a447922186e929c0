"""Diff reports: two prompt revisions scored on the same examples, and what changed.

A `DiffReport` is built either by scoring both prompts now (`prepare_diff` + `score_diff`, used by
`promptopt diff`; the response cache makes a repeat free) or from a finished run's
final_eval.json (`diff_from_final_eval`, used by run reports; no model call).

JSON schema of `DiffReport.to_json()` (`promptopt diff --format json`); fields may be added,
never renamed or removed::

    {
      "schema": "promptopt.diff/1",
      "provenance": {
        "task": str, "task_hash": str, "data_hash": str,
        "split": str, "n": int, "seed": int, "promptopt_version": str,
        "models": {ROLE: {"model": "provider:name", "reported": [str, ...]}},
        "old": {"label": str, "source": str}, "new": {"label": str, "source": str},
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
        "mcnemar": {"b": int, "c": int, "p_value": float} | null   # 0/1 scores only
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
      }
    }

where USAGE is {"input_tokens": int|null, "output_tokens": int|null, "cost_usd": float|null,
"mean_latency_s": float|null, "requests": int|null, "cache_hits": int|null}: tokens, cost and
latency are what one evaluation of the prompt on these examples takes at list price (cached
answers count at the price they were first paid), `requests` and `cache_hits` what this diff
actually sent.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from promptopt import __version__
from promptopt.errors import UsageError
from promptopt.llm.messages import Usage
from promptopt.llm.pricing import cost_usd
from promptopt.run.folder import CONFIG, FINAL_EVAL, SUMMARY, RunFolder
from promptopt.scoring.runtime import Runtime
from promptopt.scoring.scorer import EvalResult, build_messages
from promptopt.scoring.stats import Comparison, Verdict, compare, mean_ci
from promptopt.task.example import Example
from promptopt.task.loader import LoadedTask, TaskFile, load_task

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
class Provenance:
    """Where the two prompts and the scores come from."""

    task: str
    task_hash: str
    data_hash: str
    split: str
    seed: int
    models: Mapping[str, Mapping[str, Any]]
    old_label: str
    new_label: str
    old_source: str
    new_source: str
    promptopt_version: str = __version__
    mismatches: tuple[str, ...] = ()


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
            key=lambda o: (o.kind != "regression", -abs(o.new_score - o.old_score), o.id),
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
        """new - old for tokens, cost and mean latency (None when either is unknown)."""
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
                "models": {role: dict(info) for role, info in p.models.items()},
                "old": {"label": p.old_label, "source": p.old_source},
                "new": {"label": p.new_label, "source": p.new_source},
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
            },
            "verdict": self.verdict,
            "counts": self.counts(),
            "flips": [o.to_json() for o in self.flips],
            "usage": {
                "old": self.old_usage.to_json(),
                "new": self.new_usage.to_json(),
                "delta": self.usage_delta(),
            },
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
    )


# ---------------------------------------------------------------------------------------------
# from a finished run's final_eval.json (no model calls)


def _models_of(config: Mapping[str, Any], summary: Mapping[str, Any]) -> dict[str, Any]:
    reported = summary.get("models") or {}
    out: dict[str, Any] = {}
    for role, spec in (config.get("task", {}).get("models") or {}).items():
        if spec is None:
            continue
        model = spec.get("model") if isinstance(spec, dict) else str(spec)
        out[role] = {"model": model, "reported": list(reported.get(role, {}).get("reported", []))}
    return out


def diff_from_final_eval(folder: RunFolder, split: str = "test") -> DiffReport | None:
    """The initial prompt against the best one on `split`, as the run's final evaluation scored
    them; None when the run has no final evaluation (interrupted, or out of budget)."""
    final = folder.read_json(FINAL_EVAL)
    summary = folder.read_json(SUMMARY) or {}
    config = folder.read_json(CONFIG) or {}
    if final is None or split not in final.get("examples", {}):
        return None
    examples = final["examples"][split]
    old_rows = {r["id"]: r for r in final["initial"][split]}
    new_rows = {r["id"]: r for r in final["best"][split]}
    outcomes = []
    for ex in examples:
        o, n = old_rows.get(ex["id"]), new_rows.get(ex["id"])
        if o is None or n is None:
            continue
        outcomes.append(
            ExampleOutcome(
                id=str(ex["id"]),
                input=str(ex.get("input", "")),
                expected=tuple(str(t) for t in ex.get("targets", ())),
                old_output=str(o.get("output", "")),
                new_output=str(n.get("output", "")),
                old_score=float(o["score"]),
                new_score=float(n["score"]),
                old_error=o.get("error"),
                new_error=n.get("error"),
                old_latency_s=o.get("latency_s"),
                new_latency_s=n.get("latency_s"),
            )
        )
    if not outcomes:
        return None
    task = config.get("task", {})
    seed = int(summary.get("seed", config.get("settings", {}).get("seed", 0)))
    provenance = Provenance(
        task=str(summary.get("task", task.get("name", "?"))),
        task_hash=str(config.get("task_hash", "")),
        data_hash=str(config.get("data_hash", "")),
        split=split,
        seed=seed,
        models=_models_of(config, summary),
        old_label=f"initial ({final['initial'].get('id', 'c0000')})",
        new_label=f"best ({final['best'].get('id', '?')})",
        old_source=str(folder.path),
        new_source=str(folder.path),
        promptopt_version=str(config.get("promptopt_version", __version__)),
    )
    return build_diff(
        provenance,
        str(summary.get("initial_prompt", task.get("prompt", ""))),
        str(summary.get("best_prompt", "")),
        outcomes,
        old_usage=_latency_only([o.old_latency_s for o in outcomes]),
        new_usage=_latency_only([o.new_latency_s for o in outcomes]),
        metric_name=str(task.get("metric", {}).get("type", "score")),
    )


def _latency_only(values: Sequence[float | None]) -> SideUsage:
    known = [v for v in values if v is not None]
    if not values or len(known) != len(values):
        return SideUsage()
    return SideUsage(mean_latency_s=sum(known) / len(known))


# ---------------------------------------------------------------------------------------------
# what `promptopt diff OLD NEW` compares


@dataclass(frozen=True)
class PromptSource:
    """One side of a diff: a prompt, and the run it came from when it came from a run."""

    label: str
    source: str
    text: str
    config: Mapping[str, Any] | None = None


def _strip_final_newlines(text: str) -> str:
    # Files written by promptopt (best_prompt.txt, --write-if-better) end with one newline that
    # is not part of the prompt.
    return text.rstrip("\n")


def read_prompt_file(path: Path) -> str:
    """A prompt file's text without its trailing newlines; UsageError when unreadable or empty."""
    try:
        text = _strip_final_newlines(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise UsageError(f"cannot read the prompt file {path}: {exc.strerror}") from exc
    if not text.strip():
        raise UsageError(f"the prompt file {path} is empty")
    return text


def _run_prompt(path: Path, which: Literal["initial", "best"]) -> PromptSource:
    folder = RunFolder.open(path)
    config = folder.read_json(CONFIG) or {}
    summary = folder.read_json(SUMMARY) or {}
    if which == "initial":
        text = summary.get("initial_prompt") or config.get("task", {}).get("prompt")
        label = f"{path.name} initial"
    else:
        text = summary.get("best_prompt")
        if text is None and folder.file("best_prompt.txt").is_file():
            text = _strip_final_newlines(folder.file("best_prompt.txt").read_text("utf-8"))
        label = f"{path.name} best" + (f" ({summary['best_id']})" if "best_id" in summary else "")
    if not text:
        raise UsageError(f"{path}: the run folder has no {which} prompt yet")
    return PromptSource(label, str(path), str(text), config)


def read_source(path: Path, which: Literal["initial", "best"] = "best") -> PromptSource:
    """A run folder's initial or best prompt, or a prompt file's text."""
    if path.is_dir():
        return _run_prompt(path, which)
    if not path.exists():
        raise UsageError(f"{path} does not exist: give a run folder or a prompt file")
    return PromptSource(path.name, str(path), read_prompt_file(path))


def scoring_identity(spec: Mapping[str, Any]) -> str:
    """A hash of what decides a prompt's scores besides the prompt: the data and metric
    settings, the input template, and the model(s) that answer and judge.

    The prompt, the description, the search settings and the optimizer (unless it is the
    judge) are left out: runs that differ only there are comparable.
    """
    models = dict(spec.get("models") or {})
    metric = spec.get("metric") or {}
    keep_roles = ["target", "judge"]
    if metric.get("type") == "judge" and models.get("judge") is None:
        keep_roles.append("optimizer")
    kept = {
        "input_template": spec.get("input_template"),
        "data": spec.get("data"),
        "metric": metric,
        "models": {role: models.get(role) for role in keep_roles},
        "prices": spec.get("prices"),
    }
    text = json.dumps(kept, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _target_model(spec: Mapping[str, Any]) -> str:
    target = (spec.get("models") or {}).get("target")
    return str(target.get("model")) if isinstance(target, dict) else str(target)


def comparability_problems(task: LoadedTask, sources: Sequence[PromptSource]) -> list[str]:
    """Why scores on `task` would not be comparable with the runs the prompts come from."""
    problems: list[str] = []
    spec = task.spec.model_dump(mode="json")
    identity = scoring_identity(spec)
    for src in sources:
        config = src.config
        if config is None:
            continue
        if config.get("data_hash") != task.data_hash:
            problems.append(
                f"{src.source}: its data (data_hash {str(config.get('data_hash'))[:12]}) differs "
                f"from the data scored now ({task.data_hash[:12]})"
            )
        run_spec = config.get("task") or {}
        if _target_model(run_spec) != _target_model(spec):
            problems.append(
                f"{src.source}: its target model {_target_model(run_spec)} differs from "
                f"{_target_model(spec)}"
            )
        elif config.get("task_hash") != task.task_hash and scoring_identity(run_spec) != identity:
            problems.append(
                f"{src.source}: its task (task_hash {str(config.get('task_hash'))[:12]}) differs "
                f"from {task.path} in its data, metric, input template or models"
            )
    return problems


def task_of_run(config: Mapping[str, Any]) -> LoadedTask:
    """The task a run scored with: its task file's data, with the spec (models, metric, prompt)
    exactly as the run recorded it in config.json."""
    path = config.get("task_path")
    if not path:
        raise UsageError("the run folder's config.json names no task file; pass --task")
    loaded = load_task(Path(str(path)))
    spec = TaskFile.model_validate(config["task"])
    return replace(loaded, spec=spec)


@dataclass(frozen=True)
class DiffPlan:
    """What `promptopt diff` will score: on which task, which two prompts."""

    task: LoadedTask
    old: PromptSource
    new: PromptSource
    mismatches: tuple[str, ...] = ()


def read_sides(old: Path, new: Path | None) -> tuple[PromptSource, PromptSource]:
    """The two prompts of a diff; with one run folder and no NEW, its initial and best prompt."""
    if new is None:
        if not old.is_dir():
            raise UsageError("give two prompts to compare: OLD NEW (or a single run folder)")
        return read_source(old, "initial"), read_source(old, "best")
    return read_source(old), read_source(new)


def default_task(old: PromptSource, new: PromptSource) -> LoadedTask:
    """The task of the first run folder among the two sides; UsageError for two prompt files."""
    config = old.config or new.config
    if config is None:
        raise UsageError("prompt files need --task TASK.yaml to be scored")
    return task_of_run(config)


def check_diff(
    task: LoadedTask, old: PromptSource, new: PromptSource, *, force: bool = False
) -> DiffPlan:
    """Refuse to compare prompts whose runs used other data, another task or another target
    model than `task` (UsageError), unless `force`, which records the mismatches instead."""
    problems = comparability_problems(task, [old, new])
    if problems and not force:
        raise UsageError(
            "the prompts cannot be compared fairly:\n  "
            + "\n  ".join(problems)
            + "\npass --force to compare them anyway"
        )
    return DiffPlan(task, old, new, tuple(problems))


def prepare_diff(
    old: Path, new: Path | None, task: LoadedTask | None = None, *, force: bool = False
) -> DiffPlan:
    """Resolve OLD and NEW (run folders or prompt files) and the task to score them on.

    With one run folder and no NEW, compares that run's initial prompt with its best. Without
    `task`, the first run folder's recorded task is used.
    """
    a, b = read_sides(old, new)
    return check_diff(task or default_task(a, b), a, b, force=force)


def _side_usage(runtime: Runtime, result: EvalResult, examples: Sequence[Example]) -> SideUsage:
    """Tokens and cost of one full evaluation, read from the cached answers so that a cached
    answer counts at what it cost when it was paid; without a cache, what was sent."""
    client = runtime.scorer.target
    total = Usage()
    complete = True
    for example in examples:
        messages = build_messages(result.prompt, runtime.task.render_input(example))
        value = runtime.store.get(client.key_for(messages))
        if value is None:
            complete = False
            break
        total = total + Usage.from_dict(value.get("usage", {}))
        if value.get("model"):
            client.reported_models.add(str(value["model"]))
    if not complete:
        total = result.usage.tokens
    latencies = [e.latency_s for e in result.examples]
    return SideUsage(
        input_tokens=total.input + total.cache_read + total.cache_write,
        output_tokens=total.output,
        cost_usd=cost_usd(total, client.price),
        mean_latency_s=sum(latencies) / len(latencies) if latencies else None,
        requests=result.usage.requests,
        cache_hits=result.usage.cache_hits,
    )


async def score_diff(plan: DiffPlan, runtime: Runtime, split: str = "test") -> DiffReport:
    """Score both prompts of `plan` on `split` with the runtime's target model and metric."""
    task = plan.task
    examples = task.split(split)
    scorer = runtime.scorer
    # One after the other, so that each side's usage is its own.
    old = await scorer.evaluate(plan.old.text, examples, split=split)
    new = await scorer.evaluate(plan.new.text, examples, split=split)
    old_usage = _side_usage(runtime, old, examples)
    new_usage = _side_usage(runtime, new, examples)
    outcomes = [
        ExampleOutcome(
            id=ex.id,
            input=task.render_input(ex),
            expected=ex.targets,
            old_output=o.output,
            new_output=n.output,
            old_score=o.score,
            new_score=n.score,
            old_error=o.error,
            new_error=n.error,
            old_latency_s=o.latency_s,
            new_latency_s=n.latency_s,
        )
        for ex, o, n in zip(examples, old.examples, new.examples, strict=True)
    ]
    models = {
        role: {"model": client.spec.model, "reported": sorted(client.reported_models)}
        for role, client in runtime.clients.items()
    }
    provenance = Provenance(
        task=task.spec.name,
        task_hash=task.task_hash,
        data_hash=task.data_hash,
        split=split,
        seed=runtime.options.seed,
        models=models,
        old_label=plan.old.label,
        new_label=plan.new.label,
        old_source=plan.old.source,
        new_source=plan.new.source,
        mismatches=plan.mismatches,
    )
    return build_diff(
        provenance,
        plan.old.text,
        plan.new.text,
        outcomes,
        old_usage=old_usage,
        new_usage=new_usage,
        metric_name=task.spec.metric.type,
    )


# ---------------------------------------------------------------------------------------------
# the CI gate of `promptopt run --write-if-better`


@dataclass(frozen=True)
class GateDecision:
    """Whether a run's best prompt earned its place, and why."""

    passed: bool
    reason: str
    delta: float | None = None
    ci95: tuple[float, float] | None = None


def ci_gate(summary: Mapping[str, Any], min_improvement: float = 0.0) -> GateDecision:
    """Pass only when the held-out test comparison says "improved" and the lower end of the
    paired 95% interval of best - initial is above `min_improvement`.

    Raises UsageError when the run has no test comparison (it ran out of budget before the
    final evaluation), since then nothing was proven either way.
    """
    comparison = summary.get("test_comparison")
    if not comparison:
        raise UsageError(
            "the run has no held-out test comparison (it stopped before the final evaluation); "
            "raise the budget"
        )
    delta = float(comparison["delta"])
    lo, hi = (float(x) for x in comparison["ci95"])
    verdict = str(comparison.get("verdict"))
    if summary.get("best_prompt") == summary.get("initial_prompt"):
        reason = "the search found no prompt better than the baseline on dev"
        return GateDecision(False, reason, delta, (lo, hi))
    if verdict != "improved":
        reason = f"the test comparison says {verdict}"
        return GateDecision(False, reason, delta, (lo, hi))
    if not lo > min_improvement:
        reason = (
            f"the 95% CI lower bound {lo:+.3f} is not above --min-improvement {min_improvement}"
        )
        return GateDecision(False, reason, delta, (lo, hi))
    reason = f"improved by {delta:+.3f} (95% CI [{lo:+.3f}, {hi:+.3f}])"
    return GateDecision(True, reason, delta, (lo, hi))
