"""Scores prompts on examples with the target model and the task's metric."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from promptopt.errors import BudgetExhausted, FatalProviderError, PromptoptError
from promptopt.llm.batch import Batcher
from promptopt.llm.client import ModelClient, RequestFailed, RoleUsage, RunStopped
from promptopt.llm.error_budget import ErrorBudget, ErrorLimits, TooManyErrors
from promptopt.llm.messages import Message
from promptopt.scoring.metrics import AsyncMetric, Metric, apply_metric
from promptopt.scoring.stats import mean_ci
from promptopt.task.example import Example
from promptopt.task.prompt import Demo


@dataclass(frozen=True)
class ExampleResult:
    """One example's outcome."""

    id: str
    output: str
    score: float
    error: str | None = None
    cached: bool = False
    latency_s: float = 0.0
    error_kind: str | None = None
    """What failed, in a few words ("HTTP 500", "connection failed", "metric raised")."""


@dataclass(frozen=True)
class EvalResult:
    """A prompt scored on a list of examples."""

    split: str
    prompt: str
    examples: tuple[ExampleResult, ...]
    usage: RoleUsage

    @property
    def n(self) -> int:
        """Number of examples."""
        return len(self.examples)

    @property
    def scores(self) -> list[float]:
        """Per-example scores in example order."""
        return [e.score for e in self.examples]

    @property
    def score(self) -> float:
        """Mean score (0 when there are no examples)."""
        return sum(self.scores) / self.n if self.n else 0.0

    @property
    def errors(self) -> int:
        """Examples whose request or metric failed."""
        return sum(1 for e in self.examples if e.error is not None)

    def ci95(self) -> tuple[float, float]:
        """95% confidence interval of the mean score."""
        _, lo, hi = mean_ci(self.scores)
        return lo, hi

    def to_json(self) -> dict[str, Any]:
        """The `eval --json` contract (fields may be added, never renamed)."""
        lo, hi = self.ci95()
        return {
            "split": self.split,
            "n": self.n,
            "score": self.score,
            "ci95": [lo, hi],
            "errors": self.errors,
            "usage": self.usage.to_json(),
            "examples": [
                {"id": e.id, "output": e.output, "score": e.score}
                | ({"error": e.error} if e.error else {})
                for e in self.examples
            ],
        }


def build_messages(prompt: str, user: str, demos: Sequence[Demo] = ()) -> tuple[Message, ...]:
    """The layout every target call uses: the instruction as the system message, the rendered
    input as the user message (small models do best with this plain layout).

    Args:
        prompt: The system message.
        user: The rendered input.
        demos: Few-shot demonstrations, sent in order before the input, each as a user turn
            (its input) and an assistant turn (its answer). Without any, the messages are the
            two above, exactly as before demonstrations existed (so are their cache keys).

    Returns:
        system, then user/assistant per demonstration, then user.
    """
    turns: list[Message] = [{"role": "system", "content": prompt}]
    for demo in demos:
        turns.append({"role": "user", "content": demo.input})
        turns.append({"role": "assistant", "content": demo.output})
    turns.append({"role": "user", "content": user})
    return tuple(turns)


class Scorer:
    """Scores a prompt on examples with the target model and the task's metric.

    A task without a metric (one searched by preferences) has a scorer without one: it collects
    the target's answers, each with a placeholder score of 0 that nothing records (`scored`).
    """

    def __init__(
        self,
        target: ModelClient,
        metric: Metric | AsyncMetric | None,
        render_input: Callable[[Example], str],
        *,
        limits: ErrorLimits | None = None,
        metric_name: str = "metric",
        batcher: Batcher | None = None,
    ) -> None:
        self.target = target
        self.batcher = batcher
        self.metric = metric
        self.render_input = render_input
        self.metric_name = metric_name
        # A metric that keeps raising makes every score 0 as surely as a dead endpoint.
        self.metric_errors = ErrorBudget(limits or ErrorLimits(), metric_name, unit="examples")

    @property
    def scored(self) -> bool:
        """Whether results carry real scores (False: the task has no metric)."""
        return self.metric is not None

    async def prefetch(self, jobs: Sequence[tuple[str, Sequence[Example], Sequence[Demo]]]) -> None:
        """With batches on, have the target's answers for these evaluations (prompt, examples,
        demos) fetched through the provider's batch service before they are scored; evaluations
        asked for together (one search round's candidates) share a batch. Does nothing
        otherwise."""
        if self.batcher is None:
            return
        await self.batcher.prefetch(
            [
                build_messages(prompt, self.render_input(example), demos)
                for prompt, examples, demos in jobs
                for example in examples
            ]
        )

    async def run_example(
        self, prompt: str, example: Example, demos: Sequence[Demo] = ()
    ) -> ExampleResult:
        """Score one example; a request or metric failure, or a metric value outside [0, 1],
        becomes a recorded error scored 0.

        Fatal provider errors, budget exhaustion and a spent error budget propagate: they stop
        the command.
        """
        try:
            result = await self.target.complete(
                build_messages(prompt, self.render_input(example), demos)
            )
        except RequestFailed as exc:
            return ExampleResult(example.id, "", 0.0, error=str(exc), error_kind=exc.kind)
        if self.metric is None:
            return ExampleResult(
                example.id, result.text, 0.0, cached=result.cached, latency_s=result.latency_s
            )
        try:
            score = await apply_metric(self.metric, result.text, example)
            if not 0.0 <= score <= 1.0:
                # Clamping would hide a metric bug behind plausible numbers.
                raise PromptoptError(
                    f"example {example.id}: {self.metric_name} returned {score!r}, outside [0, 1]"
                )
        except (
            FatalProviderError,
            BudgetExhausted,
            RunStopped,
            TooManyErrors,
            asyncio.CancelledError,
        ):
            raise  # a judge metric's model call must stop the command, not score 0
        except PromptoptError as exc:
            kind = "raised" if exc.__cause__ else "invalid value"
            self.metric_errors.failed_with(kind)
            return ExampleResult(
                example.id,
                result.text,
                0.0,
                error=str(exc),
                cached=result.cached,
                error_kind=f"metric {kind}",
            )
        self.metric_errors.succeeded()
        return ExampleResult(
            example.id, result.text, score, cached=result.cached, latency_s=result.latency_s
        )

    async def evaluate(
        self,
        prompt: str,
        examples: Sequence[Example],
        *,
        split: str,
        on_result: Callable[[ExampleResult], None] | None = None,
        demos: Sequence[Demo] = (),
    ) -> EvalResult:
        """Score `prompt` (with its few-shot `demos`, if any) on every example, concurrently;
        results keep the examples' order."""
        before = self.target.usage.copy()
        await self.prefetch([(prompt, examples, demos)])

        async def one(example: Example) -> ExampleResult:
            res = await self.run_example(prompt, example, demos)
            if on_result is not None:
                on_result(res)
            return res

        window = max(MIN_WINDOW, WINDOW_PER_SLOT * self.target.gate.concurrency)
        results = await in_windows(one, examples, window)
        return EvalResult(split, prompt, tuple(results), self.target.usage.minus(before))


# Examples in progress at once per concurrency slot of the target's endpoint: enough to keep
# every slot busy while answers from the cache or the journal return at once, few enough that
# memory does not grow with the number of examples.
WINDOW_PER_SLOT = 4
MIN_WINDOW = 32


async def in_windows(
    run: Callable[[Example], Awaitable[ExampleResult]], examples: Sequence[Example], window: int
) -> list[ExampleResult]:
    """`run` on every example, at most `window` at a time, results in the examples' order.

    A fixed set of workers takes the next example as one finishes, so there is never a task
    per example (100,000 of them took ~7.5 KB each). Workers start one loop turn after another,
    doubling, and only while examples are left: answers from the cache never wait, so the first
    worker takes them all and no other is made (a full window of 1,024 took longer to make than
    2,000 cached answers to score), and at a concurrency of 256 the first requests go out
    before the last workers have prepared theirs. The first exception cancels the others
    instead of leaving them running, and is raised."""
    results: list[ExampleResult | None] = [None] * len(examples)
    todo = iter(enumerate(examples))
    size = min(window, len(examples))
    workers: list[asyncio.Future[None]] = []

    async def worker() -> None:
        # One event loop: taking the next item never races with another worker.
        for index, example in todo:
            results[index] = await run(example)

    try:
        while len(workers) < size:
            more = min(max(1, len(workers)), size - len(workers))
            workers.extend(asyncio.ensure_future(worker()) for _ in range(more))
            await asyncio.sleep(0)
            # A finished worker found nothing left to take (or failed): no more are needed.
            if any(w.done() for w in workers):
                break
        await asyncio.gather(*workers)
    except BaseException:
        for w in workers:
            w.cancel()
        await asyncio.gather(*workers, return_exceptions=True)
        raise
    done = [r for r in results if r is not None]
    assert len(done) == len(examples)
    return done
