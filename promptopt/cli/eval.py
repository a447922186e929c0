"""`promptopt eval`: score one prompt on a split."""

from __future__ import annotations

import json
import sys
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from promptopt.cli.common import (
    EXIT_ERROR,
    EXIT_USAGE,
    BaseUrlOpt,
    BatchOpt,
    CacheDirOpt,
    ConcurrencyOpt,
    JsonOpt,
    MaxCostOpt,
    MaxRetriesOpt,
    NoCacheOpt,
    SeedOpt,
    TargetOpt,
    TargetRpmOpt,
    TargetTpmOpt,
    TaskArg,
    TimeoutOpt,
    batch_printer,
    check_split,
    emit,
    fail,
    load,
    progress,
    run_async,
    runtime_options,
    stderr,
    stdout,
    with_models,
    with_rate_limits,
)
from promptopt.errors import PromptoptError

if TYPE_CHECKING:
    from rich.table import Table

    from promptopt.app.evaluate import Evaluation
    from promptopt.scoring.scorer import EvalResult, ExampleResult
    from promptopt.task.loader import LoadedTask


def read_prompt(prompt: str | None, prompt_file: Path | None, task: LoadedTask) -> str:
    """The prompt of --prompt or --prompt-file, else the task's."""
    if prompt is not None and prompt_file is not None:
        fail("give either --prompt or --prompt-file, not both", EXIT_USAGE)
    if prompt_file is not None:
        from promptopt.app.compare import read_prompt_file

        # Read as run --baseline and diff read it (without the file's final newline), so that a
        # best_prompt.txt is scored as the run scored it.
        try:
            return read_prompt_file(prompt_file)
        except PromptoptError as exc:
            fail(f"--prompt-file: {exc}", EXIT_USAGE)
    return prompt if prompt is not None else task.spec.system_prompt


def short(text: str, width: int = 60) -> str:
    """A prompt on one line, cut to `width` characters with an ellipsis."""
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"


def eval_table(result: EvalResult, title: str, model: str | None = None) -> Table:
    """One row per figure, so that it fits an 80-column terminal or CI log."""
    from rich.table import Table

    from promptopt.reporting.view import tokens_in

    lo, hi = result.ci95()
    usage = result.usage
    tokens = usage.tokens
    read_in = tokens_in(usage.to_json()["input_tokens"], tokens.cache_read, tokens.cache_write)
    table = Table(title=title, show_header=False)
    table.add_column("", style="bold")
    table.add_column("", justify="right")
    for name, value in (
        ("model", model or "-"),
        ("prompt", short(result.prompt)),
        ("split", f"{result.split} ({result.n} examples)"),
        ("score", f"{result.score:.3f}"),
        ("95% CI", f"[{lo:.3f}, {hi:.3f}]"),
        ("requests sent", str(usage.requests)),
        ("cache hits", str(usage.cache_hits)),
        ("errors (scored 0)", str(result.errors)),
        ("tokens in / out", f"{read_in} / {tokens.output}"),
        ("cost", "unknown" if not usage.cost_known else f"${usage.cost_usd:.4f}"),
    ):
        table.add_row(name, value)
    return table


def eval_command(
    task_path: TaskArg,
    prompt: Annotated[
        str | None,
        typer.Option(
            "--prompt",
            help="The system prompt to score, as sent [default: the task's, with its output "
            "format].",
        ),
    ] = None,
    prompt_file: Annotated[
        Path | None, typer.Option("--prompt-file", help="Read the system prompt from a file.")
    ] = None,
    demos_file: Annotated[
        Path | None,
        typer.Option(
            "--demos",
            help="Send the few-shot demonstrations of this file (a run's best_demos.json) "
            "before every input.",
        ),
    ] = None,
    split: Annotated[str, typer.Option("--split", help="train, dev or test.")] = "dev",
    limit: Annotated[
        int | None, typer.Option("--limit", min=1, help="Score only the first N examples.")
    ] = None,
    concurrency: ConcurrencyOpt = 8,
    cache_dir: CacheDirOpt = None,
    no_cache: NoCacheOpt = False,
    seed: SeedOpt = None,
    target: TargetOpt = None,
    base_url: BaseUrlOpt = None,
    target_rpm: TargetRpmOpt = None,
    target_tpm: TargetTpmOpt = None,
    max_cost: MaxCostOpt = None,
    batch: BatchOpt = False,
    timeout: TimeoutOpt = None,
    max_retries: MaxRetriesOpt = None,
    as_json: JsonOpt = False,
    output: Annotated[
        Path | None,
        typer.Option(
            "-o",
            "--output",
            help="Write every example's input, expected answer, output, score and error to "
            "FILE: .jsonl (a record a line), .csv or .json (the --json document).",
        ),
    ] = None,
) -> None:
    """Score one prompt on a data split."""
    from promptopt.app.evaluate import (
        RESULT_FORMATS,
        evaluate_prompt,
        read_demos_file,
        results_format,
        results_text,
    )

    check_split(split)
    results_fmt = None
    if output is not None:
        results_fmt = results_format(output)
        if results_fmt is None:
            fail(
                f"-o: cannot tell the format of {output} from its extension; use "
                f"{', '.join(RESULT_FORMATS)}",
                EXIT_USAGE,
            )
        if not output.parent.is_dir():
            # Before any model is called: the answers would be paid for and then not written.
            fail(f"-o: the folder {output.parent} does not exist", EXIT_USAGE)
    # Only the split scored is read, and with --limit only its first rows.
    task = with_models(load(task_path, only=split, limit=limit), target, None, base_url)
    task = with_rate_limits(task, target=(target_rpm, target_tpm))
    text = read_prompt(prompt, prompt_file, task)
    try:
        demos = read_demos_file(demos_file) if demos_file is not None else ()
    except PromptoptError as exc:
        fail(str(exc), EXIT_USAGE)
    try:
        total = len(task.split(split)[:limit])
    except PromptoptError as exc:
        fail(str(exc), EXIT_USAGE)
    err = stderr()
    options = replace(
        runtime_options(
            concurrency, cache_dir, no_cache, seed, task, max_cost, timeout, max_retries
        ),
        batch=batch,
        on_batch_progress=batch_printer(err),
    )
    model = task.spec.models.target.model if task.spec.models.target is not None else "-"
    err.print(
        f"eval: {model} on {split} ({total} examples), prompt: {short(text)}", highlight=False
    )

    async def go() -> Evaluation:
        with progress(err, f"eval {split}") as bar:
            row = bar.add_task("eval", total=total, score=0.0)
            done: list[float] = []

            def tick(res: ExampleResult) -> None:
                done.append(res.score)
                bar.update(row, advance=1, score=sum(done) / len(done))

            return await evaluate_prompt(
                task, text, split=split, limit=limit, options=options, on_result=tick, demos=demos
            )

    evaluation = run_async(go)
    result, judge_usage = evaluation.result, evaluation.judge_usage
    if as_json:
        sys.stdout.write(json.dumps(evaluation.to_json(), ensure_ascii=False) + "\n")
    else:
        stdout().print(
            eval_table(result, f"{task.spec.name}: prompt scored on {split}", evaluation.model)
        )
        if judge_usage:
            stdout().print(
                f"judge: {judge_usage['requests']} requests, {judge_usage['cache_hits']} cached, "
                "cost unknown"
                if judge_usage["cost_usd"] is None
                else f"${judge_usage['cost_usd']:.4f}",
                highlight=False,
            )
    if output is not None and results_fmt is not None:
        emit(results_text(evaluation, results_fmt), output)
    if evaluation.error_budget_exceeded is not None:
        fail(evaluation.error_budget_exceeded, EXIT_ERROR)
    if result.errors:
        err.print(
            f"[yellow]warning:[/] {result.errors} of {result.n} examples failed and were scored 0",
            markup=True,
        )
