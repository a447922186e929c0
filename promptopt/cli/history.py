"""`promptopt history`: a prompt file's git revisions scored on the same examples."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from promptopt.cli.common import (
    EXIT_REGRESSION,
    BaseUrlOpt,
    CacheDirOpt,
    ConcurrencyOpt,
    FormatOpt,
    MaxCostOpt,
    NoCacheOpt,
    OutputOpt,
    SeedOpt,
    SplitOpt,
    TargetOpt,
    check_split,
    emit,
    fail_on,
    load,
    report_format,
    run_async,
    runtime_options,
    stderr,
    stdout,
    with_models,
)
from promptopt.errors import PromptoptError

if TYPE_CHECKING:
    from promptopt.app.history import HistoryCost
    from promptopt.reporting.history import HistoryReport


def _print_cost(cost: HistoryCost, kind: str) -> None:
    if kind == "json":
        emit(json.dumps(cost.to_json(), indent=2) + "\n", None)
        return
    dollars = "unknown" if cost.estimated_cost_usd is None else f"${cost.estimated_cost_usd:.4f}"
    out = stdout()
    out.print(
        f"{cost.revisions} revisions on {cost.examples} examples (no model was called):",
        highlight=False,
    )
    out.print(f"  at most {cost.target_calls} target calls", highlight=False)
    out.print(f"  estimated cost at most {dollars}", highlight=False)
    for note in cost.notes:
        out.print(f"  note: {note}", highlight=False)


def history_command(
    prompt_file: Annotated[
        Path, typer.Argument(help="The prompt file, in a git repository.", show_default=False)
    ],
    task_path: Annotated[
        Path, typer.Option("--task", help="Task to score every revision on.", show_default=False)
    ],
    rev_range: Annotated[
        str | None,
        typer.Argument(
            help="Only commits in this revision range (main..HEAD, v1.0..) [default: HEAD's "
            "history].",
            show_default=False,
        ),
    ] = None,
    revs: Annotated[
        int | None,
        typer.Option("--revs", min=1, help="Only the newest N commits that changed the file."),
    ] = None,
    since: Annotated[
        str | None,
        typer.Option("--since", help="Only commits after DATE (2026-01-31, '2 weeks ago')."),
    ] = None,
    split: SplitOpt = "test",
    dry_run: Annotated[
        bool,
        typer.Option("--dry-run", help="List the revisions and the most they cost; call no model."),
    ] = False,
    fmt: FormatOpt = None,
    output: OutputOpt = None,
    fail_on_regression: Annotated[
        bool,
        typer.Option(
            "--fail-on-regression",
            help="Exit 4 when the newest revision is significantly worse than the one before "
            "it (or than --baseline).",
        ),
    ] = False,
    baseline: Annotated[
        str | None,
        typer.Option(
            "--baseline",
            help="Also compare the newest revision with the file at this revision (main, a "
            "tag); --fail-on-regression then checks that comparison.",
        ),
    ] = None,
    concurrency: ConcurrencyOpt = 8,
    cache_dir: CacheDirOpt = None,
    no_cache: NoCacheOpt = False,
    seed: SeedOpt = None,
    target: TargetOpt = None,
    base_url: BaseUrlOpt = None,
    max_cost: MaxCostOpt = None,
) -> None:
    """Score every commit of a prompt file on the same examples: each revision's score with its
    95% CI, the paired comparison with the revision before it (bootstrap CI, McNemar or the
    sign test), the
    significant improvements and regressions, and the best revision.

    Exit codes: 0 done; 1 runtime error; 2 usage error (not a git repository, unknown
    revision, invalid task); 4 with --fail-on-regression: the newest revision is significantly
    worse.
    """
    from rich.console import Console

    from promptopt.app.history import find_revisions, history_cost, prompt_history
    from promptopt.reporting.html import history_html
    from promptopt.reporting.markdown import history_markdown
    from promptopt.reporting.terminal import history_renderable

    check_split(split)
    kind = report_format(fmt, output, ("terminal", "md", "html", "json"))
    task = with_models(load(task_path), target, None, base_url)
    try:
        task.split(split)
        plan = find_revisions(
            prompt_file, revs=revs, since=since, rev_range=rev_range, baseline=baseline
        )
        if dry_run:
            _print_cost(history_cost(task, plan, split), kind)
            return
    except PromptoptError as exc:
        fail_on(exc)
    err = stderr()
    for note in plan.skipped:
        err.print(f"note: skipped {note}", highlight=False)
    if plan.uncommitted:
        err.print(
            f"note: {prompt_file} has uncommitted changes, which history does not score "
            f"(compare them: promptopt diff {prompt_file} --rev HEAD --task {task_path})",
            highlight=False,
        )
    options = runtime_options(concurrency, cache_dir, no_cache, seed, task, max_cost)

    async def go() -> HistoryReport:
        return await prompt_history(task, plan, split=split, options=options)

    report = run_async(go)
    if kind == "terminal" and output is None:
        stdout().print(history_renderable(report))
    elif kind == "terminal":
        console = Console(record=True, width=160, file=io.StringIO())
        console.print(history_renderable(report))
        emit(console.export_text(), output)
    elif kind == "md":
        emit(history_markdown(report), output)
    elif kind == "html":
        emit(history_html(report), output)
    else:
        emit(json.dumps(report.to_json(), ensure_ascii=False, indent=2) + "\n", output)
    if fail_on_regression and report.newest_regressed:
        gate = report.gate
        assert gate is not None
        err.print(
            f"[red]regressed:[/] the newest revision {gate.new.commit.short} is significantly "
            f"worse than {gate.old.commit.short}",
            highlight=False,
            markup=True,
        )
        raise typer.Exit(EXIT_REGRESSION)
