"""The command line. The only module that prints or exits."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import io
import json
import os
import signal
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
from promptopt.errors import PromptoptError, TaskFileError
from promptopt.llm.budget import BudgetCaps
from promptopt.llm.cache import ResponseCache, default_cache_dir
from promptopt.llm.journal import ResponseJournal
from promptopt.llm.pricing import price_for
from promptopt.reporting.diff import (
    DiffReport,
    GateDecision,
    check_diff,
    ci_gate,
    default_task,
    read_prompt_file,
    read_sides,
    score_diff,
)
from promptopt.reporting.html import diff_html, run_html
from promptopt.reporting.markdown import (
    build_run_report,
    ci_summary_markdown,
    diff_markdown,
    run_markdown,
)
from promptopt.reporting.terminal import diff_renderable
from promptopt.run.folder import CONFIG, RESPONSES, RunFolder, write_atomic
from promptopt.scoring.runtime import (
    Runtime,
    RuntimeOptions,
    apply_default_models,
    check_models,
    model_for_role,
    override_models,
    override_models_from_config,
)
from promptopt.scoring.scorer import EvalResult, ExampleResult
from promptopt.search.engine import (
    Engine,
    RunSettings,
    StopRules,
    final_reserve,
    plan_run,
    search_caps,
)
from promptopt.search.meta_prompts import load_meta_prompts
from promptopt.search.strategies.registry import STRATEGIES, make_strategy
from promptopt.task.loader import LoadedTask, load_task, validate_task

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
    int,
    typer.Option(
        "-j",
        "--concurrency",
        min=1,
        envvar="PROMPTOPT_CONCURRENCY",
        help="Requests in flight per endpoint.",
    ),
]
CacheDirOpt = Annotated[
    Path | None,
    typer.Option(
        "--cache-dir",
        envvar="PROMPTOPT_CACHE_DIR",
        help="Response cache folder [default: ~/.cache/promptopt/responses].",
    ),
]
NoCacheOpt = Annotated[
    bool,
    typer.Option(
        "--no-cache", envvar="PROMPTOPT_NO_CACHE", help="Neither read nor write the cache."
    ),
]
SeedOpt = Annotated[
    int | None,
    typer.Option("--seed", envvar="PROMPTOPT_SEED", help="Random seed [default: the task's]."),
]
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
    return Console(stderr=True, soft_wrap=True)


def _fail(message: str, code: int) -> NoReturn:
    _stderr().print(f"[bold red]error:[/] {message}", highlight=False, markup=True)
    raise typer.Exit(code)


def _run_async(make: Callable[[], Awaitable[T]]) -> T:
    """Run a coroutine, turning user-facing errors and Ctrl-C into messages and exit codes."""
    try:
        return asyncio.run(make())  # type: ignore[arg-type]
    except KeyboardInterrupt:
        _fail("interrupted; responses received so far are kept in the cache", EXIT_INTERRUPTED)
    except asyncio.CancelledError:
        # A second Ctrl-C cancels the main task (see _install_interrupt).
        _fail(
            "aborted; responses received so far are kept in the cache and, for a run, in its "
            "folder: continue it with promptopt run --resume RUN_DIR",
            EXIT_INTERRUPTED,
        )
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
    task: LoadedTask,
    target: str | None,
    optimizer: str | None,
    base_url: str | None,
    optimizer_base_url: str | None = None,
) -> LoadedTask:
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
        _fail(f"--target/--optimizer: {message}", EXIT_USAGE)
    task, note = apply_default_models(task, os.environ)
    if note:
        _stderr().print(f"note: {note}", highlight=False)
    return task


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
    # One row per figure, so that it fits an 80-column terminal or CI log.
    lo, hi = result.ci95()
    usage = result.usage
    table = Table(title=title, show_header=False)
    table.add_column("", style="bold")
    table.add_column("", justify="right")
    for name, value in (
        ("split", f"{result.split} ({result.n} examples)"),
        ("score", f"{result.score:.3f}"),
        ("95% CI", f"[{lo:.3f}, {hi:.3f}]"),
        ("requests sent", str(usage.requests)),
        ("cache hits", str(usage.cache_hits)),
        ("errors (scored 0)", str(result.errors)),
        ("tokens in / out", f"{usage.to_json()['input_tokens']} / {usage.tokens.output}"),
        ("cost", f"${usage.cost_usd:.4f}"),
    ):
        table.add_row(name, value)
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

    judge_usage: dict[str, Any] = {}

    async def go() -> EvalResult:
        async with Runtime(task, options) as runtime:
            scorer = runtime.scorer
            with _progress(err, len(examples), f"eval {split}") as progress:
                bar = progress.add_task("eval", total=len(examples), score=0.0)
                done: list[float] = []

                def tick(res: ExampleResult) -> None:
                    done.append(res.score)
                    progress.update(bar, advance=1, score=sum(done) / len(done))

                result = await scorer.evaluate(text, examples, split=split, on_result=tick)
            judge = runtime.clients.get("judge")
            if judge is not None:
                judge_usage.update(judge.usage.to_json())
            return result

    result = _run_async(go)
    if as_json:
        payload = result.to_json()
        if judge_usage:
            payload["judge_usage"] = judge_usage  # the judge metric's own model calls
        sys.stdout.write(json.dumps(payload, ensure_ascii=False) + "\n")
    else:
        _stdout().print(_eval_table(result, f"{task.spec.name}: prompt scored on {split}"))
        if judge_usage:
            _stdout().print(
                f"judge: {judge_usage['requests']} requests, {judge_usage['cache_hits']} cached, "
                f"${judge_usage['cost_usd']:.4f}",
                highlight=False,
            )
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


EXIT_NO_GAIN = 3
EXIT_REGRESSION = 4

OutOpt = Annotated[Path, typer.Option("--out", help="Folder that receives run folders.")]


def _parse_params(items: list[str]) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            _fail(f"--param: {item!r} must be written KEY=VALUE", EXIT_USAGE)
        try:
            params[key] = json.loads(raw)
        except json.JSONDecodeError:
            params[key] = raw
    return params


def _summary_table(summary: dict[str, Any]) -> Table:
    table = Table(title=f"{summary['task']}: {summary['strategy']}", header_style="bold")
    table.add_column("prompt")
    table.add_column("dev", justify="right")
    table.add_column("test", justify="right")
    table.add_column("test 95% CI", justify="right")
    ci = summary.get("ci95", {})

    def fmt(x: Any) -> str:
        return "-" if x is None else f"{x:.3f}"

    def fmt_ci(key: str) -> str:
        pair = ci.get(key)
        return "-" if not pair else f"[{pair[0]:.3f}, {pair[1]:.3f}]"

    for name in ("initial", "best"):
        row = summary["scores"][name]
        table.add_row(name, fmt(row["dev"]), fmt(row["test"]), fmt_ci(f"{name}_test"))
    return table


def _print_run_result(summary: dict[str, Any], as_json: bool) -> None:
    if as_json:
        sys.stdout.write(json.dumps(summary, ensure_ascii=False) + "\n")
        return
    out = _stdout()
    out.print(_summary_table(summary))
    comparison = summary.get("test_comparison")
    if comparison:
        lo, hi = comparison["ci95"]
        out.print(
            f"test delta {comparison['delta']:+.3f} [{lo:+.3f}, {hi:+.3f}]: "
            f"{comparison['verdict']}",
            highlight=False,
        )
    usage = summary["usage"]
    out.print(
        "calls: target {t[requests]} sent + {t[cache_hits]} cached, optimizer {o[requests]} sent "
        "+ {o[cache_hits]} cached; cost ${cost:.4f}; {wall:.1f} s".format(
            t=usage["target"],
            o=usage["optimizer"],
            cost=sum(float(u["cost_usd"]) for u in usage.values()),
            wall=summary["wall_s"],
        ),
        highlight=False,
    )
    out.print(f"best prompt: {summary['run_dir']}/best_prompt.txt", highlight=False)


def _install_interrupt(stop: asyncio.Event) -> None:
    """First Ctrl-C: stop sending, let in-flight calls finish, save. Second: abort now."""
    loop = asyncio.get_running_loop()
    main_task = asyncio.current_task()

    def on_sigint() -> None:
        if stop.is_set():
            if main_task is not None:
                main_task.cancel()
            return
        stop.set()
        _stderr().print(
            "[yellow]stopping: finishing requests in flight and saving (Ctrl-C again to abort)[/]"
        )

    with contextlib.suppress(NotImplementedError, RuntimeError):
        loop.add_signal_handler(signal.SIGINT, on_sigint)


@app.command("run")
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
    budget: Annotated[
        int | None, typer.Option("--budget", min=1, help="Hard cap on target-model calls.")
    ] = None,
    optimizer_budget: Annotated[
        int | None,
        typer.Option("--optimizer-budget", min=1, help="Hard cap on optimizer-model calls."),
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
    target: TargetOpt = None,
    optimizer: OptimizerOpt = None,
    base_url: BaseUrlOpt = None,
    optimizer_base_url: Annotated[
        str | None,
        typer.Option("--optimizer-base-url", help="A different server for the optimizer model."),
    ] = None,
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
    as_json: JsonOpt = False,
    baseline: Annotated[
        Path | None,
        typer.Option(
            "--baseline",
            envvar="PROMPTOPT_BASELINE",
            help="CI mode: start from this prompt file instead of the task's prompt; it is the "
            "'initial' of the held-out comparison.",
        ),
    ] = None,
    write_if_better: Annotated[
        Path | None,
        typer.Option(
            "--write-if-better",
            envvar="PROMPTOPT_WRITE_IF_BETTER",
            help="CI mode: write the best prompt to PATH only if it beats the initial one on "
            "test (exit 0); otherwise leave PATH untouched and exit 3.",
        ),
    ] = None,
    min_improvement: Annotated[
        float,
        typer.Option(
            "--min-improvement",
            envvar="PROMPTOPT_MIN_IMPROVEMENT",
            help="CI mode: the lower end of the 95% CI of the test gain must be above this.",
        ),
    ] = 0.0,
    summary_md: Annotated[
        Path | None,
        typer.Option(
            "--summary-md",
            envvar="PROMPTOPT_SUMMARY_MD",
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
    try:
        if resume is not None:
            folder = RunFolder.open(resume)
            config = folder.read_json(CONFIG) or {}
            task = _load(Path(config["task_path"]))
            if task.data_hash != config.get("data_hash"):
                _fail(
                    f"--resume: the data of {task.path} changed since the run started; "
                    "start a new run",
                    EXIT_USAGE,
                )
            settings = RunSettings.from_json(config["settings"])
            task = override_models_from_config(task, config)
            if baseline is not None:
                _fail("--baseline: a resumed run keeps its initial prompt", EXIT_USAGE)
            # The run's initial prompt (a --baseline one, say) is the one in its config.json.
            task = _with_prompt(task, config.get("task", {}).get("prompt"))
        else:
            if task_path is None:
                _fail("give a task file, or --resume RUN_DIR", EXIT_USAGE)
            task = _with_models(_load(task_path), target, optimizer, base_url, optimizer_base_url)
            if baseline is not None:
                task = _with_prompt(task, read_prompt_file(baseline))
            search = task.spec.search
            caps = BudgetCaps(
                target_calls=budget or search.budget.target_calls,
                optimizer_calls=optimizer_budget or search.budget.optimizer_calls,
                cost_usd=max_cost if max_cost is not None else search.budget.cost_usd,
            )
            name = strategy or search.strategy
            raw = {**search.params, **_parse_params(param or [])}
            _, validated = make_strategy(name, raw)
            settings = RunSettings(
                strategy=name,
                params=validated.model_dump(mode="json"),
                seed=search.seed if seed is None else seed,
                caps=caps,
                stop=StopRules(max_steps, patience, target_score),
                finalists=finalists,
                concurrency=concurrency,
            )
        strat, _ = make_strategy(settings.strategy, settings.params)
        metas = load_meta_prompts(meta_prompts_dir)
        # Checks that would otherwise fail after a run folder was made.
        dev, test = task.split("dev"), task.split("test")
        search_caps(settings.caps, final_reserve(len(dev), len(test), settings.finalists))
    except PromptoptError as exc:
        _fail(str(exc), exc.exit_code)
    if dry_run:
        _print_plan(task, settings, strat, as_json)
        return
    err = _stderr()
    options = RuntimeOptions(
        concurrency=settings.concurrency,
        cache_dir=cache_dir,
        no_cache=no_cache,
        seed=settings.seed,
        caps=settings.caps,
    )

    async def go() -> dict[str, Any]:
        stop = asyncio.Event()
        _install_interrupt(stop)
        await check_models(task, options)
        run_folder = folder if resume is not None else RunFolder.create(out, task.spec.name)
        journal = ResponseJournal(run_folder.file(RESPONSES))
        async with Runtime(task, options, journal=journal, stop=stop) as runtime:
            engine = Engine(
                task, runtime, run_folder, settings, strat, metas, on_step=_step_printer(err)
            )
            err.print(f"run folder: {run_folder.path}", highlight=False)
            return await engine.run(resume=resume is not None)

    summary = _run_async(go)
    _print_run_result(summary, as_json)
    if write_if_better is not None or summary_md is not None:
        _ci_finish(summary, write_if_better, min_improvement, summary_md)


def _with_prompt(task: LoadedTask, prompt: str | None) -> LoadedTask:
    if prompt is None or prompt == task.spec.prompt:
        return task
    return dataclasses.replace(task, spec=task.spec.model_copy(update={"prompt": prompt}))


def _ci_finish(
    summary: dict[str, Any], path: Path | None, min_improvement: float, summary_md: Path | None
) -> None:
    """CI mode after a run: the gate, the prompt file, the Markdown summary, the exit code."""
    try:
        decision: GateDecision = ci_gate(summary, min_improvement)
    except PromptoptError as exc:
        _fail(str(exc), EXIT_ERROR)
    written: Path | None = None
    if decision.passed and path is not None:
        try:
            write_atomic(path, str(summary["best_prompt"]) + "\n")
        except OSError as exc:
            _fail(f"--write-if-better: cannot write {path}: {exc}", EXIT_ERROR)
        written = path
    text = ci_summary_markdown(RunFolder(Path(summary["run_dir"])), decision, written)
    step_summary = os.environ.get("GITHUB_STEP_SUMMARY")
    try:
        if summary_md is not None:
            summary_md.write_text(text, encoding="utf-8")
        if step_summary:
            with Path(step_summary).open("a", encoding="utf-8") as handle:
                handle.write(text)
    except OSError as exc:
        _fail(f"--summary-md: cannot write the summary: {exc}", EXIT_ERROR)
    err = _stderr()
    if decision.passed:
        err.print(f"[green]improved:[/] {decision.reason}", highlight=False)
    else:
        err.print(f"[yellow]no significant gain:[/] {decision.reason}", highlight=False)
    if written is not None:
        err.print(f"wrote the best prompt to {written}", highlight=False)
    if path is not None and not decision.passed:
        err.print(f"{path} left untouched", highlight=False)
        raise typer.Exit(EXIT_NO_GAIN)


def _step_printer(err: Console) -> Callable[[Any, Any, Runtime], None]:
    def show(ctx: Any, report: Any, runtime: Runtime) -> None:
        calls = runtime.ledger.calls
        score = "-" if report.best_score is None else f"{report.best_score:.3f}"
        err.print(
            f"step {ctx.step:>3} {report.name:<14} best(train) {score}  "
            f"target calls {calls.get('target', 0)}  optimizer calls {calls.get('optimizer', 0)}"
            f"  ${runtime.ledger.spent_usd:.4f}",
            highlight=False,
        )

    return show


def _print_plan(task: LoadedTask, settings: RunSettings, strat: Any, as_json: bool) -> None:
    prices = {}
    for role in ("target", "optimizer"):
        spec = model_for_role(task, role)
        if spec is not None:
            prices[role] = price_for(spec, task.spec.prices or {})
    sizes = {name: len(rows) for name, rows in task.splits.items()}
    try:
        plan = plan_run(task, settings, strat.plan(sizes), prices)
        search_caps(settings.caps, plan.final_eval_calls)
    except PromptoptError as exc:
        _fail(str(exc), exc.exit_code)
    if as_json:
        sys.stdout.write(json.dumps(plan.to_json()) + "\n")
        return
    cost = "unknown" if plan.estimated_cost_usd is None else f"${plan.estimated_cost_usd:.4f}"
    out = _stdout()
    out.print(f"plan for {task.spec.name} with {settings.strategy} (no model was called):")
    out.print(
        f"  at most {plan.target_calls} target calls "
        f"({plan.final_eval_calls} of them for the final dev/test evaluation)",
        highlight=False,
    )
    out.print(f"  at most {plan.optimizer_calls} optimizer calls", highlight=False)
    out.print(f"  estimated cost at most {cost}", highlight=False)
    for note in plan.notes:
        out.print(f"  note: {note}", highlight=False)


@app.command("strategies")
def strategies_command(as_json: JsonOpt = False) -> None:
    """List the search strategies and their parameters."""
    listing = []
    for name, info in sorted(STRATEGIES.items()):
        params = [
            {
                "name": field_name,
                "default": field.default,
                "description": field.description or "",
            }
            for field_name, field in info.params.model_fields.items()
        ]
        listing.append(
            {
                "name": name,
                "summary": info.summary,
                "params": params,
                "presets": {k: dict(v) for k, v in info.presets.items()},
            }
        )
    if as_json:
        sys.stdout.write(json.dumps(listing, default=str) + "\n")
        return
    out = _stdout()
    for name, info in sorted(STRATEGIES.items()):
        out.print(f"[bold]{name}[/]: {info.summary}")
        for field_name, field in info.params.model_fields.items():
            out.print(
                f"  {field_name} = {field.default!r}  {field.description or ''}", highlight=False
            )
        if info.presets:
            out.print(f"  presets: {', '.join(sorted(info.presets))}", highlight=False)


_FORMATS_BY_SUFFIX = {".md": "md", ".markdown": "md", ".html": "html", ".htm": "html"}


def _report_format(fmt: str | None, output: Path | None, allowed: tuple[str, ...]) -> str:
    """The --format given, else the one -o's suffix names, else the first allowed."""
    if fmt is None and output is not None:
        fmt = {**_FORMATS_BY_SUFFIX, ".json": "json"}.get(output.suffix.lower())
    fmt = fmt or allowed[0]
    if fmt not in allowed:
        _fail(f"--format: {fmt!r} is not one of {', '.join(allowed)}", EXIT_USAGE)
    return fmt


def _emit(text: str, output: Path | None) -> None:
    if output is None:
        sys.stdout.write(text)
        return
    try:
        output.write_text(text, encoding="utf-8")
    except OSError as exc:
        _fail(f"-o: cannot write {output}: {exc.strerror}", EXIT_ERROR)
    _stderr().print(f"wrote {output}", highlight=False)


FormatOpt = Annotated[
    str | None,
    typer.Option("--format", help="terminal, md, html or json [default: from -o, else terminal]."),
]
OutputOpt = Annotated[Path | None, typer.Option("-o", "--output", help="Write to FILE.")]


@app.command("diff")
def diff_command(
    old: Annotated[
        Path, typer.Argument(help="The old prompt: a run folder (its best) or a prompt file.")
    ],
    new: Annotated[
        Path | None,
        typer.Argument(
            help="The new prompt, likewise. Without it, OLD is a run folder and its initial "
            "prompt is compared with its best.",
            show_default=False,
        ),
    ] = None,
    task_path: Annotated[
        Path | None,
        typer.Option("--task", help="Task to score on [default: the run folder's task]."),
    ] = None,
    split: Annotated[str, typer.Option("--split", help="train, dev or test.")] = "test",
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
    concurrency: ConcurrencyOpt = 8,
    cache_dir: CacheDirOpt = None,
    no_cache: NoCacheOpt = False,
    seed: SeedOpt = None,
    target: TargetOpt = None,
    base_url: BaseUrlOpt = None,
    max_cost: MaxCostOpt = None,
) -> None:
    """Compare two prompt revisions on the same examples: word diff, score delta with a paired
    95% CI (and McNemar's test for 0/1 scores), flips, tokens, cost, latency and a verdict.

    Exit codes: 0 done; 1 runtime error; 2 usage error, or prompts that cannot be compared
    fairly (see --force); 4 with --fail-on-regression: NEW is significantly worse.
    """
    if split not in ("train", "dev", "test"):
        _fail(f"--split: {split!r} is not one of train, dev, test", EXIT_USAGE)
    kind = _report_format(fmt, output, ("terminal", "md", "html", "json"))
    try:
        old_side, new_side = read_sides(old, new)
        task = _load(task_path) if task_path is not None else default_task(old_side, new_side)
        task = _with_models(task, target, None, base_url)
        plan = check_diff(task, old_side, new_side, force=force)
        task.split(split)
    except PromptoptError as exc:
        _fail(str(exc), exc.exit_code)
    if seed is None:
        run_config = old_side.config or new_side.config or {}
        seed = run_config.get("settings", {}).get("seed")
    options = _options(concurrency, cache_dir, no_cache, seed, task, BudgetCaps(cost_usd=max_cost))

    async def go() -> DiffReport:
        async with Runtime(plan.task, options) as runtime:
            return await score_diff(plan, runtime, split)

    report = _run_async(go)
    if kind == "terminal" and output is None:
        _stdout().print(diff_renderable(report))
    elif kind == "terminal":
        console = Console(record=True, width=120, file=io.StringIO())
        console.print(diff_renderable(report))
        _emit(console.export_text(), output)
    elif kind == "md":
        _emit(diff_markdown(report), output)
    elif kind == "html":
        _emit(diff_html(report), output)
    else:
        _emit(json.dumps(report.to_json(), ensure_ascii=False, indent=2) + "\n", output)
    if fail_on_regression and report.verdict == "regressed":
        _stderr().print("[red]regressed:[/] the new prompt is significantly worse")
        raise typer.Exit(EXIT_REGRESSION)


@app.command("report")
def report_command(
    run_dir: Annotated[Path, typer.Argument(help="A run folder, finished or interrupted.")],
    fmt: Annotated[
        str | None, typer.Option("--format", help="md or html [default: from -o, else md].")
    ] = None,
    output: OutputOpt = None,
) -> None:
    """Render a run: score trajectory, lineage of the best prompt, initial vs best on test,
    usage and cost. Calls no model."""
    kind = _report_format(fmt, output, ("md", "html"))
    try:
        report = build_run_report(RunFolder.open(run_dir))
    except PromptoptError as exc:
        _fail(str(exc), exc.exit_code)
    _emit(run_markdown(report) if kind == "md" else run_html(report), output)


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
