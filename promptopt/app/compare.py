"""The `diff` use case: resolve two prompt revisions (run folders or prompt files), check that
they can be compared fairly, and score both on the same examples."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

from pydantic import ValidationError

from promptopt.app.evaluate import errors_decided, read_demos_file
from promptopt.app.revisions import RepoFile, split_revision
from promptopt.errors import UsageError
from promptopt.llm.cache import ResponseStore
from promptopt.llm.error_budget import TooManyErrors
from promptopt.llm.messages import Usage
from promptopt.llm.pricing import cost_usd
from promptopt.llm.providers.base import Provider
from promptopt.reporting.diff import (
    Commit,
    DiffReport,
    ExampleOutcome,
    Provenance,
    SideUsage,
    build_diff,
)
from promptopt.reporting.run_files import best_demos
from promptopt.run.folder import RunFolder
from promptopt.run.records import ConfigRecord, ModelUsed
from promptopt.scoring.runtime import Runtime, RuntimeOptions
from promptopt.scoring.scorer import EvalResult, build_messages
from promptopt.task.example import Example
from promptopt.task.loader import LoadedTask, load_task
from promptopt.task.prompt import Demo
from promptopt.task.schema import TaskFile
from promptopt.util.hashing import content_hash


@dataclass(frozen=True)
class PromptSource:
    """One side of a diff: a prompt, and the run it came from when it came from a run."""

    label: str
    source: str
    text: str
    config: ConfigRecord | None = None
    demos: tuple[Demo, ...] = ()
    """Few-shot demonstrations sent with the prompt (a run's best_demos.json)."""
    commit: Commit | None = None
    """The git commit the prompt was read at (REV:path, --rev)."""

    @property
    def described(self) -> str:
        """The label with the demonstrations sent besides the prompt, which the word diff of
        system prompts does not show."""
        if not self.demos:
            return self.label
        return f"{self.label} + {len(self.demos)} demos ({', '.join(d.id for d in self.demos)})"


def _strip_final_newlines(text: str) -> str:
    # Files written by promptopt (best_prompt.txt, --write-if-better) end with one newline that
    # is not part of the prompt.
    return text.rstrip("\n")


def read_prompt_file(path: Path) -> str:
    """A prompt file's text without its trailing newlines; UsageError when unreadable or empty."""
    try:
        text = _strip_final_newlines(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise UsageError(f"cannot read the prompt file {path}: {exc.strerror}") from exc
    if not text.strip():
        raise UsageError(f"the prompt file {path} is empty")
    return text


def _run_prompt(path: Path, which: Literal["initial", "best"]) -> PromptSource:
    folder = RunFolder.open(path)
    config = folder.config()
    summary = folder.summary()
    best_id = summary.best_id if summary is not None else None
    text: str | None
    if which == "initial":
        text = summary.initial_prompt if summary is not None else None
        text = text or (config.task_prompt if config is not None else None)
        label = f"{path.name} initial"
    else:
        text = summary.best_prompt if summary is not None else None
        if text is None and folder.file("best_prompt.txt").is_file():
            text = _strip_final_newlines(folder.file("best_prompt.txt").read_text("utf-8"))
        label = f"{path.name} best" + (f" ({best_id})" if best_id else "")
    if not text:
        raise UsageError(f"{path}: the run folder has no {which} prompt yet")
    demos = best_demos(folder, best_id) if which == "best" else ()
    if which == "initial":
        # A run started from demonstrations (--demos-file) scored its initial prompt with them.
        demos = tuple(Demo(r.id, r.input, r.output) for r in folder.initial_demos())
    return PromptSource(label, str(path), str(text), config, demos)


def prompt_text(text: str, where: str) -> str:
    """A prompt file's content without its trailing newlines; UsageError when empty."""
    text = _strip_final_newlines(text)
    if not text.strip():
        raise UsageError(f"the prompt file {where} is empty")
    return text


def revision_source(rev: str, path: Path | str) -> PromptSource:
    """A prompt file as it was at git revision `rev`, with that commit as its provenance.

    Args:
        rev: Any revision git understands: a hash, a branch, a tag, HEAD~3.
        path: The file, relative to the current folder (or absolute), in any git repository.

    Returns:
        The prompt, labelled "path@rev (short hash)".

    Raises:
        UsageError: Not in a git repository, an unknown revision, or a revision without the
            file.
    """
    repo_file = RepoFile.locate(path)
    commit = repo_file.commit(rev)
    text = repo_file.text_at(commit)
    if text is None:
        raise UsageError(f"{repo_file.path} does not exist at {rev} ({commit.short})")
    where = f"{repo_file.path}@{rev}"
    return PromptSource(
        f"{where} ({commit.short})", f"{rev}:{path}", prompt_text(text, where), commit=commit
    )


def read_source(path: Path | str, which: Literal["initial", "best"] = "best") -> PromptSource:
    """A run folder's initial or best prompt, a prompt file's text, or (REV:path) a prompt file
    at a git revision."""
    if isinstance(path, str):
        revision = split_revision(path)
        if revision is not None:
            return revision_source(*revision)
        path = Path(path)
    if path.is_dir():
        return _run_prompt(path, which)
    if not path.exists():
        raise UsageError(f"{path} does not exist: give a run folder or a prompt file")
    return PromptSource(path.name, str(path), read_prompt_file(path))


def scoring_identity(spec: Mapping[str, Any]) -> str:
    """A hash of what decides a prompt's scores besides the prompt: the data and metric
    settings, the input template, and the model(s) that answer and judge.

    The prompt, the description, the search settings and the optimizer (unless it is the
    judge) are left out: runs that differ only there are comparable.
    """
    return content_hash(_scoring_parts(spec))


def _scoring_parts(spec: Mapping[str, Any]) -> dict[str, Any]:
    models = dict(spec.get("models") or {})
    metric = spec.get("metric") or {}
    keep_roles = ["target", "judge"]
    if metric.get("type") == "judge" and models.get("judge") is None:
        keep_roles.append("optimizer")
    return {
        "input_template": spec.get("input_template"),
        "data": spec.get("data"),
        "metric": metric,
        "models": {role: _answering(models.get(role)) for role in keep_roles},
        "prices": spec.get("prices"),
    }


_PART_NAMES = {
    "data": "data settings",
    "metric": "metric",
    "input_template": "input template",
    "models": "models",
    "prices": "prices",
}


def scoring_differences(run_spec: Mapping[str, Any], spec: Mapping[str, Any]) -> list[str]:
    """Which of the data settings, metric, input template, models and prices of two task
    specs differ (names in that order; empty when they score alike)."""
    a, b = _scoring_parts(run_spec), _scoring_parts(spec)
    return [name for key, name in _PART_NAMES.items() if a[key] != b[key]]


def _answering(model: Any) -> Any:
    # Sent in a batch or one by one, a model answers the same: `batch` does not make runs
    # incomparable.
    if isinstance(model, dict):
        return {k: v for k, v in model.items() if k != "batch"}
    return model


def _target_model(spec: Mapping[str, Any]) -> str:
    target = (spec.get("models") or {}).get("target")
    return str(target.get("model")) if isinstance(target, dict) else str(target)


def comparability_problems(task: LoadedTask, sources: Sequence[PromptSource]) -> list[str]:
    """Why scores on `task` would not be comparable with the runs the prompts come from."""
    problems: list[str] = []
    spec = task.spec.model_dump(mode="json")
    identity = scoring_identity(spec)
    for src in sources:
        config = src.config
        if config is None:
            continue
        if config.data_hash != task.data_hash:
            problems.append(
                f"{src.source}: its data (data_hash {config.data_hash[:12]}) differs "
                f"from the data scored now ({task.data_hash[:12]})"
            )
        run_spec = config.task
        if _target_model(run_spec) != _target_model(spec):
            problems.append(
                f"{src.source}: its target model {_target_model(run_spec)} differs from "
                f"{_target_model(spec)}"
            )
        elif config.task_hash != task.task_hash and scoring_identity(run_spec) != identity:
            differs = scoring_differences(run_spec, spec) or ["scoring settings"]
            problems.append(
                f"{src.source}: its task (task_hash {config.task_hash[:12]}) differs "
                f"from {task.path} in its {_listed(differs)}"
            )
    return problems


def _listed(names: Sequence[str]) -> str:
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def task_of_run(config: ConfigRecord) -> LoadedTask:
    """The task a run scored with: its task file's data, with the spec (models, metric, prompt)
    exactly as the run recorded it in config.json."""
    if not config.task_path:
        raise UsageError("the run folder's config.json names no task file; pass --task")
    loaded = load_task(Path(config.task_path))
    try:
        spec = TaskFile.model_validate(config.task)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise UsageError(
            f"the run folder's config.json: task.{where}: {first['msg']}; pass --task to score "
            "on a task file instead"
        ) from None
    return replace(loaded, spec=spec)


@dataclass(frozen=True)
class DiffPlan:
    """What `promptopt diff` will score: on which task, which two prompts."""

    task: LoadedTask
    old: PromptSource
    new: PromptSource
    mismatches: tuple[str, ...] = ()


def read_sides(
    old: Path | str, new: Path | str | None, rev: str | None = None
) -> tuple[PromptSource, PromptSource]:
    """The two prompts of a diff; with one run folder and no NEW, its initial and best prompt.

    OLD and NEW are run folders, prompt files or REV:path; with `rev` (--rev), OLD is a prompt
    file and it is compared as it was at `rev` with the working tree's.
    """
    if rev is not None:
        if new is not None:
            raise UsageError("--rev compares one prompt file with itself at REV: give only OLD")
        working = read_source(Path(old))
        return revision_source(rev, old), replace(working, label=f"{working.label} (working tree)")
    old = Path(old) if isinstance(old, str) and split_revision(old) is None else old
    if new is None:
        if not isinstance(old, Path) or not old.is_dir():
            raise UsageError("give two prompts to compare: OLD NEW (or a single run folder)")
        return read_source(old, "initial"), read_source(old, "best")
    return read_source(old), read_source(new)


def with_demos_file(side: PromptSource, path: Path | None, flag: str) -> PromptSource:
    """`side` sent with the demonstrations of the file at `path` (a best_demos.json), in place
    of its own; unchanged without a path. UsageError naming `flag` when the file is unreadable.
    """
    if path is None:
        return side
    try:
        demos = read_demos_file(path)
    except UsageError as exc:
        raise UsageError(f"{flag}: {exc}") from exc
    return replace(side, demos=demos)


def default_task(old: PromptSource, new: PromptSource) -> LoadedTask:
    """The task of the first run folder among the two sides; UsageError for two prompt files."""
    config = old.config or new.config
    if config is None:
        raise UsageError("prompt files need --task TASK.yaml to be scored")
    return task_of_run(config)


def check_diff(
    task: LoadedTask, old: PromptSource, new: PromptSource, *, force: bool = False
) -> DiffPlan:
    """Refuse to compare prompts whose runs used other data, another task or another target
    model than `task` (UsageError), unless `force`, which records the mismatches instead."""
    task.require_metric("diff")
    problems = comparability_problems(task, [old, new])
    if problems and not force:
        raise UsageError(
            "the prompts cannot be compared fairly:\n  "
            + "\n  ".join(problems)
            + "\npass --force to compare them anyway"
        )
    return DiffPlan(task, old, new, tuple(problems))


def prepare_diff(
    old: Path, new: Path | None, task: LoadedTask | None = None, *, force: bool = False
) -> DiffPlan:
    """Resolve OLD and NEW (run folders or prompt files) and the task to score them on.

    With one run folder and no NEW, compares that run's initial prompt with its best. Without
    `task`, the first run folder's recorded task is used.
    """
    a, b = read_sides(old, new)
    return check_diff(task or default_task(a, b), a, b, force=force)


def _side_usage(
    runtime: Runtime,
    result: EvalResult,
    examples: Sequence[Example],
    demos: Sequence[Demo] = (),
) -> SideUsage:
    """Tokens and cost of one full evaluation, read from the cached answers so that a cached
    answer counts at what it cost when it was paid; without a cache, what was sent."""
    client = runtime.scorer.target
    batcher = runtime.scorer.batcher
    price = client.price if batcher is None else batcher.price
    total = Usage()
    complete = True
    for example in examples:
        messages = build_messages(result.prompt, runtime.task.render_input(example), demos)
        value = runtime.store.get(client.key_for(messages))
        if value is None:
            complete = False
            break
        total = total + Usage.from_dict(value.get("usage", {}))
        if value.get("model"):
            client.reported_models.add(str(value["model"]))
    if not complete:
        total = result.usage.tokens
    latencies = [e.latency_s for e in result.examples]
    return SideUsage(
        input_tokens=total.input + total.cache_read + total.cache_write,
        output_tokens=total.output,
        cost_usd=None if price is None else cost_usd(total, price),
        mean_latency_s=sum(latencies) / len(latencies) if latencies else None,
        requests=result.usage.requests,
        cache_hits=result.usage.cache_hits,
    )


async def score_diff(plan: DiffPlan, runtime: Runtime, split: str = "test") -> DiffReport:
    """Score both prompts of `plan` on `split` with the runtime's target model and metric."""
    task = plan.task
    examples = task.split(split)
    scorer = runtime.scorer
    # Both sides' requests share one batch when batches are on; then they are scored one
    # after the other, so that each side's usage is its own.
    await scorer.prefetch(
        [(plan.old.text, examples, plan.old.demos), (plan.new.text, examples, plan.new.demos)]
    )
    old = await scorer.evaluate(plan.old.text, examples, split=split, demos=plan.old.demos)
    new = await scorer.evaluate(plan.new.text, examples, split=split, demos=plan.new.demos)
    for side, result in ((plan.old, old), (plan.new, new)):
        # A verdict between two prompts whose scores errors decided would be noise; neither
        # "same" nor "regressed" may come out of it.
        problem = errors_decided(runtime, result)
        if problem is not None:
            raise TooManyErrors(f"{problem} (the {side.described} side of the diff)")
    old_usage = _side_usage(runtime, old, examples, plan.old.demos)
    new_usage = _side_usage(runtime, new, examples, plan.new.demos)
    outcomes = [
        ExampleOutcome(
            id=ex.id,
            input=task.render_input(ex),
            expected=ex.targets,
            old_output=o.output,
            new_output=n.output,
            old_score=o.score,
            new_score=n.score,
            old_error=o.error,
            new_error=n.error,
            old_latency_s=o.latency_s,
            new_latency_s=n.latency_s,
        )
        for ex, o, n in zip(examples, old.examples, new.examples, strict=True)
    ]
    models = {
        role: ModelUsed(model=client.spec.model, reported=sorted(client.reported_models))
        for role, client in runtime.clients.items()
    }
    provenance = Provenance(
        task=task.spec.name,
        task_hash=task.task_hash,
        data_hash=task.data_hash,
        split=split,
        seed=runtime.options.seed,
        models=models,
        old_label=plan.old.described,
        new_label=plan.new.described,
        old_source=plan.old.source,
        new_source=plan.new.source,
        mismatches=plan.mismatches,
        old_commit=plan.old.commit,
        new_commit=plan.new.commit,
    )
    return build_diff(
        provenance,
        plan.old.text,
        plan.new.text,
        outcomes,
        old_usage=old_usage,
        new_usage=new_usage,
        metric_name=task.require_metric("diff").type,
        old_demos=plan.old.demos,
        new_demos=plan.new.demos,
    )


async def compare_prompts(
    plan: DiffPlan,
    *,
    split: str = "test",
    options: RuntimeOptions | None = None,
    providers: Mapping[str, Provider] | None = None,
    store: ResponseStore | None = None,
) -> DiffReport:
    """Score both prompts of `plan` on `split` and build their diff report."""
    async with Runtime(
        plan.task, options or RuntimeOptions(), providers=providers, store=store
    ) as runtime:
        return await score_diff(plan, runtime, split)
