"""The `history` use case: a prompt file's revisions in git, each scored on the same examples
with the same models, so that a team sees how each commit changed the prompt's quality.

Every revision goes through the same runtime and scorer as `eval` and `diff`, so the response
cache makes a repeated history free: only revisions not scored before cost anything.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from promptopt.app.compare import prompt_text
from promptopt.app.revisions import RepoFile
from promptopt.errors import UsageError
from promptopt.llm.cache import ResponseStore
from promptopt.llm.pricing import price_for, request_max_cost_usd, unknown_cost_note
from promptopt.llm.providers.base import Provider
from promptopt.reporting.diff import Commit
from promptopt.reporting.history import (
    HistoryProvenance,
    HistoryReport,
    RevisionScore,
    build_history,
    score_revision,
)
from promptopt.run.records import ModelUsed
from promptopt.scoring.runtime import Runtime, RuntimeOptions, model_for_role
from promptopt.scoring.scorer import build_messages
from promptopt.task.loader import LoadedTask


@dataclass(frozen=True)
class Revision:
    """A prompt file's text at one commit."""

    commit: Commit
    text: str


@dataclass(frozen=True)
class HistoryPlan:
    """The revisions `history` will score, and the baseline to gate the newest against."""

    file: RepoFile
    revisions: tuple[Revision, ...]
    baseline: Revision | None = None
    skipped: tuple[str, ...] = ()
    """Commits that changed the file but left no prompt to score (deleted or emptied)."""
    uncommitted: bool = False
    """The working tree's file differs from the newest revision, which is what is scored."""


def find_revisions(
    path: Path | str,
    *,
    revs: int | None = None,
    since: str | None = None,
    rev_range: str | None = None,
    baseline: str | None = None,
) -> HistoryPlan:
    """The commits that changed a prompt file (oldest first), with its text at each.

    Args:
        path: The prompt file, relative to the current folder or absolute.
        revs: Only the newest this many commits.
        since: Only commits after this date (as git understands dates).
        rev_range: A revision range (main..HEAD) instead of HEAD's whole history.
        baseline: A revision to compare the newest revision with (--baseline).

    Returns:
        The plan.

    Raises:
        UsageError: Not in a git repository, an unknown revision or range, or no revision of
            the file to score.
    """
    if revs is not None and revs < 1:
        raise UsageError("--revs must be at least 1")
    repo_file = RepoFile.locate(path)
    revisions: list[Revision] = []
    skipped: list[str] = []
    for commit in repo_file.commits(revs=revs, since=since, rev_range=rev_range):
        text = repo_file.text_at(commit)
        if text is None or not text.strip():
            skipped.append(f"{commit.short} {'deletes' if text is None else 'empties'} the file")
            continue
        revisions.append(Revision(commit, prompt_text(text, f"{repo_file.path}@{commit.short}")))
    if not revisions:
        raise UsageError(
            f"no commit with a prompt in {repo_file.path} to score"
            + (" in the given range or dates" if rev_range or since or revs else "")
            + " (commit the file first)"
        )
    base = None
    if baseline is not None:
        commit = repo_file.commit(baseline)
        text = repo_file.text_at(commit)
        if text is None:
            raise UsageError(f"--baseline: {repo_file.path} does not exist at {baseline}")
        base = Revision(commit, prompt_text(text, f"{repo_file.path}@{baseline}"))
    uncommitted = False
    if rev_range is None and Path(path).is_file():
        working = Path(path).read_text(encoding="utf-8", errors="replace")
        uncommitted = working.rstrip("\n") != revisions[-1].text
    return HistoryPlan(repo_file, tuple(revisions), base, tuple(skipped), uncommitted)


@dataclass(frozen=True)
class HistoryCost:
    """What `history --dry-run` prints: the most target calls and dollars, calling no model."""

    revisions: int
    examples: int
    target_calls: int
    estimated_cost_usd: float | None
    notes: tuple[str, ...] = field(default_factory=tuple)

    def to_json(self) -> dict[str, Any]:
        """As printed by `history --dry-run --format json`."""
        return {
            "revisions": self.revisions,
            "examples": self.examples,
            "target_calls": self.target_calls,
            "estimated_cost_usd": self.estimated_cost_usd,
            "notes": list(self.notes),
        }


def _prompts(plan: HistoryPlan) -> list[str]:
    texts = [r.text for r in plan.revisions]
    if plan.baseline is not None:
        texts.append(plan.baseline.text)
    return texts


def history_cost(task: LoadedTask, plan: HistoryPlan, split: str = "test") -> HistoryCost:
    """The worst case of scoring every revision of `plan` on `split`: one target call per
    distinct prompt and example, at the most each request can be billed (nothing cached)."""
    metric = task.require_metric("history")
    examples = task.split(split)
    prompts = list(dict.fromkeys(_prompts(plan)))
    spec = model_for_role(task, "target")
    notes = [
        "answers already in the response cache cost nothing: a repeated history is free",
    ]
    if len(prompts) < len(_prompts(plan)):
        notes.append("revisions with the same text are scored once")
    cost: float | None = None
    if spec is not None:
        price = price_for(spec, task.spec.prices or {})
        if price is None:
            notes.append(unknown_cost_note(spec))
        else:
            cost = sum(
                request_max_cost_usd(
                    build_messages(text, task.render_input(example)), spec.params, price
                )
                for text in prompts
                for example in examples
            )
    if metric.type == "judge":
        notes.append("the judge model's calls (one per answer) are not counted")
    return HistoryCost(
        len(plan.revisions), len(examples), len(prompts) * len(examples), cost, tuple(notes)
    )


async def score_history(plan: HistoryPlan, runtime: Runtime, split: str = "test") -> HistoryReport:
    """Score every revision of `plan` (and its baseline) on `split`, one after the other, and
    compare each with the one before it."""
    task = runtime.task
    examples = task.split(split)
    seed = runtime.options.seed

    async def score(revision: Revision) -> RevisionScore:
        result = await runtime.scorer.evaluate(revision.text, examples, split=split)
        return score_revision(
            revision.commit,
            revision.text,
            [e.score for e in result.examples],
            seed=seed,
            errors=result.errors,
            requests=result.usage.requests,
            cache_hits=result.usage.cache_hits,
        )

    scored = [await score(r) for r in plan.revisions]
    baseline = None if plan.baseline is None else await score(plan.baseline)
    models = {
        role: ModelUsed(model=client.spec.model, reported=sorted(client.reported_models))
        for role, client in runtime.clients.items()
    }
    provenance = HistoryProvenance(
        task=task.spec.name,
        task_hash=task.task_hash,
        data_hash=task.data_hash,
        split=split,
        seed=seed,
        file=plan.file.path,
        models=models,
        metric_name=task.require_metric("history").type,
    )
    return build_history(provenance, scored, baseline)


async def prompt_history(
    task: LoadedTask,
    plan: HistoryPlan,
    *,
    split: str = "test",
    options: RuntimeOptions | None = None,
    providers: Mapping[str, Provider] | None = None,
    store: ResponseStore | None = None,
) -> HistoryReport:
    """Score the revisions of `plan` on `split` of `task` and build their history report."""
    task.require_metric("history")
    async with Runtime(task, options or RuntimeOptions(), providers=providers, store=store) as rt:
        return await score_history(plan, rt, split)
