"""The `eval` use case: score one prompt on a split of a task."""

from __future__ import annotations

import csv
import io
import json
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from promptopt.errors import UsageError
from promptopt.llm.cache import ResponseStore
from promptopt.llm.providers.base import Provider
from promptopt.run.records import DemoRecord
from promptopt.scoring.runtime import Runtime, RuntimeOptions
from promptopt.scoring.scorer import EvalResult, ExampleResult
from promptopt.task.loader import LoadedTask
from promptopt.task.prompt import Demo


def read_demos_file(path: Path) -> tuple[Demo, ...]:
    """The few-shot demonstrations of a best_demos.json (a run's best prompt's), in order.

    The file is `{"id": ..., "demos": [{"id", "input", "output"}, ...]}`; a bare list of
    demonstrations is read too.

    Raises:
        UsageError: the file is unreadable or not such a list.
    """
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise UsageError(f"cannot read the demonstrations file {path}: {exc}") from exc
    items = data.get("demos") if isinstance(data, dict) else data
    if not isinstance(items, list):
        raise UsageError(f"{path}: expected a list of demonstrations under 'demos'")
    try:
        records = [DemoRecord.model_validate(item) for item in items]
    except ValidationError as exc:
        raise UsageError(f"{path}: a demonstration needs id, input and output ({exc})") from exc
    return tuple(Demo(r.id, r.input, r.output) for r in records)


@dataclass(frozen=True)
class Evaluation:
    """A prompt's scores on a split, and what a judge metric's own model calls used."""

    result: EvalResult
    judge_usage: dict[str, Any] = field(default_factory=dict)
    error_budget_exceeded: str | None = None
    """Why errors decided the score (more failed examples than the task's error budget
    allows), in one sentence; None when they did not."""
    model: str | None = None
    """The target model that answered (provider:name)."""
    inputs: Mapping[str, str] = field(default_factory=dict)
    """Each example's rendered input (the user message), by id."""
    expected: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    """Each example's acceptable targets, by id."""

    def to_json(self) -> dict[str, Any]:
        """The `eval --json` contract; `judge_usage` only when a judge model was called."""
        payload = self.result.to_json()
        payload["model"] = self.model
        payload["prompt"] = self.result.prompt
        for example in payload["examples"]:
            example["input"] = self.inputs.get(example["id"])
            example["expected"] = list(self.expected.get(example["id"], ()))
        if self.judge_usage:
            payload["judge_usage"] = dict(self.judge_usage)
        return payload

    def rows(self) -> list[dict[str, Any]]:
        """One flat record per example, in order: what `eval -o FILE.jsonl|csv` writes."""
        return [
            {
                "id": e.id,
                "input": self.inputs.get(e.id),
                "expected": list(self.expected.get(e.id, ())),
                "output": e.output,
                "score": e.score,
                "error": e.error,
                "error_kind": e.error_kind,
                "cached": e.cached,
                "latency_s": e.latency_s,
            }
            for e in self.result.examples
        ]


RESULT_FORMATS = {".jsonl": "jsonl", ".csv": "csv", ".json": "json"}
"""The per-example result formats `eval -o` writes, by file extension."""


def results_format(path: Path) -> str | None:
    """The format `eval -o` writes to `path`, from its extension; None for an unknown one."""
    return RESULT_FORMATS.get(path.suffix.lower())


def results_text(evaluation: Evaluation, fmt: str) -> str:
    """The per-example results in `fmt`: jsonl (a record a line), csv (a header, then a row
    per example; several targets as a JSON list) or json (the `eval --json` document)."""
    if fmt == "json":
        return json.dumps(evaluation.to_json(), ensure_ascii=False, indent=2) + "\n"
    rows = evaluation.rows()
    if fmt == "jsonl":
        return "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
    if fmt != "csv":
        raise ValueError(f"unknown results format {fmt!r}")
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(_CSV_FIELDS), lineterminator="\n")
    writer.writeheader()
    for row in rows:
        expected = row["expected"]
        one = expected[0] if len(expected) == 1 else json.dumps(expected, ensure_ascii=False)
        writer.writerow(
            {
                **row,
                "expected": one,
                "error": row["error"] or "",
                "error_kind": row["error_kind"] or "",
            }
        )
    return buffer.getvalue()


_CSV_FIELDS = (
    "id",
    "input",
    "expected",
    "output",
    "score",
    "error",
    "error_kind",
    "cached",
    "latency_s",
)


async def evaluate_prompt(
    task: LoadedTask,
    prompt: str,
    *,
    split: str = "dev",
    limit: int | None = None,
    options: RuntimeOptions | None = None,
    on_result: Callable[[ExampleResult], None] | None = None,
    providers: Mapping[str, Provider] | None = None,
    store: ResponseStore | None = None,
    demos: Sequence[Demo] = (),
) -> Evaluation:
    """Score `prompt` on the task's `split` (its first `limit` examples) with the target model
    and the task's metric; `demos` are few-shot demonstrations sent before every input."""
    task.require_metric("eval")
    examples = task.split(split)
    if limit is not None:
        examples = examples[:limit]
    async with Runtime(
        task, options or RuntimeOptions(), providers=providers, store=store
    ) as runtime:
        result = await runtime.scorer.evaluate(
            prompt, examples, split=split, on_result=on_result, demos=demos
        )
        judge = runtime.clients.get("judge")
        judge_usage = judge.usage.to_json() if judge is not None else {}
        exceeded = errors_decided(runtime, result)
    target = task.spec.models.target
    return Evaluation(
        result,
        judge_usage,
        exceeded,
        model=target.model if target is not None else None,
        inputs={ex.id: task.render_input(ex) for ex in examples},
        expected={ex.id: ex.targets for ex in examples},
    )


def errors_decided(runtime: Runtime, result: EvalResult) -> str | None:
    """One sentence naming the endpoint, the failure kinds and the count when more of
    `result`'s examples failed than the error budget allows; None otherwise."""
    if not runtime.limits.exceeded(result.errors, result.n):
        return None
    kinds = Counter(e.error_kind or "failed" for e in result.examples if e.error is not None)
    detail = ", ".join(f"{kind}: {n}" for kind, n in kinds.most_common())
    return (
        f"{runtime.scorer.target.errors.what}: {result.errors} of {result.n} examples on "
        f"{result.split} failed ({detail}), more than the error budget of "
        f"{runtime.limits.max_rate:.0%}, so errors decided the score"
    )
