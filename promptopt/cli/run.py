"""`promptopt run`: optimize a task's prompt into a run folder; CI mode; --resume; --dry-run."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from promptopt.cli.common import (
    EXIT_ERROR,
    EXIT_NO_GAIN,
    EXIT_USAGE,
    BaseUrlOpt,
    BatchOpt,
    CacheDirOpt,
    ConcurrencyOpt,
    JsonOpt,
    MaxCostOpt,
    MaxRetriesOpt,
    NoCacheOpt,
    OptimizerOpt,
    OptimizerRpmOpt,
    OptimizerTpmOpt,
    SeedOpt,
    TargetOpt,
    TargetRpmOpt,
    TargetTpmOpt,
    TimeoutOpt,
    batch_printer,
    fail,
    fail_on,
    fail_with_problems,
    load,
    run_async,
    stderr,
    stdout,
    with_models,
    with_rate_limits,
)
from promptopt.errors import PromptoptError, UsageError

if TYPE_CHECKING:
    import asyncio

    from rich.console import Console
    from rich.table import Table

    from promptopt.app.run import PreparedRun
    from promptopt.run.folder import RunFolder
    from promptopt.run.records import SummaryRecord
    from promptopt.scoring.runtime import Runtime
    from promptopt.search.context import SearchContext, StepReport
    from promptopt.search.engine import StepCallback
    from promptopt.task.prompt import Demo

OutOpt = Annotated[Path, typer.Option("--out", help="Folder that receives run folders.")]


def parse_params(items: list[str]) -> dict[str, Any]:
    """--param KEY=VALUE items; a VALUE that parses as JSON is taken as such."""
    params: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            fail(f"--param: {item!r} must be written KEY=VALUE", EXIT_USAGE)
        try:
            params[key] = json.loads(raw)
        except (json.JSONDecodeError, RecursionError):
            params[key] = raw
    return params


def summary_table(summary: SummaryRecord) -> Table:
    """Initial and best prompt on dev and test."""
    from rich.table import Table

    table = Table(title=f"{summary.task}: {summary.strategy}", header_style="bold")
    table.add_column("prompt")
    table.add_column("dev", justify="right")
    table.add_column("test", justify="right")
    table.add_column("test 95% CI", justify="right")
    ci = summary.ci95 or {}

    def fmt(x: float | None) -> str:
        return "-" if x is None else f"{x:.3f}"

    def fmt_ci(key: str) -> str:
        pair = ci.get(key)
        return "-" if not pair else f"[{pair[0]:.3f}, {pair[1]:.3f}]"

    for name, row in (("initial", summary.scores.initial), ("best", summary.scores.best)):
        table.add_row(name, fmt(row.dev), fmt(row.test), fmt_ci(f"{name}_test"))
    return table


def print_run_result(summary: SummaryRecord, as_json: bool) -> None:
    """The run's result on stdout: its summary JSON, or a table and a few lines."""
    if as_json:
        sys.stdout.write(json.dumps(summary.to_json(), ensure_ascii=False) + "\n")
        return
    from promptopt.run.records import UsageRecord

    out = stdout()
    scores = summary.scores
    if not (scores.initial.dev is None and scores.best.dev is None and summary.dev_preference):
        # A task without a metric has no score to tabulate: its result is the win rate below.
        out.print(summary_table(summary))
    comparison = summary.test_comparison
    if comparison is not None:
        from promptopt.reporting.view import verdict_with_errors

        lo, hi = comparison.ci95
        shown = verdict_with_errors(comparison.verdict, summary.test_errors)
        out.print(
            f"test delta {comparison.delta:+.3f} [{lo:+.3f}, {hi:+.3f}]: {shown}", highlight=False
        )
    if summary.test_preference is not None:
        from promptopt.reporting.view import preference_sentence

        judged = summary.test_preference
        out.print(
            f"{preference_sentence(judged, 'test')}: {judged.verdict}",
            highlight=False,
            markup=False,
        )
    usage = summary.usage
    none = UsageRecord()
    target, optimizer = usage.get("target", none), usage.get("optimizer", none)
    judge = usage.get("judge")
    judge_calls = (
        "" if judge is None else f", judge {judge.requests} sent + {judge.cache_hits} cached"
    )
    costs = [u.cost_usd for u in usage.values()]
    # One unpriced model makes the total unknown: a partial sum would read as the whole cost.
    cost = "unknown" if None in costs else f"${sum(c or 0.0 for c in costs):.4f}"
    out.print(
        f"calls: target {target.requests} sent + {target.cache_hits} cached, optimizer "
        f"{optimizer.requests} sent + {optimizer.cache_hits} cached{judge_calls}; cost {cost}; "
        f"{summary.wall_s:.1f} s",
        highlight=False,
    )
    from promptopt.reporting.view import errors_note

    errors = errors_note(summary)
    if errors:
        out.print(f"errors: {errors}", highlight=False, markup=False)
    if summary.rejected:
        reasons = ", ".join(f"{reason}: {n}" for reason, n in summary.rejected.items())
        out.print(
            f"rejected proposals: {sum(summary.rejected.values())} ({reasons})", highlight=False
        )
    out.print(f"best prompt: {summary.run_dir}/best_prompt.txt", highlight=False)
    if summary.best_demos:
        out.print(
            f"best demos: {summary.run_dir}/best_demos.json ({', '.join(summary.best_demos)}; "
            "eval --demos sends them)",
            highlight=False,
        )


def _install_interrupt(stop: asyncio.Event) -> None:
    """First Ctrl-C: stop sending, let in-flight calls finish, save. Second: abort now."""
    import asyncio
    import contextlib
    import signal

    loop = asyncio.get_running_loop()
    main_task = asyncio.current_task()

    def on_sigint() -> None:
        if stop.is_set():
            if main_task is not None:
                main_task.cancel()
            return
        stop.set()
        stderr().print(
            "[yellow]stopping: finishing requests in flight and saving (Ctrl-C again to abort)[/]",
            markup=True,
        )

    with contextlib.suppress(NotImplementedError, RuntimeError):
        loop.add_signal_handler(signal.SIGINT, on_sigint)


def _step_printer(err: Console) -> StepCallback:
    def show(ctx: SearchContext, report: StepReport, runtime: Runtime) -> None:
        calls = runtime.ledger.calls
        score = "-" if report.best_score is None else f"{report.best_score:.3f}"
        unpriced = any(client.price is None for client in runtime.clients.values())
        spent = "cost unknown" if unpriced else f"${runtime.ledger.spent_usd:.4f}"
        err.print(
            f"step {ctx.step:>3} {report.name:<14} best(train) {score}  "
            f"target calls {calls.get('target', 0)}  optimizer calls {calls.get('optimizer', 0)}"
            f"  {spent}",
            highlight=False,
        )

    return show


def _print_plan(prepared: PreparedRun, as_json: bool) -> None:
    from promptopt.app.run import dry_run_plan

    try:
        plan = dry_run_plan(prepared)
    except PromptoptError as exc:
        fail_on(exc)
    if as_json:
        sys.stdout.write(json.dumps(plan.to_json()) + "\n")
        return
    cost = "unknown" if plan.estimated_cost_usd is None else f"${plan.estimated_cost_usd:.4f}"
    out = stdout()
    out.print(
        f"plan for {prepared.task.spec.name} with {prepared.settings.strategy} "
        "(no model was called):"
    )
    out.print(
        f"  at most {plan.target_calls} target calls "
        f"({plan.final_eval_calls} of them for the final dev/test evaluation)",
        highlight=False,
    )
    out.print(f"  at most {plan.optimizer_calls} optimizer calls", highlight=False)
    if plan.judge_calls:
        out.print(
            f"  at most {plan.judge_calls} judge calls ({plan.final_judge_calls} of them for "
            "judging the best prompt against the initial one on held-out inputs)",
            highlight=False,
        )
    out.print(f"  estimated cost at most {cost}", highlight=False)
    if prepared.settings.caps.cost_usd is not None and plan.final_eval_cost_usd is not None:
        out.print(
            f"  ${plan.final_eval_cost_usd:.4f} of the cost cap set aside for the final "
            "dev/test evaluation",
            highlight=False,
        )
    for note in plan.notes:
        out.print(f"  note: {note}", highlight=False)


def _ci_finish(
    summary: SummaryRecord,
    path: Path | None,
    min_improvement: float,
    summary_md: Path | None,
    demos_file: Path | None,
) -> None:
    """CI mode after a run: the gate, the prompt file, the Markdown summary, the exit code."""
    import os

    from rich.markup import escape

    from promptopt.app.gate import finish_ci

    try:
        outcome = finish_ci(
            summary,
            write_if_better=path,
            min_improvement=min_improvement,
            demos_file=demos_file,
            summary_md=summary_md,
            env=os.environ,
        )
    except PromptoptError as exc:
        fail(str(exc), EXIT_ERROR)
    err = stderr()
    decision = outcome.decision
    if decision.passed:
        err.print(f"[green]improved:[/] {escape(decision.reason)}", highlight=False, markup=True)
    else:
        err.print(
            f"[yellow]no significant gain:[/] {escape(decision.reason)}",
            highlight=False,
            markup=True,
        )
    if outcome.written_to is not None:
        err.print(f"wrote the best prompt to {outcome.written_to}", highlight=False)
    if outcome.demos_written_to is not None:
        err.print(
            f"wrote its few-shot demonstrations to {outcome.demos_written_to}", highlight=False
        )
    if path is not None and not decision.passed:
        err.print(f"{path} left untouched", highlight=False)
        raise typer.Exit(EXIT_NO_GAIN)


def _read_demos_flag(path: Path) -> tuple[Demo, ...]:
    """The demonstrations of the --demos-file; its errors name the flag."""
    from promptopt.app.evaluate import read_demos_file

    try:
        return read_demos_file(path)
    except UsageError as exc:
        raise UsageError(f"--demos-file: {exc}") from exc


def _same_initial_demos(demos: tuple[Demo, ...], prepared: PreparedRun, path: Path) -> None:
    """A resumed run keeps the demonstrations it started from; a --demos-file holding others
    would be written over with a result they were never scored with, so it is refused."""
    if demos != prepared.settings.initial_demos:
        fail(
            f"--demos-file: {path} holds other demonstrations than the run started from, and "
            "a resumed run keeps its initial prompt; resume without --demos-file, or start a "
            "new run",
            EXIT_USAGE,
        )


def _check_output_paths(
    write_if_better: Path | None,
    cache_dir: Path | None,
    no_cache: bool,
    demos_file: Path | None = None,
) -> None:
    """Refuse paths that would fail only after the whole run: a folder where the prompt file
    or the demonstrations file goes, a file where the cache folder goes."""
    if demos_file is not None and demos_file.is_dir():
        fail(
            f"--demos-file: {demos_file} is a folder; give the path of the demonstrations "
            "file (best_demos.json)",
            EXIT_USAGE,
        )
    if (
        demos_file is not None
        and write_if_better is not None
        and demos_file.resolve() == write_if_better.resolve()
    ):
        fail(
            "--demos-file and --write-if-better name the same file; the demonstrations need "
            "a file of their own (prompt.demos.json, say)",
            EXIT_USAGE,
        )
    for flag, path in (("--write-if-better", write_if_better), ("--demos-file", demos_file)):
        if path is not None and not path.parent.is_dir():
            fail(
                f"{flag}: the folder of {path} does not exist; create it first, so that the "
                "result of the run has somewhere to go",
                EXIT_USAGE,
            )
    if write_if_better is not None and write_if_better.is_dir():
        fail(
            f"--write-if-better: {write_if_better} is a folder; give the path of the prompt "
            "file to write",
            EXIT_USAGE,
        )
    if cache_dir is not None and not no_cache and cache_dir.exists() and not cache_dir.is_dir():
        fail(
            f"--cache-dir (PROMPTOPT_CACHE_DIR): {cache_dir} is a file; give a folder, "
            "or --no-cache",
            EXIT_USAGE,
        )


def run_command(
    task_path: Annotated[
        Path | None, typer.Argument(help="The task file (YAML).", show_default=False)
    ] = None,
    strategy: Annotated[
        str | None, typer.Option("--strategy", help="Search strategy [default: the task's].")
    ] = None,
    param: Annotated[
        list[str] | None,
        typer.Option("--param", help="Strategy parameter KEY=VALUE (repeatable); preset=NAME."),
    ] = None,
    human: Annotated[
        bool,
        typer.Option(
            "--human",
            help="Preference search (apohf): you say which of two answers is better, at this "
            "terminal; your answers are kept in the run folder and never asked again on resume.",
        ),
    ] = False,
    budget: Annotated[
        int | None, typer.Option("--budget", min=1, help="Hard cap on target-model calls.")
    ] = None,
    optimizer_budget: Annotated[
        int | None,
        typer.Option("--optimizer-budget", min=1, help="Hard cap on optimizer-model calls."),
    ] = None,
    judge_budget: Annotated[
        int | None,
        typer.Option(
            "--judge-budget",
            min=1,
            help="Hard cap on judge-model calls (a judge metric's, a preference search's "
            "pairwise judge and its final win rate).",
        ),
    ] = None,
    max_cost: MaxCostOpt = None,
    max_steps: Annotated[int | None, typer.Option("--max-steps", min=1)] = None,
    patience: Annotated[
        int | None, typer.Option("--patience", min=1, help="Stop after N steps without gain.")
    ] = None,
    target_score: Annotated[
        float | None, typer.Option("--target-score", help="Stop once the search reaches it.")
    ] = None,
    finalists: Annotated[
        int,
        typer.Option(
            "--finalists", min=1, help="Top candidates re-scored on all of dev to pick the best."
        ),
    ] = 3,
    concurrency: ConcurrencyOpt = 8,
    cache_dir: CacheDirOpt = None,
    no_cache: NoCacheOpt = False,
    seed: SeedOpt = None,
    timeout: TimeoutOpt = None,
    max_retries: MaxRetriesOpt = None,
    target: TargetOpt = None,
    optimizer: OptimizerOpt = None,
    base_url: BaseUrlOpt = None,
    optimizer_base_url: Annotated[
        str | None,
        typer.Option("--optimizer-base-url", help="A different server for the optimizer model."),
    ] = None,
    target_rpm: TargetRpmOpt = None,
    target_tpm: TargetTpmOpt = None,
    optimizer_rpm: OptimizerRpmOpt = None,
    optimizer_tpm: OptimizerTpmOpt = None,
    out: OutOpt = Path("runs"),
    resume: Annotated[
        Path | None, typer.Option("--resume", help="Continue a killed or interrupted run.")
    ] = None,
    meta_prompts_dir: Annotated[
        Path | None, typer.Option("--meta-prompts", help="Your own meta-prompt folder.")
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print the plan and its cost; call no model.")
    ] = False,
    batch: BatchOpt = False,
    as_json: JsonOpt = False,
    baseline: Annotated[
        Path | None,
        typer.Option(
            "--baseline",
            help="CI mode: start from this prompt file instead of the task's prompt; it is the "
            "'initial' of the held-out comparison. It holds the full system prompt, as "
            "best_prompt.txt does: a structured task's output format at its end is split off.",
        ),
    ] = None,
    demos_file: Annotated[
        Path | None,
        typer.Option(
            "--demos-file",
            help="CI mode: the few-shot demonstrations that go with the prompt file (a "
            "best_demos.json). A new run starts from them when the file exists; "
            "--write-if-better writes the best prompt's there with it.",
        ),
    ] = None,
    write_if_better: Annotated[
        Path | None,
        typer.Option(
            "--write-if-better",
            help="CI mode: write the best prompt to PATH only if it beats the initial one on "
            "test (exit 0); otherwise leave PATH untouched and exit 3.",
        ),
    ] = None,
    min_improvement: Annotated[
        float,
        typer.Option(
            "--min-improvement",
            help="CI mode: the lower end of the 95% CI of the test gain must be above this.",
        ),
    ] = 0.0,
    summary_md: Annotated[
        Path | None,
        typer.Option(
            "--summary-md",
            help="CI mode: write a Markdown summary with the diff report here (it is also "
            "appended to $GITHUB_STEP_SUMMARY when that is set).",
        ),
    ] = None,
) -> None:
    """Optimize the task's prompt; write a run folder; print initial vs best on dev and test.

    Exit codes: 0 success (with --write-if-better: improved, prompt written); 1 runtime error;
    2 usage error or invalid task; 3 with --write-if-better: no significant gain on test, PATH
    untouched; 130 interrupted (resumable).
    """
    import asyncio

    from promptopt.app.checks import RunOverrides, run_problems
    from promptopt.app.compare import read_prompt_file
    from promptopt.app.run import execute_run, prepare_resume, prepare_run, with_baseline
    from promptopt.search.plan import StopRules

    _check_output_paths(write_if_better, cache_dir, no_cache, demos_file)
    try:
        if resume is not None:
            if baseline is not None:
                fail("--baseline: a resumed run keeps its initial prompt", EXIT_USAGE)
            prepared = prepare_resume(resume, meta_prompts_dir=meta_prompts_dir)
            if demos_file is not None and demos_file.exists():
                _same_initial_demos(_read_demos_flag(demos_file), prepared, demos_file)
            if task_path is not None and task_path.resolve() != prepared.task.path.resolve():
                fail(
                    f"--resume: {resume} is a run of {prepared.task.path}, not {task_path}; "
                    "resume with --resume RUN_DIR alone, or start a new run of the task",
                    EXIT_USAGE,
                )
        else:
            if task_path is None:
                fail("give a task file, or --resume RUN_DIR", EXIT_USAGE)
            task = with_models(load(task_path), target, optimizer, base_url, optimizer_base_url)
            task = with_rate_limits(
                task, target=(target_rpm, target_tpm), optimizer=(optimizer_rpm, optimizer_tpm)
            )
            if baseline is not None:
                task = with_baseline(task, read_prompt_file(baseline))
            initial_demos = (
                _read_demos_flag(demos_file)
                if demos_file is not None and demos_file.exists()
                else ()
            )
            params = parse_params(param or [])
            if human:
                chosen = strategy or task.spec.search.strategy
                if chosen != "apohf":
                    fail(
                        f"--human: {chosen} does not ask for preferences; use --strategy apohf",
                        EXIT_USAGE,
                    )
                params["feedback"] = "human"
            overrides = RunOverrides(
                strategy=strategy,
                params=params,
                target_calls=budget,
                max_cost=max_cost,
                finalists=finalists,
                models=frozenset(
                    role for role, flag in (("target", target), ("optimizer", optimizer)) if flag
                ),
            )
            # The checks validate makes, all reported at once, before any folder exists.
            problems = run_problems(task, overrides)
            if problems:
                fail_with_problems(problems)
            prepared = prepare_run(
                task,
                strategy=strategy,
                params=params,
                target_calls=budget,
                optimizer_calls=optimizer_budget,
                judge_calls=judge_budget,
                max_cost=max_cost,
                seed=seed,
                stop=StopRules(max_steps, patience, target_score),
                finalists=finalists,
                concurrency=concurrency,
                meta_prompts_dir=meta_prompts_dir,
                initial_demos=initial_demos,
            )
    except PromptoptError as exc:
        fail_on(exc)
    if dry_run:
        _print_plan(prepared, as_json)
        return
    err = stderr()
    for note in prepared.notes:
        err.print(f"note: {note}", highlight=False, markup=False)
    ask_human = None
    if human:
        import sys

        from promptopt.cli.human import terminal_ask

        if not sys.stdin.isatty():
            fail("--human needs a terminal to answer at (standard input is not one)", EXIT_USAGE)
        ask_human = terminal_ask(err)

    async def go() -> SummaryRecord:
        stop = asyncio.Event()
        _install_interrupt(stop)

        def announce(folder: RunFolder) -> None:
            err.print(f"run folder: {folder.path}", highlight=False)

        from promptopt.cli.progress import RunProgressDisplay

        # No bars while a person answers preference questions at this terminal.
        with RunProgressDisplay(err, live=not human) as show_progress:
            return await execute_run(
                prepared,
                out=out,
                cache_dir=cache_dir,
                no_cache=no_cache,
                stop=stop,
                on_folder=announce,
                on_step=_step_printer(err),
                ask_human=ask_human,
                timeout_s=timeout,
                max_retries=max_retries,
                on_progress=show_progress,
                batch=batch,
                on_batch_progress=batch_printer(err),
            )

    summary = run_async(go)
    print_run_result(summary, as_json)
    if write_if_better is not None or summary_md is not None:
        _ci_finish(summary, write_if_better, min_improvement, summary_md, demos_file)
