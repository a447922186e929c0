"""The Python API: what the command line does, callable from a script or a notebook.

Each function has an `async` twin (`optimize_async`, ...) for code that already runs an event
loop, such as a Jupyter notebook; the plain functions start their own loop.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from promptopt.app.checks import RunOverrides, run_problems
from promptopt.app.compare import (
    PromptSource,
    check_diff,
    compare_prompts,
    default_task,
    read_source,
)
from promptopt.app.evaluate import Evaluation, evaluate_prompt, read_demos_file
from promptopt.app.models import apply_default_models
from promptopt.app.run import execute_run, prepare_run
from promptopt.errors import TaskFileError, UsageError
from promptopt.reporting.diff import DiffReport
from promptopt.run.folder import BEST_DEMOS
from promptopt.run.records import SummaryRecord
from promptopt.scoring.runtime import RuntimeOptions
from promptopt.search.plan import StopRules
from promptopt.task.example import Example
from promptopt.task.loader import LoadedTask, task_from_mapping
from promptopt.task.loader import load_task as _load_task_file
from promptopt.task.prompt import Demo

T = TypeVar("T")

Task = LoadedTask
"""A checked task: its spec, its examples by split, and hashes of both."""


@dataclass(frozen=True)
class RunResult:
    """What `optimize` found: the best prompt and its held-out comparison with the initial."""

    summary: SummaryRecord

    @property
    def run_dir(self) -> Path:
        """The run folder (config, logs, candidates, reports)."""
        return Path(self.summary.run_dir)

    @property
    def initial_prompt(self) -> str:
        """The prompt the search started from."""
        return self.summary.initial_prompt

    @property
    def best_prompt(self) -> str:
        """The prompt chosen on dev (the initial one when nothing beat it), as the system
        message to deploy: a structured prompt's instruction and output format together."""
        return self.summary.best_prompt

    @property
    def best_instruction(self) -> str:
        """The part of the best prompt the search edited: a structured prompt's instruction
        (the whole prompt for a plain one)."""
        return self.summary.best_instruction or self.summary.best_prompt

    @property
    def initial_test(self) -> float | None:
        """The initial prompt's mean score on test (None if the run stopped before it)."""
        return self.summary.scores.initial.test

    @property
    def best_test(self) -> float | None:
        """The best prompt's mean score on test (None if the run stopped before it)."""
        return self.summary.scores.best.test

    @property
    def verdict(self) -> str | None:
        """improved, regressed or "no significant change" on test; None without a test."""
        comparison = self.summary.test_comparison
        return comparison.verdict if comparison is not None else None

    @property
    def delta_ci95(self) -> tuple[float, float] | None:
        """The paired 95% confidence interval of best - initial on test."""
        comparison = self.summary.test_comparison
        return comparison.ci95 if comparison is not None else None

    @property
    def best_demos(self) -> tuple[Demo, ...]:
        """The few-shot demonstrations the best prompt is sent with, in order (the run folder's
        best_demos.json); empty when it has none."""
        path = self.run_dir / BEST_DEMOS
        return read_demos_file(path) if self.summary.best_demos and path.exists() else ()

    def to_json(self) -> dict[str, Any]:
        """The summary as `promptopt run --json` prints it."""
        return self.summary.to_json()


def _sync(make: Callable[[], Awaitable[T]], name: str) -> T:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(make())  # type: ignore[arg-type]
    raise UsageError(
        f"promptopt.{name}() was called inside a running event loop (a notebook, say); "
        f"use `await promptopt.{name}_async(...)` there"
    )


def load_task(path: str | Path) -> Task:
    """Load and check a task file and its data; raises TaskFileError listing every problem."""
    return _load_task_file(Path(path))


def make_task(
    *,
    name: str,
    prompt: str | Mapping[str, Any],
    train: Sequence[Mapping[str, Any]],
    dev: Sequence[Mapping[str, Any]],
    test: Sequence[Mapping[str, Any]] = (),
    metric: str | Mapping[str, Any] | Callable[[str, Example], float] = "exact",
    target: str | Mapping[str, Any] | None = None,
    optimizer: str | Mapping[str, Any] | None = None,
    input_template: str = "{{input}}",
    description: str | None = None,
    search: Mapping[str, Any] | None = None,
    base_dir: str | Path = ".",
    **fields: Any,
) -> Task:
    """A task built in Python from lists of example mappings (each with `input` and `target`
    by default), checked like a task file.

    `prompt` is the instruction's text, or a mapping like a task file's structured `prompt:`
    (`instruction`, `output_format`). `metric` is a metric type ("exact", "label", ...), a
    mapping like a task file's `metric:` section, or a function `(output, example) -> float`
    in [0, 1]. `target` and `optimizer` are models (`provider:name` or a mapping); missing ones
    are chosen as the command line does.
    Other task-file sections (`prices`, `models.judge`, ...) can be passed as keyword fields.
    """
    raw: dict[str, Any] = {
        "name": name,
        "prompt": prompt if isinstance(prompt, str) else dict(prompt),
        **fields,
    }
    if description is not None:
        raw["description"] = description
    raw["input_template"] = input_template
    data = {"train": [dict(r) for r in train], "dev": [dict(r) for r in dev]}
    if test:
        data["test"] = [dict(r) for r in test]
    raw["data"] = {**data, **dict(raw.get("data") or {})}
    models = dict(raw.get("models") or {})
    if target is not None:
        models["target"] = target
    if optimizer is not None:
        models["optimizer"] = optimizer
    if models:
        raw["models"] = models
    if search is not None:
        raw["search"] = dict(search)
    function: Callable[[str, Example], float] | None = None
    if callable(metric):
        function = metric
    else:
        raw["metric"] = {"type": metric} if isinstance(metric, str) else dict(metric)
    return task_from_mapping(raw, base_dir=Path(base_dir), metric_function=function)


def _with_defaults(task: Task) -> Task:
    return apply_default_models(task, os.environ)[0]


def _options(
    task: Task,
    *,
    concurrency: int,
    cache_dir: str | Path | None,
    no_cache: bool,
    seed: int | None,
    max_cost: float | None,
) -> RuntimeOptions:
    return RuntimeOptions.for_task(
        task,
        concurrency=concurrency,
        cache_dir=Path(cache_dir) if cache_dir is not None else None,
        no_cache=no_cache,
        seed=seed,
        max_cost=max_cost,
    )


async def optimize_async(
    task: Task,
    *,
    strategy: str | None = None,
    params: Mapping[str, Any] | None = None,
    budget: int | None = None,
    optimizer_budget: int | None = None,
    max_cost: float | None = None,
    seed: int | None = None,
    max_steps: int | None = None,
    patience: int | None = None,
    target_score: float | None = None,
    finalists: int = 3,
    concurrency: int = 8,
    out: str | Path = "runs",
    cache_dir: str | Path | None = None,
    no_cache: bool = False,
) -> RunResult:
    """`optimize` for code that runs an event loop."""
    task = _with_defaults(task)
    # The checks `promptopt validate` and `run` make, all reported at once: otherwise a bad
    # metric function or parameter would surface only after the search had spent calls.
    problems = run_problems(
        task,
        RunOverrides(
            strategy=strategy,
            params=dict(params or {}),
            target_calls=budget,
            max_cost=max_cost,
            finalists=finalists,
        ),
    )
    if problems:
        raise TaskFileError(problems)
    prepared = prepare_run(
        task,
        strategy=strategy,
        params=params,
        target_calls=budget,
        optimizer_calls=optimizer_budget,
        max_cost=max_cost,
        seed=seed,
        stop=StopRules(max_steps, patience, target_score),
        finalists=finalists,
        concurrency=concurrency,
    )
    summary = await execute_run(
        prepared,
        out=Path(out),
        cache_dir=Path(cache_dir) if cache_dir is not None else None,
        no_cache=no_cache,
    )
    return RunResult(summary)


def optimize(
    task: Task,
    *,
    strategy: str | None = None,
    params: Mapping[str, Any] | None = None,
    budget: int | None = None,
    optimizer_budget: int | None = None,
    max_cost: float | None = None,
    seed: int | None = None,
    max_steps: int | None = None,
    patience: int | None = None,
    target_score: float | None = None,
    finalists: int = 3,
    concurrency: int = 8,
    out: str | Path = "runs",
    cache_dir: str | Path | None = None,
    no_cache: bool = False,
) -> RunResult:
    """Optimize the task's prompt, as `promptopt run` does: search on train, pick the best on
    dev, score initial and best on test, and write a run folder under `out`.

    `budget`, `optimizer_budget` and `max_cost` are hard caps on target calls, optimizer calls
    and dollars (the task file's `search.budget` otherwise); `strategy` and `params` override
    its `search.strategy` and `search.params`.

    Before any model is called, the task and these options get the checks `promptopt validate`
    makes (strategy and parameters, metric, models and prices, budget); every problem found is
    raised at once as a `TaskFileError` (its `.problems` name file, field and line).
    """
    return _sync(
        lambda: optimize_async(
            task,
            strategy=strategy,
            params=params,
            budget=budget,
            optimizer_budget=optimizer_budget,
            max_cost=max_cost,
            seed=seed,
            max_steps=max_steps,
            patience=patience,
            target_score=target_score,
            finalists=finalists,
            concurrency=concurrency,
            out=out,
            cache_dir=cache_dir,
            no_cache=no_cache,
        ),
        "optimize",
    )


async def evaluate_async(
    task: Task,
    prompt: str | None = None,
    *,
    split: str = "dev",
    limit: int | None = None,
    concurrency: int = 8,
    cache_dir: str | Path | None = None,
    no_cache: bool = False,
    seed: int | None = None,
    max_cost: float | None = None,
    demos: DemosArg = None,
) -> Evaluation:
    """`evaluate` for code that runs an event loop."""
    task = _with_defaults(task)
    options = _options(
        task,
        concurrency=concurrency,
        cache_dir=cache_dir,
        no_cache=no_cache,
        seed=seed,
        max_cost=max_cost,
    )
    text = task.spec.system_prompt if prompt is None else prompt
    return await evaluate_prompt(
        task, text, split=split, limit=limit, options=options, demos=_demos(demos)
    )


def evaluate(
    task: Task,
    prompt: str | None = None,
    *,
    split: str = "dev",
    limit: int | None = None,
    concurrency: int = 8,
    cache_dir: str | Path | None = None,
    no_cache: bool = False,
    seed: int | None = None,
    max_cost: float | None = None,
    demos: DemosArg = None,
) -> Evaluation:
    """Score `prompt` (the task's own by default) on a split, as `promptopt eval` does.

    `demos` are few-shot demonstrations sent before every input: a run's best_demos.json
    (a Path) or `Demo` objects. The result's `.result` has the mean `score`, `ci95()`,
    per-example outputs and usage.
    """
    return _sync(
        lambda: evaluate_async(
            task,
            prompt,
            split=split,
            limit=limit,
            concurrency=concurrency,
            cache_dir=cache_dir,
            no_cache=no_cache,
            seed=seed,
            max_cost=max_cost,
            demos=demos,
        ),
        "evaluate",
    )


DemosArg = Path | Sequence[Demo] | None
"""Few-shot demonstrations for the API: a best_demos.json file, or `Demo` objects."""


def _demos(value: DemosArg) -> tuple[Demo, ...]:
    if value is None:
        return ()
    if isinstance(value, Path):
        return read_demos_file(value)
    return tuple(value)


def _side(value: str | Path, label: str, demos: DemosArg = None) -> PromptSource:
    source = read_source(value) if isinstance(value, Path) else None
    if source is None:
        source = PromptSource(label, f"<{label} prompt>", str(value))
    if demos is not None:
        source = dataclasses.replace(source, demos=_demos(demos))
    return source


async def compare_async(
    old: str | Path,
    new: str | Path,
    *,
    task: Task | None = None,
    split: str = "test",
    force: bool = False,
    concurrency: int = 8,
    cache_dir: str | Path | None = None,
    no_cache: bool = False,
    seed: int | None = None,
    max_cost: float | None = None,
    old_demos: DemosArg = None,
    new_demos: DemosArg = None,
) -> DiffReport:
    """`compare` for code that runs an event loop."""
    a, b = _side(old, "old", old_demos), _side(new, "new", new_demos)
    if task is None and a.config is None and b.config is None:
        raise UsageError("compare() needs task= unless one side is a run folder (a Path)")
    chosen = task if task is not None else default_task(a, b)
    chosen = _with_defaults(chosen)
    plan = check_diff(chosen, a, b, force=force)
    options = _options(
        chosen,
        concurrency=concurrency,
        cache_dir=cache_dir,
        no_cache=no_cache,
        seed=seed,
        max_cost=max_cost,
    )
    return await compare_prompts(plan, split=split, options=options)


def compare(
    old: str | Path,
    new: str | Path,
    *,
    task: Task | None = None,
    split: str = "test",
    force: bool = False,
    concurrency: int = 8,
    cache_dir: str | Path | None = None,
    no_cache: bool = False,
    seed: int | None = None,
    max_cost: float | None = None,
    old_demos: DemosArg = None,
    new_demos: DemosArg = None,
) -> DiffReport:
    """Score two prompts on the same examples, as `promptopt diff` does.

    A `str` is a prompt's text; a `Path` is a prompt file or a run folder (its best prompt,
    with its demonstrations). `old_demos` and `new_demos` send few-shot demonstrations with a
    side (a best_demos.json Path, or `Demo` objects), replacing a run folder's own.
    The report has the `verdict`, the paired delta with its CI, McNemar's test for 0/1 scores
    (the sign test for graded ones) and every example whose score changed; `to_json()` gives
    the documented schema.
    """
    return _sync(
        lambda: compare_async(
            old,
            new,
            task=task,
            split=split,
            force=force,
            concurrency=concurrency,
            cache_dir=cache_dir,
            no_cache=no_cache,
            seed=seed,
            max_cost=max_cost,
            old_demos=old_demos,
            new_demos=new_demos,
        ),
        "compare",
    )
