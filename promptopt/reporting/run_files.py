"""What a run report shows, read from a run folder through its typed records (no model call).

`build_run_report` gathers the run's records, its score trajectory, the lineage of the best
prompt and the initial-vs-best diff on test; `promptopt.reporting.view` formats them. A folder
written before run-folder records carried a `schema_version` reads the same way.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from promptopt.reporting.diff import DiffReport, ExampleOutcome, Provenance, SideUsage, build_diff
from promptopt.run.folder import RunFolder
from promptopt.run.records import (
    CandidateRecord,
    ConfigRecord,
    DemoRecord,
    EventRecord,
    ModelUsed,
    SummaryRecord,
)
from promptopt.task.prompt import Demo
from promptopt.version import __version__


@dataclass(frozen=True)
class TrajectoryPoint:
    """The search's state after one step: its best score and the budget spent so far."""

    step: int
    name: str
    best_score: float | None
    target_calls: int
    optimizer_calls: int
    cost_usd: float | None
    """None when a model's price is unknown, or the event predates cost tracking."""


def trajectory(events: Sequence[EventRecord]) -> list[TrajectoryPoint]:
    """One point per "step" event of events.jsonl, in order.

    Args:
        events: The run's events, oldest first.

    Returns:
        The points; a step event without a step number is numbered by its position.
    """
    points: list[TrajectoryPoint] = []
    for e in events:
        if e.event != "step":
            continue
        points.append(
            TrajectoryPoint(
                step=len(points) + 1 if e.step is None else e.step,
                name=e.name or "",
                best_score=e.best_score,
                target_calls=e.calls_to("target"),
                optimizer_calls=e.calls_to("optimizer"),
                cost_usd=e.cost_usd,
            )
        )
    return points


def lineage(candidates: Mapping[str, CandidateRecord], best_id: str) -> list[CandidateRecord]:
    """The chain of candidates from the initial prompt to `best_id`, oldest first.

    Where a candidate has several parents, the first is followed.

    Args:
        candidates: The latest record of every candidate, by id.
        best_id: Where the chain ends.

    Returns:
        The chain; empty when `best_id` is not a known candidate.
    """
    chain: list[CandidateRecord] = []
    seen: set[str] = set()
    current: str | None = best_id
    while current is not None and current in candidates and current not in seen:
        seen.add(current)
        record = candidates[current]
        chain.append(record)
        current = record.parents[0] if record.parents else None
    return list(reversed(chain))


def rejected_counts(events: Sequence[EventRecord]) -> dict[str, int]:
    """How many proposals were rejected for each reason, reasons in alphabetical order."""
    counts = Counter(str(e.reason) for e in events if e.event == "rejected")
    return dict(sorted(counts.items()))


@dataclass(frozen=True)
class PreferenceTally:
    """One compared prompt in a preference search: its results and its learned utility."""

    candidate: str
    wins: int
    losses: int
    ties: int
    utility: float | None
    """The utility model's last prediction (None when the last step did not record one)."""


@dataclass(frozen=True)
class Preferences:
    """What a preference search asked and learned, from events.jsonl."""

    source: str
    """Who answered: "metric", "judge" or "human" (several, comma-separated)."""
    asked: int
    skipped: int
    tallies: tuple[PreferenceTally, ...]
    """Compared prompts, highest utility first."""
    recent: tuple[EventRecord, ...]
    """The last comparisons, oldest first."""


def preferences(events: Sequence[EventRecord], recent: int = 10) -> Preferences | None:
    """The comparisons of a preference search with each prompt's tally and learned utility;
    None for a run that asked for no preference."""
    asked = [e for e in events if e.event == "comparison"]
    if not asked:
        return None
    extra = [e.model_extra or {} for e in asked]
    tally: dict[str, list[int]] = {}
    for x in extra:
        if x.get("skipped"):
            continue
        first, second, choice = str(x.get("first")), str(x.get("second")), x.get("choice")
        a, b = tally.setdefault(first, [0, 0, 0]), tally.setdefault(second, [0, 0, 0])
        if choice == "first":
            a[0], b[1] = a[0] + 1, b[1] + 1
        elif choice == "second":
            a[1], b[0] = a[1] + 1, b[0] + 1
        else:
            a[2], b[2] = a[2] + 1, b[2] + 1
    utility: dict[str, float] = {}
    for e in events:
        if e.event == "step" and e.detail and isinstance(e.detail.get("utility"), dict):
            utility = {str(k): float(v) for k, v in e.detail["utility"].items()}
    tallies = sorted(
        (PreferenceTally(cid, w, lo, t, utility.get(cid)) for cid, (w, lo, t) in tally.items()),
        key=lambda r: (-(r.utility if r.utility is not None else float("-inf")), r.candidate),
    )
    return Preferences(
        source=", ".join(sorted({str(x.get("source")) for x in extra})),
        asked=len(asked),
        skipped=sum(1 for x in extra if x.get("skipped")),
        tallies=tuple(tallies),
        recent=tuple(asked[-recent:]),
    )


@dataclass(frozen=True)
class RunReport:
    """Everything a run report shows, read from a finished or interrupted run folder."""

    path: str
    summary: SummaryRecord | None
    config: ConfigRecord | None
    trajectory: tuple[TrajectoryPoint, ...]
    lineage: tuple[CandidateRecord, ...]
    test_diff: DiffReport | None
    rejected: Mapping[str, int]
    preferences: Preferences | None = None
    best_demos: tuple[Demo, ...] = ()
    """The few-shot demonstrations sent with the best prompt (best_demos.json), in order."""


def _demos(records: Sequence[DemoRecord]) -> tuple[Demo, ...]:
    return tuple(Demo(r.id, r.input, r.output) for r in records)


def best_demos(folder: RunFolder, best_id: str | None) -> tuple[Demo, ...]:
    """best_demos.json's demonstrations when they go with `best_id` (any, when it is None).

    The file is written with the best prompt, so one of another candidate is stale (an
    interrupted run can be a step behind its summary), and reports and diffs leave it out.
    """
    record = folder.best_demos()
    if record is None or (best_id is not None and record.id not in (None, best_id)):
        return ()
    return _demos(record.demos)


def build_run_report(folder: RunFolder) -> RunReport:
    """Read a run folder into a `RunReport`.

    Args:
        folder: A run folder, finished, interrupted, or without a first step yet.

    Returns:
        The run's records and what follows from them.

    Raises:
        UsageError: A record is damaged; the message names the file and the field.
    """
    summary, config, events = folder.summary(), folder.config(), folder.events()
    best_id = summary.best_id if summary is not None and summary.best_id is not None else ""
    return RunReport(
        path=str(folder.path),
        summary=summary,
        config=config,
        trajectory=tuple(trajectory(events)),
        lineage=tuple(lineage(folder.candidates(), best_id)),
        test_diff=diff_from_final_eval(folder, "test"),
        # The events say it for every run; summary.json carries the same counts.
        rejected=rejected_counts(events) or dict((summary.rejected if summary else None) or {}),
        preferences=preferences(events),
        best_demos=best_demos(folder, best_id),
    )


# ---------------------------------------------------------------------------------------------
# initial vs best, from final_eval.json


def _models_of(config: ConfigRecord | None, summary: SummaryRecord | None) -> dict[str, ModelUsed]:
    if config is None:
        return {}
    out: dict[str, ModelUsed] = {}
    for role in config.models:
        model = config.model_id(role)
        if model is None:
            continue
        used = summary.model_of(role) if summary is not None else None
        out[role] = ModelUsed(model=model, reported=list(used.reported) if used else [])
    return out


def _latency_only(values: Sequence[float | None]) -> SideUsage:
    known = [v for v in values if v is not None]
    if not values or len(known) != len(values):
        return SideUsage()
    return SideUsage(mean_latency_s=sum(known) / len(known))


def diff_from_final_eval(folder: RunFolder, split: str = "test") -> DiffReport | None:
    """The initial prompt against the best one on `split`, as the run's final evaluation scored
    them.

    Args:
        folder: The run folder.
        split: dev or test.

    Returns:
        The diff report, or None when the run has no final evaluation on `split` (interrupted,
        or out of budget).
    """
    final = folder.final_eval()
    if final is None or split not in final.examples:
        return None
    summary, config = folder.summary(), folder.config()
    old_rows = {r.id: r for r in final.initial.split(split)}
    new_rows = {r.id: r for r in final.best.split(split)}
    outcomes = [
        ExampleOutcome(
            id=ex.id,
            input=ex.input,
            expected=tuple(ex.targets),
            old_output=old_rows[ex.id].output,
            new_output=new_rows[ex.id].output,
            old_score=old_rows[ex.id].score,
            new_score=new_rows[ex.id].score,
            old_error=old_rows[ex.id].error,
            new_error=new_rows[ex.id].error,
            old_latency_s=old_rows[ex.id].latency_s,
            new_latency_s=new_rows[ex.id].latency_s,
        )
        for ex in final.examples[split]
        if ex.id in old_rows and ex.id in new_rows
    ]
    if not outcomes:
        return None
    if summary is not None:
        task, seed = summary.task, summary.seed
    else:
        task = (config.task_name if config is not None else None) or "?"
        seed = config.settings.seed if config is not None else 0
    # final_eval.json written before the initial side carried its id had only c0000 there.
    initial_id = final.initial.id if "id" in final.initial.model_fields_set else "c0000"
    version = config.promptopt_version if config is not None else None
    provenance = Provenance(
        task=task,
        task_hash=config.task_hash if config is not None else "",
        data_hash=config.data_hash if config is not None else "",
        split=split,
        seed=seed,
        models=_models_of(config, summary),
        old_label=f"initial ({initial_id})",
        new_label=f"best ({final.best.id})",
        old_source=str(folder.path),
        new_source=str(folder.path),
        promptopt_version=version or __version__,
    )
    if summary is not None:
        old_prompt, new_prompt = summary.initial_prompt, summary.best_prompt
    else:
        old_prompt, new_prompt = (config.task_prompt if config is not None else None) or "", ""
    return build_diff(
        provenance,
        old_prompt,
        new_prompt,
        outcomes,
        old_usage=_latency_only([o.old_latency_s for o in outcomes]),
        new_usage=_latency_only([o.new_latency_s for o in outcomes]),
        metric_name=(config.metric_type if config is not None else None) or "score",
        old_demos=_demos(folder.initial_demos()),
        new_demos=best_demos(folder, final.best.id),
    )
