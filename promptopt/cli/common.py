"""What every command shares: consoles, exit codes, option types, and turning errors into one
message and an exit code.

The command modules import typer and this module at the top and everything else inside the
command that needs it: building the typer app imports every command module, and a command
line should start in a fraction of a second (`--version` and `--help` need none of the rest).
"""

from __future__ import annotations

import sys
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn, TypeVar

import typer

from promptopt.errors import Problem, PromptoptError, TaskFileError

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Progress

    from promptopt.llm.batch import BatchProgress
    from promptopt.scoring.runtime import RuntimeOptions
    from promptopt.task.loader import LoadedTask

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_NO_GAIN = 3
EXIT_REGRESSION = 4
EXIT_INTERRUPTED = 130

T = TypeVar("T")

TaskArg = Annotated[Path, typer.Argument(help="The task file (YAML).", show_default=False)]
ConcurrencyOpt = Annotated[
    int,
    typer.Option(
        "-j",
        "--concurrency",
        min=1,
        help="Requests in flight per endpoint.",
    ),
]
CacheDirOpt = Annotated[
    Path | None,
    typer.Option(
        "--cache-dir",
        help="Response cache folder [default: ~/.cache/promptopt/responses].",
    ),
]
NoCacheOpt = Annotated[
    bool,
    typer.Option("--no-cache", help="Neither read nor write the cache."),
]
SeedOpt = Annotated[
    int | None,
    typer.Option("--seed", help="Random seed [default: the task's]."),
]
TargetOpt = Annotated[
    str | None,
    typer.Option(
        "--target",
        help="Target model, provider:name: replaces the task's, with its base_url and price "
        "(sampling options are kept).",
    ),
]
OptimizerOpt = Annotated[
    str | None,
    typer.Option(
        "--optimizer",
        help="Optimizer model, provider:name: replaces the task's, with its base_url and price.",
    ),
]
BaseUrlOpt = Annotated[
    str | None,
    typer.Option("--base-url", help="OpenAI-compatible server URL for the task's models."),
]


def _rate_option(name: str, what: str) -> Any:
    return typer.Option(
        name,
        min=0.001,
        help=f"The account's {what} per minute for the {name.split('-')[2]} model: promptopt "
        "keeps under it [default: the task file's rpm/tpm, else none].",
        show_default=False,
    )


TargetRpmOpt = Annotated[float | None, _rate_option("--target-rpm", "requests")]
TargetTpmOpt = Annotated[float | None, _rate_option("--target-tpm", "tokens")]
OptimizerRpmOpt = Annotated[float | None, _rate_option("--optimizer-rpm", "requests")]
OptimizerTpmOpt = Annotated[float | None, _rate_option("--optimizer-tpm", "tokens")]
MaxCostOpt = Annotated[
    float | None, typer.Option("--max-cost", min=0, help="Hard cap on dollars spent.")
]


def _seconds(value: float | None) -> float | None:
    import math

    if value is not None and not (math.isfinite(value) and value > 0):
        raise typer.BadParameter(f"{value} is not a number of seconds above 0")
    return value


TimeoutOpt = Annotated[
    float | None,
    typer.Option(
        "--timeout",
        metavar="SECONDS",
        callback=_seconds,
        help="Seconds before one model request times out (it is then retried) "
        "[default: each model's timeout_s, 60].",
    ),
]
MaxRetriesOpt = Annotated[
    int | None,
    typer.Option(
        "--max-retries",
        min=0,
        help="Retries of a model request that failed for a transient reason (429, 5xx, "
        "timeout, reset) [default: the task's errors.max_retries, 6].",
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print the result as JSON on stdout.")]
BatchOpt = Annotated[
    bool,
    typer.Option(
        "--batch",
        help="Score through the provider's batch service (OpenAI Batch API, Anthropic Message "
        "Batches): half the price, answers within 24 h; a killed command run again polls the "
        "same batches.",
    ),
]
SplitOpt = Annotated[str, typer.Option("--split", help="train, dev or test.")]
FormatOpt = Annotated[
    str | None,
    typer.Option("--format", help="terminal, md, html or json [default: from -o, else terminal]."),
]
OutputOpt = Annotated[Path | None, typer.Option("-o", "--output", help="Write to FILE.")]


def stdout() -> Console:
    """The console for results."""
    from rich.console import Console

    # Markup is opt-in (markup=True on a styled line): printed text holds paths, prompts and
    # server messages, whose brackets rich would otherwise eat.
    return Console(soft_wrap=True, markup=False)


def stderr() -> Console:
    """The console for progress, notes and errors."""
    from rich.console import Console

    return Console(stderr=True, soft_wrap=True, markup=False)


def fail(message: str, code: int) -> NoReturn:
    """Print one error message and exit with `code`."""
    from rich.markup import escape

    # The message carries user, file and server text, where brackets are not markup.
    stderr().print(f"[bold red]error:[/] {escape(message)}", highlight=False, markup=True)
    raise typer.Exit(code)


def fail_with_problems(problems: Sequence[Problem]) -> NoReturn:
    """Print every problem found, one a line, and exit with the usage code."""
    err = stderr()
    for problem in problems:
        err.print(str(problem), highlight=False)
    err.print(f"{len(problems)} problem(s) found", highlight=False)
    raise typer.Exit(EXIT_USAGE)


def fail_on(exc: PromptoptError) -> NoReturn:
    """Exit with the message and the exit code of a user-facing error."""
    if isinstance(exc, TaskFileError):
        fail("the task is invalid:\n" + str(exc), exc.exit_code)
    fail(str(exc), exc.exit_code)


def run_async(make: Callable[[], Awaitable[T]]) -> T:
    """Run a coroutine, turning user-facing errors and Ctrl-C into messages and exit codes."""
    import asyncio

    try:
        return asyncio.run(make())  # type: ignore[arg-type]
    except KeyboardInterrupt:
        fail("interrupted; responses received so far are kept in the cache", EXIT_INTERRUPTED)
    except asyncio.CancelledError:
        # A second Ctrl-C cancels the main task (see the run command's interrupt handler).
        fail(
            "aborted; responses received so far are kept in the cache and, for a run, in its "
            "folder: continue it with promptopt run --resume RUN_DIR",
            EXIT_INTERRUPTED,
        )
    except PromptoptError as exc:
        fail_on(exc)


def check_split(split: str) -> None:
    """Refuse a --split that is not a split name."""
    if split not in ("train", "dev", "test"):
        fail(f"--split: {split!r} is not one of train, dev, test", EXIT_USAGE)


def load(path: Path, *, only: str | None = None, limit: int | None = None) -> LoadedTask:
    """Load a task file (`only` one split, up to `limit` rows: see `load_task`), or exit with
    every problem it has."""
    from promptopt.task.loader import load_task

    try:
        return load_task(path, only=only, limit=limit)
    except PromptoptError as exc:
        if isinstance(exc, TaskFileError):
            fail("the task is invalid:\n" + str(exc), EXIT_USAGE)
        fail_on(exc)


def runtime_options(
    concurrency: int,
    cache_dir: Path | None,
    no_cache: bool,
    seed: int | None,
    task: LoadedTask,
    max_cost: float | None = None,
    timeout: float | None = None,
    max_retries: int | None = None,
) -> RuntimeOptions:
    """The shared model-calling options; the seed defaults to the task's."""
    from promptopt.scoring.runtime import RuntimeOptions

    return RuntimeOptions.for_task(
        task,
        concurrency=concurrency,
        cache_dir=cache_dir,
        no_cache=no_cache,
        seed=seed,
        max_cost=max_cost,
        timeout_s=timeout,
        max_retries=max_retries,
    )


def batch_printer(console: Console) -> Callable[[BatchProgress], None]:
    """Prints the progress line of the batches being waited for (on stderr)."""

    def show(progress: BatchProgress) -> None:
        console.print(progress.line(), highlight=False, markup=False)

    return show


def with_models(
    task: LoadedTask,
    target: str | None,
    optimizer: str | None,
    base_url: str | None,
    optimizer_base_url: str | None = None,
) -> LoadedTask:
    """The task with --target/--optimizer/--base-url applied and defaults for missing models;
    says on stderr which defaults were chosen."""
    import os

    from pydantic import ValidationError

    from promptopt.app.models import apply_default_models, override_models

    try:
        task = override_models(
            task,
            target=target,
            optimizer=optimizer,
            base_url=base_url,
            optimizer_base_url=optimizer_base_url,
        )
    except ValidationError as exc:
        message = "; ".join(e["msg"] for e in exc.errors())
        fail(f"--target/--optimizer: {message}", EXIT_USAGE)
    task, note = apply_default_models(task, os.environ)
    if note:
        stderr().print(f"note: {note}", highlight=False)
    return task


def with_rate_limits(
    task: LoadedTask,
    *,
    target: tuple[float | None, float | None] = (None, None),
    optimizer: tuple[float | None, float | None] = (None, None),
) -> LoadedTask:
    """The task with --target-rpm/--target-tpm/--optimizer-rpm/--optimizer-tpm applied (each
    pair is rpm, tpm), after --target/--optimizer replaced the models."""
    from promptopt.app.models import set_rate_limits

    try:
        for role, (rpm, tpm) in (("target", target), ("optimizer", optimizer)):
            task = set_rate_limits(task, role, rpm=rpm, tpm=tpm)
    except PromptoptError as exc:
        fail(str(exc), EXIT_USAGE)
    return task


def progress(console: Console, label: str) -> Progress:
    """A progress bar with the running mean score, shown only on a terminal."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )

    return Progress(
        TextColumn(f"[bold]{label}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("score {task.fields[score]:.3f}"),
        TimeElapsedColumn(),
        console=console,
        transient=True,
        disable=not console.is_terminal,
    )


_FORMATS_BY_SUFFIX = {".md": "md", ".markdown": "md", ".html": "html", ".htm": "html"}


def report_format(fmt: str | None, output: Path | None, allowed: tuple[str, ...]) -> str:
    """The --format given, else the one -o's suffix names, else the first allowed."""
    if fmt is None and output is not None:
        fmt = {**_FORMATS_BY_SUFFIX, ".json": "json"}.get(output.suffix.lower())
    fmt = fmt or allowed[0]
    if fmt not in allowed:
        fail(f"--format: {fmt!r} is not one of {', '.join(allowed)}", EXIT_USAGE)
    return fmt


def emit(text: str, output: Path | None) -> None:
    """Write `text` to -o FILE, or to stdout."""
    if output is None:
        sys.stdout.write(text)
        return
    try:
        output.write_text(text, encoding="utf-8")
    except OSError as exc:
        fail(f"-o: cannot write {output}: {exc.strerror}", EXIT_ERROR)
    stderr().print(f"wrote {output}", highlight=False)
