"""`promptopt diff`: two prompt revisions scored on the same examples."""

from __future__ import annotations

import io
import json
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from promptopt.cli.common import (
    EXIT_REGRESSION,
    BaseUrlOpt,
    BatchOpt,
    CacheDirOpt,
    ConcurrencyOpt,
    FormatOpt,
    MaxCostOpt,
    MaxRetriesOpt,
    NoCacheOpt,
    OutputOpt,
    SeedOpt,
    SplitOpt,
    TargetOpt,
    TimeoutOpt,
    batch_printer,
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
    from promptopt.reporting.diff import DiffReport


def diff_command(
    old: Annotated[
        str,
        typer.Argument(
            help="The old prompt: a run folder (its best), a prompt file, or REV:FILE (the file "
            "at a git revision, FILE relative to the current folder).",
            show_default=False,
        ),
    ],
    new: Annotated[
        str | None,
        typer.Argument(
            help="The new prompt, likewise. Without it, OLD is a run folder and its initial "
            "prompt is compared with its best (or, with --rev, OLD at REV with OLD now).",
            show_default=False,
        ),
    ] = None,
    rev: Annotated[
        str | None,
        typer.Option(
            "--rev",
            help="Compare the prompt file OLD as it was at this git revision with the working "
            "tree's.",
        ),
    ] = None,
    task_path: Annotated[
        Path | None,
        typer.Option("--task", help="Task to score on [default: the run folder's task]."),
    ] = None,
    old_demos: Annotated[
        Path | None,
        typer.Option(
            "--old-demos",
            help="Send the few-shot demonstrations of this file (a run's best_demos.json, or "
            "a --demos-file) with OLD, in place of a run folder's own.",
        ),
    ] = None,
    new_demos: Annotated[
        Path | None,
        typer.Option("--new-demos", help="Likewise with NEW."),
    ] = None,
    split: SplitOpt = "test",
    fmt: FormatOpt = None,
    output: OutputOpt = None,
    fail_on_regression: Annotated[
        bool,
        typer.Option(
            "--fail-on-regression", help="Exit 4 when NEW is significantly worse than OLD."
        ),
    ] = False,
    force: Annotated[
        bool,
        typer.Option("--force", help="Compare even across different data, tasks or models."),
    ] = False,
    max_flips: Annotated[
        int,
        typer.Option(
            "--max-flips",
            min=0,
            help="Flips listed in the terminal view, regressions first (0: all of them).",
        ),
    ] = 20,
    concurrency: ConcurrencyOpt = 8,
    cache_dir: CacheDirOpt = None,
    no_cache: NoCacheOpt = False,
    seed: SeedOpt = None,
    target: TargetOpt = None,
    base_url: BaseUrlOpt = None,
    max_cost: MaxCostOpt = None,
    batch: BatchOpt = False,
    timeout: TimeoutOpt = None,
    max_retries: MaxRetriesOpt = None,
) -> None:
    """Compare two prompt revisions on the same examples: word diff, score delta with a paired
    95% CI (and McNemar's test for 0/1 scores, the sign test for graded ones), flips, tokens,
    cost, latency and a verdict.

    A side can be a git revision of a prompt file: HEAD~3:prompts/support.txt, or --rev main.
    Works as an external diff tool: git difftool -x 'promptopt diff --task task.yaml'.

    Exit codes: 0 done; 1 runtime error; 2 usage error, or prompts that cannot be compared
    fairly (see --force); 4 with --fail-on-regression: NEW is significantly worse.
    """
    from rich.console import Console

    from promptopt.app.compare import (
        check_diff,
        compare_prompts,
        default_task,
        read_sides,
        with_demos_file,
    )
    from promptopt.reporting.html import diff_html
    from promptopt.reporting.markdown import diff_markdown
    from promptopt.reporting.terminal import diff_renderable

    check_split(split)
    kind = report_format(fmt, output, ("terminal", "md", "html", "json"))
    try:
        old_side, new_side = read_sides(old, new, rev)
        old_side = with_demos_file(old_side, old_demos, "--old-demos")
        new_side = with_demos_file(new_side, new_demos, "--new-demos")
        task = load(task_path) if task_path is not None else default_task(old_side, new_side)
        task = with_models(task, target, None, base_url)
        plan = check_diff(task, old_side, new_side, force=force)
        task.split(split)
    except PromptoptError as exc:
        fail_on(exc)
    if seed is None:
        run_config = old_side.config or new_side.config
        seed = run_config.settings.seed if run_config is not None else None
    options = replace(
        runtime_options(
            concurrency, cache_dir, no_cache, seed, task, max_cost, timeout, max_retries
        ),
        batch=batch,
        on_batch_progress=batch_printer(stderr()),
    )

    async def go() -> DiffReport:
        return await compare_prompts(plan, split=split, options=options)

    report = run_async(go)
    cap = max_flips or None
    if kind == "terminal" and output is None:
        stdout().print(diff_renderable(report, max_flips=cap))
    elif kind == "terminal":
        console = Console(record=True, width=120, file=io.StringIO())
        console.print(diff_renderable(report, max_flips=cap))
        emit(console.export_text(), output)
    elif kind == "md":
        emit(diff_markdown(report), output)
    elif kind == "html":
        emit(diff_html(report), output)
    else:
        emit(json.dumps(report.to_json(), ensure_ascii=False, indent=2) + "\n", output)
    if fail_on_regression and report.verdict == "regressed":
        stderr().print("[red]regressed:[/] the new prompt is significantly worse", markup=True)
        raise typer.Exit(EXIT_REGRESSION)
