"""The `eval` use case: score one prompt on a split of a task."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from promptopt.llm.cache import ResponseStore
from promptopt.llm.providers.base import Provider
from promptopt.scoring.runtime import Runtime, RuntimeOptions
from promptopt.scoring.scorer import EvalResult, ExampleResult
from promptopt.task.loader import LoadedTask


@dataclass(frozen=True)
class Evaluation:
    """A prompt's scores on a split, and what a judge metric's own model calls used."""

    result: EvalResult
    judge_usage: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """The `eval --json` contract; `judge_usage` only when a judge model was called."""
        payload = self.result.to_json()
        if self.judge_usage:
            payload["judge_usage"] = dict(self.judge_usage)
        return payload


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
) -> Evaluation:
    """Score `prompt` on the task's `split` (its first `limit` examples) with the target model
    and the task's metric."""
    examples = task.split(split)
    if limit is not None:
        examples = examples[:limit]
    async with Runtime(
        task, options or RuntimeOptions(), providers=providers, store=store
    ) as runtime:
        result = await runtime.scorer.evaluate(prompt, examples, split=split, on_result=on_result)
        judge = runtime.clients.get("judge")
        judge_usage = judge.usage.to_json() if judge is not None else {}
    return Evaluation(result, judge_usage)
