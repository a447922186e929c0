"""The `run` use case: settle a run's settings (new or resumed), show its plan, and carry it out
into a run folder, reports included."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from promptopt.app.models import override_models_from_config
from promptopt.errors import PromptoptError, UsageError
from promptopt.llm.batch import ProgressFn
from promptopt.llm.budget import BudgetCaps
from promptopt.llm.cache import ResponseStore
from promptopt.llm.error_budget import TooManyErrors
from promptopt.llm.journal import ResponseJournal
from promptopt.llm.providers.base import Provider
from promptopt.reporting.write import write_run_reports
from promptopt.run.folder import PREFERENCES, RESPONSES, RunFolder
from promptopt.run.records import SummaryRecord
from promptopt.scoring.preference import HumanAsk, HumanComparator, RecordedComparator
from promptopt.scoring.runtime import (
    Runtime,
    RuntimeOptions,
    check_models,
    priced_roles,
    unknown_cost_notes,
)
from promptopt.search.context import RunFitted, Strategy
from promptopt.search.demos import DemoSizing
from promptopt.search.engine import Engine, StepCallback
from promptopt.search.meta_prompts import MetaPromptSet, load_meta_prompts
from promptopt.search.plan import (
    DryRunPlan,
    RunSettings,
    StopRules,
    cost_left_for_search,
    final_eval_cost,
    final_reserve,
    initial_system_prompt,
    plan_run,
    planned_demo_sizing,
    run_judge_reserve,
    search_caps,
    search_sizes,
    strategy_plan,
    task_demo_sizing,
)
from promptopt.search.strategies.registry import make_strategy
from promptopt.task.loader import LoadedTask, load_task
from promptopt.task.modelspec import Price
from promptopt.task.prompt import Demo, PromptSpec, prompt_from_file


@dataclass(frozen=True)
class RunProgress:
    """How far a run is: its phase and the target calls sent in it."""

    phase: str
    """"search", then "final" (the dev and test evaluation of the initial and best prompts)."""
    done: int
    """Target-model calls sent in this phase (answers from the cache are not calls)."""
    total: int | None
    """The most the phase may send (None: no cap on target calls); a search may stop sooner."""


ProgressCallback = Callable[[RunProgress], None]
"""Receives a run's progress whenever it changes, from the run's own event loop."""

_PROGRESS_EVERY_S = 0.2


@dataclass(frozen=True)
class PreparedRun:
    """A run whose settings are settled and checked, before any folder exists or model is
    called."""

    task: LoadedTask
    settings: RunSettings
    meta_prompts: MetaPromptSet
    resume_from: RunFolder | None = None
    notes: tuple[str, ...] = ()
    """What the command should say once before it starts (an unpriced model's unknown cost)."""


def with_prompt(
    task: LoadedTask, prompt: str | Mapping[str, Any] | PromptSpec | None
) -> LoadedTask:
    """The task with another initial prompt (a resumed run's own, as its config.json has it:
    text or a structured mapping)."""
    if prompt is None:
        return task
    checked = PromptSpec.model_validate(prompt) if isinstance(prompt, Mapping) else prompt
    if checked == task.spec.prompt:
        return task
    return dataclasses.replace(task, spec=task.spec.model_copy(update={"prompt": checked}))


def with_baseline(task: LoadedTask, text: str) -> LoadedTask:
    """The task starting from a prompt file's text (`run --baseline FILE`).

    The file holds a full system prompt, as best_prompt.txt and `--write-if-better` write it;
    for a structured prompt, an ending that is the task's output format is split off again
    (`promptopt.task.prompt.prompt_from_file`), so a run's result round-trips as the next
    run's baseline.
    """
    spec = task.spec
    return with_prompt(
        task,
        prompt_from_file(spec.prompt, text, edit_output_format=spec.search.edit_output_format),
    )


def prepare_run(
    task: LoadedTask,
    *,
    strategy: str | None = None,
    params: Mapping[str, Any] | None = None,
    target_calls: int | None = None,
    optimizer_calls: int | None = None,
    judge_calls: int | None = None,
    max_cost: float | None = None,
    seed: int | None = None,
    stop: StopRules | None = None,
    finalists: int = 3,
    concurrency: int = 8,
    meta_prompts_dir: Path | None = None,
    initial_demos: Sequence[Demo] = (),
) -> PreparedRun:
    """Settle a new run: options given here override the task file's `search` section.

    `initial_demos` are the initial prompt's own few-shot demonstrations (`--demos-file`):
    training examples, sent with every candidate that has none of its own.

    Raises UsageError (or TaskFileError) for anything that would otherwise fail after a run
    folder was made: an unknown strategy or parameter, a budget too small for the final
    evaluation, missing meta-prompts, demonstrations that are not training examples.
    """
    search = task.spec.search
    caps = BudgetCaps(
        target_calls=target_calls or search.budget.target_calls,
        optimizer_calls=optimizer_calls or search.budget.optimizer_calls,
        cost_usd=max_cost if max_cost is not None else search.budget.cost_usd,
        judge_calls=judge_calls or search.budget.judge_calls,
    )
    name = strategy or search.strategy
    _, validated = make_strategy(name, {**search.params, **(params or {})})
    settings = RunSettings(
        strategy=name,
        params=validated.model_dump(mode="json"),
        seed=search.seed if seed is None else seed,
        caps=caps,
        stop=stop or StopRules(),
        finalists=finalists,
        concurrency=concurrency,
        initial_demos=_checked_initial_demos(task, initial_demos),
    )
    settings, notes = _with_optimizer_cap(task, settings)
    return _checked(PreparedRun(task, settings, load_meta_prompts(meta_prompts_dir), notes=notes))


def _checked_initial_demos(task: LoadedTask, demos: Sequence[Demo]) -> tuple[Demo, ...]:
    """The initial prompt's demonstrations, refused (UsageError naming --demos-file) where
    they would make the run's evidence wrong."""
    if not demos:
        return ()
    if task.spec.metric is None and task.metric_function is None:
        raise UsageError(
            "--demos-file needs a task with a metric: demonstrations are chosen by the "
            "metric's scores, and the task has none"
        )
    train = {e.id for e in task.splits.get("train", ())}
    held_out = {e.id: split for split in ("dev", "test") for e in task.splits.get(split, ())}
    seen: set[str] = set()
    for demo in demos:
        if demo.id in seen:
            raise UsageError(
                f"--demos-file: demonstration {demo.id!r} is there twice; keep one of them"
            )
        seen.add(demo.id)
        if demo.id in held_out:
            raise UsageError(
                f"--demos-file: demonstration {demo.id!r} is a {held_out[demo.id]} example of "
                f"{task.path}; demonstrations must come from train, or the held-out scores "
                "would see their own answers"
            )
        if demo.id not in train:
            raise UsageError(
                f"--demos-file: demonstration {demo.id!r} is not a training example of "
                f"{task.path} (the file is from another task, or the data changed); delete "
                "the file to start without demonstrations"
            )
    if len(train) - len(seen) < 1:
        raise UsageError(
            "--demos-file: the demonstrations are every training example of "
            f"{task.path}, and the search would have none left to score prompts on"
        )
    return tuple(demos)


def _with_optimizer_cap(
    task: LoadedTask, settings: RunSettings
) -> tuple[RunSettings, tuple[str, ...]]:
    """A run that caps target calls but not optimizer calls gets the optimizer calls its
    strategy's plan for that target budget uses as a cap, and a note saying so: otherwise a
    strategy may ask for proposals it will never have the target calls to score."""
    caps = settings.caps
    if caps.target_calls is None or caps.optimizer_calls is not None:
        return settings, ()
    strategy = _strategy(task, settings)
    sizes = search_sizes(task, settings)
    # A budget too small for the final evaluation is refused by `_checked`, with its message.
    dev, test = sizes.get("dev", 0), sizes.get("test", 0)
    if caps.target_calls <= final_reserve(dev, test, settings.finalists):
        return settings, ()
    # The demonstration step as the run sizes it: a cost cap can make it smaller, and the
    # instruction search then plans (and proposes) for the calls it gives back.
    by_calls = task_demo_sizing(task, settings, sizes)
    demos = planned_demo_sizing(task, settings, priced_roles(task, caps).get("target"), by_calls)
    planned = strategy_plan(strategy, sizes, settings, demos.target_calls).optimizer_calls
    if planned <= 0:
        return settings, ()
    shrunk = demos != by_calls
    note = (
        f"no optimizer budget is set: optimizer calls are capped at {planned}, what the "
        f"{settings.strategy} plan for {caps.target_calls} target calls uses"
        + (" (with the demonstration step the cost cap makes smaller)" if shrunk else "")
        + " (set --optimizer-budget or search.budget.optimizer_calls to choose another)"
    )
    return dataclasses.replace(settings, caps=dataclasses.replace(caps, optimizer_calls=planned)), (
        note,
    )


def prepare_resume(run_dir: Path, *, meta_prompts_dir: Path | None = None) -> PreparedRun:
    """Settle the continuation of a killed or interrupted run from its folder: the same task
    file (whose data must not have changed), models, initial prompt and settings."""
    folder = RunFolder.open(run_dir)
    config = folder.config()
    if config is None:
        raise UsageError(f"--resume: {run_dir} has no config.json; start a new run")
    task = load_task(Path(config.task_path))
    if task.data_hash != config.data_hash:
        raise UsageError(
            f"--resume: the data of {task.path} changed since the run started; start a new run"
        )
    task = override_models_from_config(task, config.models)
    # The run's initial prompt (a --baseline one, say) is the one in its config.json, and so is
    # whether its output format was the search's to edit.
    task = with_prompt(task, config.task.get("prompt"))
    recorded = config.task.get("search")
    edit_format = bool(isinstance(recorded, dict) and recorded.get("edit_output_format"))
    if edit_format != task.spec.search.edit_output_format:
        search = task.spec.search.model_copy(update={"edit_output_format": edit_format})
        task = dataclasses.replace(task, spec=task.spec.model_copy(update={"search": search}))
    settings = RunSettings.from_json(config.settings.model_dump())
    metas = load_meta_prompts(meta_prompts_dir)
    return _checked(PreparedRun(task, settings, metas, resume_from=folder))


def _checked(prepared: PreparedRun) -> PreparedRun:
    settings = prepared.settings
    make_strategy(settings.strategy, settings.params)
    dev, test = prepared.task.split("dev"), prepared.task.split("test")
    search_caps(
        settings.caps,
        final_reserve(len(dev), len(test), settings.finalists),
        run_judge_reserve(prepared.task, settings),
    )
    # Here, not when the models are first called: a dry run and a run refuse an unpriced model
    # under a cost cap alike, before any run folder exists.
    prices = priced_roles(prepared.task, settings.caps)
    target = prepared.task.spec.models.target
    if settings.caps.cost_usd is not None and target is not None:
        # The run checks this too, once its folder exists; a dry run must refuse it as well.
        final = final_eval_cost(
            prepared.task,
            target,
            prices.get("target"),
            settings.finalists,
            settings.initial_demos,
        )
        cost_left_for_search(
            settings.caps.cost_usd, final.usd(initial_system_prompt(prepared.task))
        )
    return dataclasses.replace(
        prepared, notes=prepared.notes + unknown_cost_notes(prepared.task, prices)
    )


def prices_of(task: LoadedTask, caps: BudgetCaps | None = None) -> dict[str, Price | None]:
    """The price of each role's model (None where unknown); UsageError for an unknown one when
    `caps` has a cost cap."""
    return priced_roles(task, caps or BudgetCaps())


def _strategy(task: LoadedTask, settings: RunSettings) -> Strategy:
    """The run's strategy, handed what its plan depends on beyond the budgets (`RunFitted`)."""
    strategy, _ = make_strategy(settings.strategy, settings.params)
    if isinstance(strategy, RunFitted):
        demos = task.spec.prompt_layout().demos
        return strategy.for_run(demos, settings.caps.cost_usd is not None)
    return strategy


def dry_run_plan(prepared: PreparedRun) -> DryRunPlan:
    """The most calls and dollars the run can spend, without calling any model."""
    task, settings = prepared.task, prepared.settings
    strategy = _strategy(task, settings)
    sizes = search_sizes(task, settings)
    prices = prices_of(task, settings.caps)
    # A cost cap can make the demonstration step smaller than the target budget does, as the
    # run does before it starts; the instruction search then keeps the calls it gives back.
    by_calls = task_demo_sizing(task, settings, sizes)
    demos = planned_demo_sizing(task, settings, prices.get("target"), by_calls)
    plan = plan_run(
        task,
        settings,
        strategy_plan(strategy, sizes, settings, demos.target_calls),
        prices,
        demos,
    )
    search_caps(settings.caps, plan.final_eval_calls, plan.final_judge_calls)
    # What the run will say before it starts (a derived optimizer cap), the dry run says too.
    said = tuple(note for note in prepared.notes if note not in plan.notes)
    if demos != by_calls:
        said += (_demos_shrunk_note(settings.caps.cost_usd, by_calls, demos),)
    return dataclasses.replace(plan, notes=said + plan.notes)


def _demos_shrunk_note(cap: float | None, by_calls: DemoSizing, by_cost: DemoSizing) -> str:
    """What the cost cap did to the demonstration step, naming what changed."""
    if not by_cost.target_calls:
        return (
            f"the cost cap (${cap:.4g}) leaves no room for the demonstration step "
            f"({by_calls.target_calls} target calls): at most half of what the search may "
            "spend is set aside for it, and that does not pay for one set at the calls' worst "
            "case; no demonstrations are searched (raise the cap to search them)"
        )
    fields = (
        ("sets", by_calls.sets, by_cost.sets),
        ("training examples in the pool", by_calls.pool, by_cost.pool),
        ("examples each set is scored on", by_calls.eval_examples, by_cost.eval_examples),
    )
    changed = [f"{new} {name}, not {old}" for name, old, new in fields if old != new]
    return (
        f"the cost cap (${cap:.4g}) makes the demonstration step smaller: "
        f"{'; '.join(changed)} ({by_cost.target_calls} target calls, not "
        f"{by_calls.target_calls})"
    )


async def execute_run(
    prepared: PreparedRun,
    *,
    out: Path = Path("runs"),
    cache_dir: Path | None = None,
    no_cache: bool = False,
    stop: asyncio.Event | None = None,
    on_folder: Callable[[RunFolder], None] | None = None,
    on_step: StepCallback | None = None,
    providers: Mapping[str, Provider] | None = None,
    store: ResponseStore | None = None,
    ask_human: HumanAsk | None = None,
    batch: bool = False,
    on_batch_progress: ProgressFn | None = None,
    timeout_s: float | None = None,
    max_retries: int | None = None,
    on_progress: ProgressCallback | None = None,
) -> SummaryRecord:
    """Search, evaluate initial and best prompt on held-out data, write the run folder with its
    reports, and return the summary (the `run --json` contract).

    A set `stop` event stops the search cleanly: the folder is saved and RunStopped raised.
    `providers` (by role) and `store` replace the task's providers and the response cache, for
    tests and embedding. `ask_human` is the terminal a person answers preferences at, for a
    strategy whose `feedback` is `human`; their answers are kept in the run folder's
    preferences.jsonl and replayed on resume. `timeout_s` and `max_retries` replace every
    model's request timeout and the task's retries (`errors.max_retries`). `on_progress`
    hears how many target calls the search and then the final evaluation have sent, out of
    the most each may send. `batch` scores through the providers' batch services (their ids
    kept in the folder's batches/; a resumed run that has some polls them again, with or
    without `batch`), telling `on_batch_progress` how they stand.
    """
    task, settings = prepared.task, prepared.settings
    strategy = _strategy(task, settings)
    human = settings.params.get("feedback") == "human"
    if human and ask_human is None:
        raise UsageError(
            "search.params.feedback is human: run (or resume) with --human, at a terminal"
        )
    options = RuntimeOptions(
        concurrency=settings.concurrency,
        cache_dir=cache_dir,
        no_cache=no_cache,
        seed=settings.seed,
        caps=settings.caps,
        timeout_s=timeout_s,
        max_retries=max_retries,
    )
    if providers is None:
        await check_models(task, options)
    folder = prepared.resume_from or RunFolder.create(out, task.spec.name)
    if on_folder is not None:
        on_folder(folder)
    journal = ResponseJournal(folder.file(RESPONSES))
    batches = folder.file("batches")
    # A resumed run whose batches are still out polls them rather than paying twice.
    batch = batch or (batches.is_dir() and any(batches.glob("*.json")))
    options = dataclasses.replace(options, batch=batch, on_batch_progress=on_batch_progress)
    runtime = Runtime(
        task,
        options,
        journal=journal,
        stop=stop,
        providers=providers,
        store=store,
        batch_dir=batches,
    )
    async with runtime:
        comparator = (
            RecordedComparator(HumanComparator(ask_human), folder.file(PREFERENCES))
            if human and ask_human is not None
            else None
        )
        watcher = _ProgressWatcher(runtime, prepared, on_progress)
        engine = Engine(
            task,
            runtime,
            folder,
            settings,
            strategy,
            prepared.meta_prompts,
            on_step=on_step,
            comparator=comparator,
            on_final=watcher.final,
        )
        try:
            async with watcher:
                summary = await engine.run(resume=prepared.resume_from is not None)
        except TooManyErrors:
            # The folder is saved for a resume; its reports show how far the run got and what
            # failed. A report that cannot be written must not hide why the run stopped.
            with contextlib.suppress(PromptoptError, OSError):
                write_run_reports(folder)
            raise
    write_run_reports(folder)
    return summary


class _ProgressWatcher:
    """Reports a run's progress from its budget ledger, a few times a second.

    The ledger already counts every target call as it is sent, whichever strategy sends it;
    reading it keeps the search code free of progress reporting.
    """

    def __init__(
        self, runtime: Runtime, prepared: PreparedRun, report: ProgressCallback | None
    ) -> None:
        self.runtime = runtime
        self.report = report
        dev, test = prepared.task.split("dev"), prepared.task.split("test")
        settings = prepared.settings
        self.reserve = final_reserve(len(dev), len(test), settings.finalists)
        self.search_total = search_caps(settings.caps, self.reserve).target_calls
        self.phase = "search"
        self.offset = 0
        self.last: RunProgress | None = None
        self.task: asyncio.Task[None] | None = None

    def _calls(self) -> int:
        return self.runtime.ledger.calls.get("target", 0)

    def final(self) -> None:
        """The search is over: count the final evaluation's calls from here."""
        self.tick()
        self.phase, self.offset = "final", self._calls()
        self.tick()

    def tick(self) -> None:
        """Report the progress if it changed since the last report."""
        if self.report is None:
            return
        total = self.search_total if self.phase == "search" else self.reserve
        done = self._calls() - self.offset
        progress = RunProgress(self.phase, done if total is None else min(done, total), total)
        if progress != self.last:
            self.last = progress
            self.report(progress)

    async def _loop(self) -> None:
        while True:
            self.tick()
            await asyncio.sleep(_PROGRESS_EVERY_S)

    async def __aenter__(self) -> _ProgressWatcher:
        if self.report is not None:
            self.task = asyncio.create_task(self._loop())
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
            if exc[0] is None:
                self.tick()
