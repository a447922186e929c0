"""The command line. The only module that prints or exits."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any, NoReturn, TypeVar

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from promptopt import __version__
from promptopt.budget import BudgetCaps
from promptopt.cache import ResponseCache, default_cache_dir
from promptopt.errors import PromptoptError, TaskFileError
from promptopt.runtime import Runtime, RuntimeOptions, override_models
from promptopt.scorer import EvalResult, ExampleResult
from promptopt.task import LoadedTask, load_task, validate_task

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

app = typer.Typer(
    name="promptopt",
    help="Automatic prompt optimization for black-box LLM APIs.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
    context_settings={"auto_envvar_prefix": "PROMPTOPT", "help_option_names": ["-h", "--help"]},
    add_completion=False,
)
cache_app = typer.Typer(help="Inspect or clear the response cache.", no_args_is_help=True)
app.add_typer(cache_app, name="cache")

T = TypeVar("T")

TaskArg = Annotated[Path, typer.Argument(help="The task file (YAML).", show_default=False)]
ConcurrencyOpt = Annotated[
    int, typer.Option("-j", "--concurrency", min=1, help="Requests in flight per endpoint.")
]
CacheDirOpt = Annotated[
    Path | None, typer.Option("--cache-dir", help="Response cache folder [default: user cache].")
]
NoCacheOpt = Annotated[bool, typer.Option("--no-cache", help="Neither read nor write the cache.")]
SeedOpt = Annotated[int | None, typer.Option("--seed", help="Random seed [default: the task's].")]
TargetOpt = Annotated[
    str | None, typer.Option("--target", help="Target model, provider:name (overrides the task).")
]
OptimizerOpt = Annotated[
    str | None, typer.Option("--optimizer", help="Optimizer model, provider:name.")
]
BaseUrlOpt = Annotated[
    str | None,
    typer.Option("--base-url", help="OpenAI-compatible server URL for the task's models."),
]
MaxCostOpt = Annotated[
    float | None, typer.Option("--max-cost", min=0, help="Hard cap on dollars spent.")
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print the result as JSON on stdout.")]


def _stdout() -> Console:
    return Console(soft_wrap=True)


def _stderr() -> Console:
    return Console(stderr=True)


def _fail(message: str, code: int) -> NoReturn:
    _stderr().print(f"[bold red]error:[/] {message}", highlight=False, markup=True)
    raise typer.Exit(code)


def _run_async(make: Callable[[], Awaitable[T]]) -> T:
    """Run a coroutine, turning user-facing errors and Ctrl-C into messages and exit codes."""
    try:
        return asyncio.run(make())  # type: ignore[arg-type]
    except KeyboardInterrupt:
        _fail("interrupted; responses received so far are kept in the cache", EXIT_INTERRUPTED)
    except TaskFileError as exc:
        _fail("the task is invalid:\n" + str(exc), exc.exit_code)
    except PromptoptError as exc:
        _fail(str(exc), exc.exit_code)


def _load(path: Path) -> LoadedTask:
    try:
        return load_task(path)
    except TaskFileError as exc:
        _fail("the task is invalid:\n" + str(exc), EXIT_USAGE)
    except PromptoptError as exc:
        _fail(str(exc), exc.exit_code)


def _read_prompt(prompt: str | None, prompt_file: Path | None, task: LoadedTask) -> str:
    if prompt is not None and prompt_file is not None:
        _fail("give either --prompt or --prompt-file, not both", EXIT_USAGE)
    if prompt_file is not None:
        try:
            return prompt_file.read_text(encoding="utf-8")
        except OSError as exc:
            _fail(f"--prompt-file: cannot read {prompt_file}: {exc.strerror}", EXIT_USAGE)
    return prompt if prompt is not None else task.spec.prompt


def _options(
    concurrency: int,
    cache_dir: Path | None,
    no_cache: bool,
    seed: int | None,
    task: LoadedTask,
    caps: BudgetCaps | None = None,
) -> RuntimeOptions:
    return RuntimeOptions(
        concurrency=concurrency,
        cache_dir=cache_dir,
        no_cache=no_cache,
        seed=task.spec.search.seed if seed is None else seed,
        caps=caps or BudgetCaps(),
    )


def _with_models(
    task: LoadedTask, target: str | None, optimizer: str | None, base_url: str | None
) -> LoadedTask:
    try:
        return override_models(task, target=target, optimizer=optimizer, base_url=base_url)
    except ValidationError as exc:
        message = "; ".join(e["msg"] for e in exc.errors())
        _fail(f"--target/--optimizer: {message}", EXIT_USAGE)


def _progress(console: Console, total: int, label: str) -> Progress:
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


def _eval_table(result: EvalResult, title: str) -> Table:
    lo, hi = result.ci95()
    usage = result.usage
    table = Table(title=title, show_header=True, header_style="bold")
    for column in ("split", "n", "score", "95% CI", "requests", "cache hits", "errors"):
        table.add_column(column, justify="right")
    table.add_column("tokens in/out", justify="right")
    table.add_column("cost", justify="right")
    table.add_row(
        result.split,
        str(result.n),
        f"{result.score:.3f}",
        f"[{lo:.3f}, {hi:.3f}]",
        str(usage.requests),
        str(usage.cache_hits),
        str(result.errors),
        f"{usage.to_json()['input_tokens']}/{usage.tokens.output}",
        f"${usage.cost_usd:.4f}",
    )
    return table


@app.command("eval")
def eval_command(
    task_path: TaskArg,
    prompt: Annotated[
        str | None, typer.Option("--prompt", help="The instruction to score [default: the task's].")
    ] = None,
    prompt_file: Annotated[
        Path | None, typer.Option("--prompt-file", help="Read the instruction from a file.")
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
    max_cost: MaxCostOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Score one prompt on a data split."""
    if split not in ("train", "dev", "test"):
        _fail(f"--split: {split!r} is not one of train, dev, test", EXIT_USAGE)
    task = _with_models(_load(task_path), target, None, base_url)
    text = _read_prompt(prompt, prompt_file, task)
    try:
        examples = task.split(split)
    except PromptoptError as exc:
        _fail(str(exc), EXIT_USAGE)
    if limit is not None:
        examples = examples[:limit]
    options = _options(concurrency, cache_dir, no_cache, seed, task, BudgetCaps(cost_usd=max_cost))
    err = _stderr()

    async def go() -> EvalResult:
        async with Runtime(task, options) as runtime:
            scorer = runtime.scorer
            with _progress(err, len(examples), f"eval {split}") as progress:
                bar = progress.add_task("eval", total=len(examples), score=0.0)
                done: list[float] = []

                def tick(res: ExampleResult) -> None:
                    done.append(res.score)
                    progress.update(bar, advance=1, score=sum(done) / len(done))

                return await scorer.evaluate(text, examples, split=split, on_result=tick)

    result = _run_async(go)
    if as_json:
        sys.stdout.write(json.dumps(result.to_json(), ensure_ascii=False) + "\n")
    else:
        _stdout().print(_eval_table(result, f"{task.spec.name}: prompt scored on {split}"))
    if result.errors:
        err.print(
            f"[yellow]warning:[/] {result.errors} of {result.n} examples failed and were scored 0"
        )


@app.command("validate")
def validate_command(task_path: TaskArg) -> None:
    """Check a task file and its data; report every problem with its file and field."""
    problems = validate_task(task_path)
    if problems:
        err = _stderr()
        for problem in problems:
            err.print(str(problem), highlight=False, markup=False)
        err.print(f"{len(problems)} problem(s) found", highlight=False)
        raise typer.Exit(EXIT_USAGE)
    task = _load(task_path)
    sizes = ", ".join(f"{name} {len(rows)}" for name, rows in task.splits.items())
    _stdout().print(f"{task_path}: ok ({sizes})", highlight=False)


def _open_cache(cache_dir: Path | None) -> ResponseCache:
    try:
        return ResponseCache(cache_dir or default_cache_dir())
    except PromptoptError as exc:
        _fail(str(exc), exc.exit_code)


@cache_app.command("stats")
def cache_stats(cache_dir: CacheDirOpt = None, as_json: JsonOpt = False) -> None:
    """Show where the cache is, how many responses it holds and its size."""
    cache = _open_cache(cache_dir)
    try:
        stats = cache.stats()
    finally:
        cache.close()
    payload: dict[str, Any] = {
        "directory": stats.directory,
        "entries": stats.entries,
        "size_bytes": stats.size_bytes,
    }
    if as_json:
        sys.stdout.write(json.dumps(payload) + "\n")
    else:
        _stdout().print(
            f"{stats.directory}: {stats.entries} responses, {stats.size_bytes / 1e6:.1f} MB",
            highlight=False,
        )


@cache_app.command("clear")
def cache_clear(cache_dir: CacheDirOpt = None) -> None:
    """Remove every cached response."""
    cache = _open_cache(cache_dir)
    try:
        removed = cache.clear()
    finally:
        cache.close()
    _stdout().print(f"removed {removed} responses from {cache.directory}", highlight=False)


def _version(value: bool) -> None:
    if value:
        _stdout().print(f"promptopt {__version__}")
        raise typer.Exit(EXIT_OK)


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Show the version."),
    ] = False,
) -> None:
    """Automatic prompt optimization for black-box LLM APIs."""


def main() -> None:
    """Console-script entry point."""
    app()
