"""The view model of every report: what the terminal, Markdown and HTML renderers show.

A `DiffView` (from a `DiffReport`) and a `RunView` (from a run folder) hold every figure, sentence
and table row already formatted, so the three formats show the same numbers and words; a renderer
only lays them out and escapes them for its format.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Literal

from promptopt.reporting.diff import DiffReport, Segment, SideUsage
from promptopt.reporting.history import HistoryReport, Step
from promptopt.reporting.run_files import (
    Preferences,
    RunReport,
    TrajectoryPoint,
    build_run_report,
)
from promptopt.run.folder import RunFolder
from promptopt.run.records import (
    CandidateRecord,
    ConfigRecord,
    PreferenceEvalRecord,
    SummaryRecord,
)
from promptopt.scoring.stats import Comparison
from promptopt.task.prompt import Demo

SECTION_PROVENANCE = "Provenance"
SECTION_PROMPT = "Prompt changes"
SECTION_SCORE = "Score"
SECTION_FLIPS = "Flips"
SECTION_USAGE = "Tokens, cost and latency"
SECTION_SCORES = "Scores"
SECTION_TRAJECTORY = "Score trajectory"
SECTION_BEST_PROMPT = "Best prompt"
SECTION_LINEAGE = "How the best prompt was found"
SECTION_TEST_DIFF = "Initial vs best on test"
SECTION_RUN_USAGE = "Usage"
SECTION_REJECTED = "Rejected proposals"
SECTION_PREFERENCES = "Preferences"
SECTION_REVISIONS = "Revisions"
SECTION_STEPS = "Changes between revisions"
SECTION_BASELINE = "Newest against the baseline"

# The feedback a strategy records on a candidate that a report shows, in this order.
NOTE_KEYS = ("errors", "gradient", "edit")


# ---------------------------------------------------------------------------------------------
# formatting shared by every renderer


def score_text(x: float | None) -> str:
    """A score with three decimals, or "-" when there is none."""
    return "-" if x is None else f"{x:.3f}"


def shorten(text: str, limit: int) -> str:
    """`text` cut to at most `limit` characters, an ellipsis marking the cut."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _cost(x: float | None, measured: bool = True) -> str:
    """A cost in dollars; one that was measured without a known price reads "unknown"."""
    if x is None:
        return "unknown" if measured else "-"
    return f"${x:.4f}"


def _money_delta(x: float | None) -> str:
    return "-" if x is None else f"{'-' if x < 0 else '+'}${abs(x):.4f}"


def _signed(x: float | None, fmt: str = "{:+.3f}") -> str:
    return "-" if x is None else fmt.format(x)


def _count(x: float | None) -> str:
    return "-" if x is None else f"{int(x)}"


def _seconds(x: float | None) -> str:
    return "-" if x is None else f"{x:.3f} s"


# ---------------------------------------------------------------------------------------------
# diff reports


@dataclass(frozen=True)
class ProvenanceRow:
    """One row of the provenance table."""

    field: str
    value: str


@dataclass(frozen=True)
class ScoreRow:
    """One row of the score table: a prompt's mean, or (`total`) the paired difference."""

    label: str
    value: str
    ci: str
    total: bool = False


@dataclass(frozen=True)
class FlipRow:
    """An example whose score changed, its scores with two decimals."""

    kind: str
    old_score: str
    new_score: str
    id: str
    input: str
    expected: str
    old_output: str
    new_output: str
    old_error: str | None = None
    new_error: str | None = None

    @property
    def old_shown(self) -> str:
        """The old output with its error, for formats that show both as one text."""
        return self.old_output + (f" (error: {self.old_error})" if self.old_error else "")

    @property
    def new_shown(self) -> str:
        """The new output with its error, for formats that show both as one text."""
        return self.new_output + (f" (error: {self.new_error})" if self.new_error else "")


@dataclass(frozen=True)
class UsageRow:
    """One quantity of the tokens, cost and latency table: old, new and new - old."""

    quantity: str
    old: str
    new: str
    delta: str


@dataclass(frozen=True)
class DiffView:
    """A diff report as every format shows it."""

    task: str
    verdict: str
    verdict_sentence: str
    provenance: tuple[ProvenanceRow, ...]
    segments: tuple[Segment, ...]
    old_prompt: str
    new_prompt: str
    metric_name: str
    scores: tuple[ScoreRow, ...]
    changed_test: str | None
    counts: str
    flips: tuple[FlipRow, ...]
    usage: tuple[UsageRow, ...]
    usage_known: bool
    flips_omitted: int = 0
    demos_note: str | None = None
    """What each side sends besides its system prompt; None when neither sends demonstrations."""
    demos: tuple[DemoRow, ...] = ()
    """Each side's demonstrations (once, as "both", when they are the same)."""

    @classmethod
    def of(cls, report: DiffReport) -> DiffView:
        """The view of a diff report.

        Args:
            report: Two prompts scored on the same examples.

        Returns:
            Every figure and row of the report, formatted.
        """
        p = report.provenance
        scores = []
        for side, label in (("old", p.old_label), ("new", p.new_label)):
            mean, lo, hi = report.mean_ci(side)  # type: ignore[arg-type]
            scores.append(ScoreRow(f"{side}: {label}", f"{mean:.3f}", f"[{lo:.3f}, {hi:.3f}]"))
        paired = report.comparison.paired
        scores.append(
            ScoreRow(
                "new - old",
                f"{paired.delta:+.3f}",
                f"[{paired.ci_low:+.3f}, {paired.ci_high:+.3f}]",
                total=True,
            )
        )
        counts = report.counts()
        return cls(
            task=p.task,
            verdict=report.verdict,
            verdict_sentence=_verdict_sentence(report),
            provenance=_provenance_rows(report),
            segments=report.segments,
            old_prompt=report.old_prompt,
            new_prompt=report.new_prompt,
            metric_name=report.metric_name,
            scores=tuple(scores),
            changed_test=_second_test(report.comparison),
            counts=f"{counts['regressions']} regressions, {counts['improvements']} improvements, "
            f"{counts['unchanged']} unchanged",
            flips=tuple(
                FlipRow(
                    kind=o.kind,
                    old_score=f"{o.old_score:.2f}",
                    new_score=f"{o.new_score:.2f}",
                    id=o.id,
                    input=o.input,
                    expected=" / ".join(o.expected),
                    old_output=o.old_output,
                    new_output=o.new_output,
                    old_error=o.old_error or None,
                    new_error=o.new_error or None,
                )
                for o in report.flips
            ),
            usage=_usage_rows(report),
            usage_known=_usage_is_known(report.old_usage) or _usage_is_known(report.new_usage),
            demos_note=_diff_demos_note(report.old_demos, report.new_demos),
            demos=_diff_demo_rows(report.old_demos, report.new_demos),
        )

    @property
    def title(self) -> str:
        """The report's heading."""
        return f"Prompt diff: {self.task}"

    @property
    def verdict_class(self) -> Literal["improved", "regressed", "same"]:
        """The verdict as a style name: improved, regressed, or same."""
        if self.verdict == "improved":
            return "improved"
        if self.verdict == "regressed":
            return "regressed"
        return "same"

    @property
    def word_diff_text(self) -> str:
        """The word diff with git-style markers: [-deleted-] and {+inserted+}."""
        parts = []
        for seg in self.segments:
            if seg.op == "delete":
                parts.append(f"[-{seg.text}-]")
            elif seg.op == "insert":
                parts.append(f"{{+{seg.text}+}}")
            else:
                parts.append(seg.text)
        return "".join(parts)

    def limited(self, max_flips: int) -> DiffView:
        """The same view listing only the first `max_flips` flips (and how many it leaves out).

        Args:
            max_flips: How many flips to keep, regressions first as always.

        Returns:
            This view when it has no more flips than that.
        """
        if len(self.flips) <= max_flips:
            return self
        return replace(
            self,
            flips=self.flips[:max_flips],
            flips_omitted=self.flips_omitted + len(self.flips) - max_flips,
        )


def _verdict_sentence(report: DiffReport) -> str:
    paired = report.comparison.paired
    text = (
        f"new - old = {paired.delta:+.3f} on {report.provenance.split} "
        f"(n = {report.n}; paired bootstrap {paired.confidence:.0%} CI "
        f"[{paired.ci_low:+.3f}, {paired.ci_high:+.3f}]"
    )
    text += _changed_clause(report.comparison) + ")"
    old_errors = sum(1 for o in report.outcomes if o.old_error)
    new_errors = sum(1 for o in report.outcomes if o.new_error)
    if old_errors or new_errors:
        # Every format shows the verdict: errors pull scores to 0, so they are said next to it.
        text += (
            f"; errors (scored 0): {old_errors} example(s) of the old prompt, {new_errors} of "
            "the new"
        )
    return text


def _provenance_rows(report: DiffReport) -> tuple[ProvenanceRow, ...]:
    p = report.provenance
    rows = [
        ProvenanceRow("task", p.task),
        ProvenanceRow("task hash", p.task_hash[:16]),
        ProvenanceRow("data hash", p.data_hash[:16]),
        ProvenanceRow("split", f"{p.split} ({report.n} examples)"),
        ProvenanceRow("seed", str(p.seed)),
        ProvenanceRow("promptopt", p.promptopt_version),
        ProvenanceRow("old", f"{p.old_label} ({p.old_source})"),
        ProvenanceRow("new", f"{p.new_label} ({p.new_source})"),
    ]
    for side, commit in (("old", p.old_commit), ("new", p.new_commit)):
        if commit is not None:
            rows.append(
                ProvenanceRow(
                    f"{side} commit",
                    f"{commit.hash} ({commit.date}, {commit.author}): {commit.subject}",
                )
            )
    for role, info in p.models.items():
        reported = ", ".join(info.reported) or "not reported"
        rows.append(ProvenanceRow(f"{role} model", f"{info.model} (API reported: {reported})"))
    rows += [ProvenanceRow("forced despite", problem) for problem in p.mismatches]
    return tuple(rows)


def _usage_rows(report: DiffReport) -> tuple[UsageRow, ...]:
    o, n, d = report.old_usage, report.new_usage, report.usage_delta()
    return (
        UsageRow(
            "input tokens",
            _count(o.input_tokens),
            _count(n.input_tokens),
            _signed(d["input_tokens"], "{:+.0f}"),
        ),
        UsageRow(
            "output tokens",
            _count(o.output_tokens),
            _count(n.output_tokens),
            _signed(d["output_tokens"], "{:+.0f}"),
        ),
        UsageRow(
            "cost",
            _cost(o.cost_usd, o.input_tokens is not None),
            _cost(n.cost_usd, n.input_tokens is not None),
            _money_delta(d["cost_usd"]),
        ),
        UsageRow(
            "mean latency",
            _seconds(o.mean_latency_s),
            _seconds(n.mean_latency_s),
            _signed(d["mean_latency_s"], "{:+.3f} s"),
        ),
    )


def _usage_is_known(usage: SideUsage) -> bool:
    return any(
        v is not None
        for v in (usage.input_tokens, usage.output_tokens, usage.cost_usd, usage.mean_latency_s)
    )


# ---------------------------------------------------------------------------------------------
# run reports


@dataclass(frozen=True)
class RunScoreRow:
    """One prompt of the run's score table; `candidate` is the best prompt's id."""

    label: str
    candidate: str | None
    dev: str
    test: str


@dataclass(frozen=True)
class TestComparison:
    """Best against initial on held-out test, as the run's summary states it."""

    __test__ = False  # not a pytest test class, whatever its name

    sentence: str
    verdict: str


@dataclass(frozen=True)
class TrajectoryRow:
    """One step of the trajectory table."""

    step: str
    name: str
    best_score: str
    target_calls: str
    optimizer_calls: str
    cost: str


@dataclass(frozen=True)
class LineageNote:
    """What the optimizer recorded on how it made a candidate (errors, gradient, edit)."""

    key: str
    text: str


@dataclass(frozen=True)
class LineageEntry:
    """One candidate of the chain from the initial prompt to the best one."""

    number: int
    id: str
    operator: str
    step: str
    dev: str
    train: str
    gain: str | None
    notes: tuple[LineageNote, ...]
    text: str


@dataclass(frozen=True)
class DemoRow:
    """One few-shot demonstration of a prompt, in the order it is sent."""

    number: int
    id: str
    input: str
    output: str
    side: str = ""
    """In a diff: old, new, or both (the same demonstrations on both sides)."""


@dataclass(frozen=True)
class RunUsageRow:
    """Usage and cost of one model role; `model` names what the API reported as well."""

    role: str
    model: str
    requests: str
    cache_hits: str
    input_tokens: str
    output_tokens: str
    cost: str


def trajectory_rows(points: Sequence[TrajectoryPoint]) -> list[TrajectoryPoint]:
    """The steps worth a table row: the first, each one that changed the best score, the last.

    Args:
        points: Every step of the run, in order.

    Returns:
        The selected points, in order.
    """
    rows: list[TrajectoryPoint] = []
    for i, point in enumerate(points):
        if i == 0 or i == len(points) - 1 or point.best_score != points[i - 1].best_score:
            rows.append(point)
    return rows


def _lineage(chain: tuple[CandidateRecord, ...]) -> tuple[LineageEntry, ...]:
    entries: list[LineageEntry] = []
    previous: float | None = None
    for i, record in enumerate(chain):
        dev, train = record.score("dev"), record.score("train")
        notes = tuple(
            LineageNote(key, text) for key in NOTE_KEYS if (text := record.note(key)) is not None
        )
        entries.append(
            LineageEntry(
                number=i + 1,
                id=record.id,
                operator=record.operator,
                step=str(record.step),
                dev=score_text(dev),
                train=score_text(train),
                gain=None if dev is None or previous is None else f"{dev - previous:+.3f}",
                notes=notes,
                text=record.text,
            )
        )
        if dev is not None:
            previous = dev
    return tuple(entries)


def _trajectory_rows(points: Sequence[TrajectoryPoint]) -> tuple[TrajectoryRow, ...]:
    return tuple(
        TrajectoryRow(
            step=str(t.step),
            name=t.name,
            best_score=score_text(t.best_score),
            target_calls=str(t.target_calls),
            optimizer_calls=str(t.optimizer_calls),
            cost=_cost(t.cost_usd),
        )
        for t in trajectory_rows(points)
    )


def _test_comparison(
    summary: SummaryRecord, recomputed: DiffReport | None
) -> TestComparison | None:
    c = summary.test_comparison
    if c is None:
        return None
    n = summary.n["test"] if summary.n is not None and "test" in summary.n else None
    lo, hi = c.ci95
    clause = "" if c.mcnemar_p is None else f"; exact McNemar p = {c.mcnemar_p:.4g}"
    if c.sign_p is not None:
        clause = f"; exact sign test p = {c.sign_p:.4g}"
    verdict = c.verdict
    if c.mcnemar_p is None and c.sign_p is None and recomputed is not None and recomputed.n == n:
        # A graded metric's run from before the sign test: its stored verdict rests on the
        # bootstrap alone, while the report's own comparison of final_eval.json (of the same
        # examples) has both.
        verdict = recomputed.verdict
        if recomputed.comparison.sign is not None:
            clause = f"; exact sign test p = {recomputed.comparison.sign.p_value:.4g}"
        if verdict != c.verdict:
            clause += f"; summary.json, written before the sign test, says {c.verdict}"
    return TestComparison(
        sentence=f"On held-out test (n = {n}), best - initial = {c.delta:+.3f} "
        f"(paired bootstrap 95% CI [{lo:+.3f}, {hi:+.3f}]{clause})",
        verdict=verdict_with_errors(verdict, summary.test_errors),
    )


def verdict_with_errors(verdict: str, test_errors: int | None) -> str:
    """The test verdict as reports and the terminal show it: a significant change that failed
    examples (each scored 0) could have made says so beside it, as `run --write-if-better`
    refuses to act on it."""
    if not test_errors or verdict == "no significant change":
        return verdict
    return (
        f"{verdict}, but {test_errors} test example(s) failed and were scored 0, so errors, "
        "not the prompts, may have decided it"
    )


def preference_sentence(record: PreferenceEvalRecord, split: str) -> str:
    """What a judged comparison of best and initial found on `split`, in one sentence."""
    by = "the judge (asked in both orders)" if record.source == "judge" else record.source
    lo, hi = record.ci95
    return (
        f"On held-out {split} (n = {record.n}, preferred by {by}), the best prompt's answer won "
        f"{record.wins}, lost {record.losses} and tied {record.ties}: win rate "
        f"{record.win_rate:.2f} (bootstrap 95% CI [{lo:.2f}, {hi:.2f}]; sign test "
        f"p = {record.sign_p:.4g})"
    )


def _preference(record: PreferenceEvalRecord | None, split: str) -> TestComparison | None:
    if record is None:
        return None
    return TestComparison(sentence=preference_sentence(record, split), verdict=record.verdict)


def _run_usage(summary: SummaryRecord, config: ConfigRecord | None) -> tuple[RunUsageRow, ...]:
    rows = []
    for role, used in summary.usage.items():
        info = summary.model_of(role)
        model = (info.model if info is not None else "") or (
            (config.model_id(role) if config is not None else None) or "?"
        )
        reported = ", ".join(info.reported) if info is not None else ""
        rows.append(
            RunUsageRow(
                role=role,
                model=model + (f" ({reported})" if reported else ""),
                requests=str(used.requests),
                cache_hits=str(used.cache_hits),
                input_tokens=tokens_in(
                    used.input_tokens, used.cache_read_tokens, used.cache_write_tokens
                ),
                output_tokens=str(used.output_tokens),
                cost=_cost(used.cost_usd),
            )
        )
    return tuple(rows)


def tokens_in(total: int, cache_read: int, cache_write: int) -> str:
    """Input tokens, with the part a provider's prompt cache read or wrote (priced apart) when
    there is one: "5200 (4096 cache read, 0 written)"."""
    if not (cache_read or cache_write):
        return str(total)
    return f"{total} ({cache_read} cache read, {cache_write} written)"


def _count_demos(demos: Sequence[Demo]) -> str:
    if not demos:
        return "no demonstrations"
    return f"{len(demos)} demonstration{'s' if len(demos) != 1 else ''}"


def _diff_demos_note(old: Sequence[Demo], new: Sequence[Demo]) -> str | None:
    """What the two sides of a diff send besides their system prompts."""
    if not old and not new:
        return None
    if tuple(old) == tuple(new):
        return (
            f"Both prompts are sent with the same {_count_demos(old)}, as user and assistant "
            "turns before the input."
        )
    return (
        f"Few-shot demonstrations, sent as user and assistant turns before the input: the old "
        f"prompt has {_count_demos(old)}, the new one {_count_demos(new)}."
    )


def _diff_demo_rows(old: Sequence[Demo], new: Sequence[Demo]) -> tuple[DemoRow, ...]:
    if tuple(old) == tuple(new):
        sides: tuple[tuple[str, Sequence[Demo]], ...] = (("both", old),)
    else:
        sides = (("old", old), ("new", new))
    return tuple(
        DemoRow(i, d.id, d.input, d.output, side)
        for side, demos in sides
        for i, d in enumerate(demos, 1)
    )


def _demo_rows(ids: Sequence[str] | None, demos: Sequence[Demo]) -> tuple[DemoRow, ...]:
    """The best prompt's demonstrations as best_demos.json holds them, when they are the ones
    the summary names."""
    if not ids or [d.id for d in demos] != list(ids):
        return ()
    return tuple(DemoRow(i, d.id, d.input, d.output) for i, d in enumerate(demos, 1))


def _demos_note(ids: Sequence[str] | None, initial: Sequence[str] | None = None) -> str | None:
    """What the report says about the best prompt's demonstrations (None: none searched), and
    the initial prompt's own (`run --demos-file`) when it had any."""
    if ids is None:
        return None
    if not ids:
        return "No few-shot demonstrations: they did not help on the same training examples."
    note = (
        f"Sent with {len(ids)} few-shot demonstrations before the input (best_demos.json): "
        + ", ".join(ids)
        + "."
    )
    if initial and list(initial) == list(ids):
        return note + " They are the initial prompt's own (--demos-file)."
    if initial:
        note += (
            f" The initial prompt was sent with {len(initial)} of its own (--demos-file): "
            + ", ".join(initial)
            + "."
        )
    return note


def errors_note(summary: SummaryRecord) -> str | None:
    """Every failure a run counted, in one line ("target: 250 failed requests; metric: 3
    examples"); None when there was none. Reports and the terminal summary always show it, so
    that no score that errors pulled down passes for a result."""
    parts = [
        f"{role}: {used.errors} failed request{'s' if used.errors != 1 else ''}"
        for role, used in summary.usage.items()
        if used.errors
    ]
    if summary.metric_errors:
        parts.append(f"metric: {summary.metric_errors} example(s) where it failed")
    if summary.dev_errors:
        parts.append(f"final dev evaluation: {summary.dev_errors} failed example(s)")
    if summary.test_errors:
        parts.append(f"final test evaluation: {summary.test_errors} failed example(s)")
    if not parts:
        return None
    return "; ".join(parts) + " (each scored 0)"


def _rejected(counts: Mapping[str, int]) -> str | None:
    """How many proposals were rejected, and why: "7 (degenerate: 2, truncated: 5)"."""
    if not counts:
        return None
    reasons = ", ".join(f"{reason}: {n}" for reason, n in counts.items())
    return f"{sum(counts.values())} ({reasons})"


@dataclass(frozen=True)
class PreferenceRow:
    """One compared prompt: its learned utility and its record."""

    candidate: str
    utility: str
    wins: int
    losses: int
    ties: int


@dataclass(frozen=True)
class ComparisonRow:
    """One preference question and its answer."""

    step: str
    first: str
    second: str
    example: str
    choice: str
    why: str


@dataclass(frozen=True)
class PreferenceView:
    """A preference search's comparisons and what the utility model learned from them."""

    sentence: str
    rows: tuple[PreferenceRow, ...]
    recent: tuple[ComparisonRow, ...]

    @classmethod
    def of(cls, prefs: Preferences) -> PreferenceView:
        """The view of the comparisons read from events.jsonl."""
        skipped = f", {prefs.skipped} skipped" if prefs.skipped else ""
        sentence = (
            f"{prefs.asked} comparisons answered by {prefs.source}{skipped}. Each compared "
            "prompt, by the utility the model learned from them (highest first):"
        )
        rows = tuple(
            PreferenceRow(
                t.candidate,
                "-" if t.utility is None else f"{t.utility:+.3f}",
                t.wins,
                t.losses,
                t.ties,
            )
            for t in prefs.tallies
        )
        recent = []
        for e in prefs.recent:
            x = e.model_extra or {}
            choice = "skipped" if x.get("skipped") else str(x.get("choice", "?"))
            recent.append(
                ComparisonRow(
                    str(e.step),
                    str(x.get("first", "?")),
                    str(x.get("second", "?")),
                    str(x.get("example", "?")),
                    choice,
                    str(x.get("why") or ""),
                )
            )
        return cls(sentence, rows, tuple(recent))


@dataclass(frozen=True)
class RunView:
    """A finished or interrupted run as every format shows it."""

    path: str
    task: str
    strategy: str
    seed: str
    status: str
    stop_reason: str | None
    steps: str
    candidates: str
    wall_time: str
    scores: tuple[RunScoreRow, ...]
    test_comparison: TestComparison | None
    points: tuple[TrajectoryPoint, ...]
    trajectory: tuple[TrajectoryRow, ...]
    best_prompt: str
    lineage: tuple[LineageEntry, ...]
    test_diff: DiffView | None
    usage: tuple[RunUsageRow, ...]
    rejected: str | None
    best_demos: str | None = None
    """The best prompt's few-shot demonstrations, by training-example id; None when the run
    searched none."""
    best_demo_rows: tuple[DemoRow, ...] = ()
    """The same demonstrations with what they show the target (its input and answer)."""
    preferences: PreferenceView | None = None
    """A preference search's comparisons and learned utilities; None for other strategies."""
    errors: str | None = None
    """The failures the run counted (`errors_note`); None when there were none."""
    test_preference: TestComparison | None = None
    """Best against initial on test, judged pairwise (a search that asked for preferences)."""
    dev_preference: TestComparison | None = None
    """The same on dev, where it chose the best prompt of a task without a metric."""

    @classmethod
    def from_folder(cls, folder: RunFolder) -> RunView:
        """The view of a run folder.

        Args:
            folder: A run folder, finished, interrupted, or without a first step yet.

        Returns:
            Everything its report shows.

        Raises:
            UsageError: A record is damaged; the message names the file and the field.
        """
        return cls.of(build_run_report(folder))

    @classmethod
    def of(cls, report: RunReport) -> RunView:
        """The view of what `build_run_report` read from a run folder.

        Args:
            report: The run's records.

        Returns:
            Everything its report shows.
        """
        summary, config = report.summary, report.config
        if summary is not None and summary.task:
            task = summary.task
        else:
            task = (config.task_name if config is not None else None) or "?"
        if summary is None:
            # Before its first checkpoint a run has no summary: its report has said "None" for
            # what a summary holds, and still does.
            return cls(
                path=report.path,
                task=task,
                strategy="None",
                seed="None",
                status="not started",
                stop_reason=None,
                steps="None",
                candidates="None",
                wall_time=f"{0.0:.1f} s",
                scores=(
                    RunScoreRow("initial", None, score_text(None), score_text(None)),
                    RunScoreRow("best", "None", score_text(None), score_text(None)),
                ),
                test_comparison=None,
                points=report.trajectory,
                trajectory=_trajectory_rows(report.trajectory),
                best_prompt="",
                lineage=_lineage(report.lineage),
                test_diff=None if report.test_diff is None else DiffView.of(report.test_diff),
                usage=(),
                rejected=_rejected(report.rejected),
            )
        initial, best = summary.scores.initial, summary.scores.best
        return cls(
            path=report.path,
            task=task,
            strategy=summary.strategy,
            seed=str(summary.seed),
            status=summary.status or "not started",
            stop_reason=summary.stop_reason,
            steps=str(summary.steps),
            candidates=str(summary.candidates),
            wall_time=f"{summary.wall_s:.1f} s",
            scores=(
                RunScoreRow("initial", None, score_text(initial.dev), score_text(initial.test)),
                RunScoreRow(
                    "best", str(summary.best_id), score_text(best.dev), score_text(best.test)
                ),
            ),
            test_comparison=_test_comparison(summary, report.test_diff),
            points=report.trajectory,
            trajectory=_trajectory_rows(report.trajectory),
            best_prompt=summary.best_prompt.strip(),
            lineage=_lineage(report.lineage),
            test_diff=None if report.test_diff is None else DiffView.of(report.test_diff),
            usage=_run_usage(summary, config),
            rejected=_rejected(report.rejected),
            best_demos=_demos_note(summary.best_demos, summary.initial_demos),
            best_demo_rows=_demo_rows(summary.best_demos, report.best_demos),
            preferences=None
            if report.preferences is None
            else PreferenceView.of(report.preferences),
            errors=errors_note(summary),
            test_preference=_preference(summary.test_preference, "test"),
            dev_preference=_preference(summary.dev_preference, "dev"),
        )

    @property
    def title(self) -> str:
        """The report's heading."""
        return f"promptopt run: {self.task}"

    @property
    def stop_note(self) -> str:
        """Why the run stopped, when it stopped early; "" otherwise."""
        if self.stop_reason in (None, "finished"):
            return ""
        return f" (stopped: {self.stop_reason})"

    @property
    def finished(self) -> bool:
        """Whether the run got to its end."""
        return self.status == "finished"

    @property
    def best_is_initial(self) -> bool:
        """Whether the search kept the initial prompt (then there is no lineage to show)."""
        return not self.lineage or self.lineage[-1].operator == "initial"

    def limited(self, max_flips: int) -> RunView:
        """The same view whose test diff lists at most `max_flips` flips."""
        if self.test_diff is None:
            return self
        return replace(self, test_diff=self.test_diff.limited(max_flips))


# ---------------------------------------------------------------------------------------------
# history reports


def _step_ci(step: Step) -> str:
    paired = step.comparison.paired
    return f"[{paired.ci_low:+.3f}, {paired.ci_high:+.3f}]"


def _changed_p(step: Step) -> str:
    """The p-value of the step's test on changed examples (McNemar's, or the sign test's)."""
    test = step.comparison.mcnemar or step.comparison.sign
    return "-" if test is None else f"{test.p_value:.2g}"


def _second_test(comparison: Comparison) -> str | None:
    """The sentence on the test of the changed examples, beside the bootstrap interval."""
    if comparison.mcnemar is not None:
        m = comparison.mcnemar
        return (
            f"Exact McNemar test on the flips: {m.b} regressions, {m.c} improvements, "
            f"p = {m.p_value:.4g}"
        )
    if comparison.sign is not None:
        s = comparison.sign
        return (
            f"Exact sign test on the changed examples: {s.worse} scored lower, {s.better} "
            f"higher, p = {s.p_value:.4g}"
        )
    return None


@dataclass(frozen=True)
class RevisionRow:
    """One revision of the history table, with the change from the revision before it."""

    number: int
    commit: str
    hash: str
    date: str
    author: str
    subject: str
    score: str
    ci: str
    delta: str
    delta_ci: str
    mcnemar_p: str
    verdict: str
    mark: Literal["improved", "regressed", "same", "first"]
    best: bool
    mean: float
    ci_low: float
    ci_high: float


@dataclass(frozen=True)
class StepView:
    """One revision against the one before it: the word diff and the statistics."""

    title: str
    verdict: str
    mark: Literal["improved", "regressed", "same"]
    sentence: str
    segments: tuple[Segment, ...]

    @property
    def word_diff_text(self) -> str:
        """The word diff with git-style markers: [-deleted-] and {+inserted+}."""
        return _marked(self.segments)


def _marked(segments: Sequence[Segment]) -> str:
    parts = []
    for seg in segments:
        if seg.op == "delete":
            parts.append(f"[-{seg.text}-]")
        elif seg.op == "insert":
            parts.append(f"{{+{seg.text}+}}")
        else:
            parts.append(seg.text)
    return "".join(parts)


def _mark(verdict: str) -> Literal["improved", "regressed", "same"]:
    if verdict == "improved":
        return "improved"
    if verdict == "regressed":
        return "regressed"
    return "same"


def _step_sentence(step: Step, split: str, n: int) -> str:
    paired = step.comparison.paired
    text = (
        f"{step.new.commit.short} - {step.old.commit.short} = {paired.delta:+.3f} on {split} "
        f"(n = {n}; paired bootstrap {paired.confidence:.0%} CI "
        f"[{paired.ci_low:+.3f}, {paired.ci_high:+.3f}]"
    )
    return text + _changed_clause(step.comparison) + ")"


def _changed_clause(comparison: Comparison) -> str:
    """The clause on the test of the changed examples (McNemar's, or the sign test's)."""
    if comparison.mcnemar is not None:
        m = comparison.mcnemar
        return f"; exact McNemar p = {m.p_value:.4g} on {m.b} regressions and {m.c} improvements"
    if comparison.sign is not None:
        s = comparison.sign
        return (
            f"; exact sign test p = {s.p_value:.4g} on {s.worse} lower and {s.better} higher scores"
        )
    return ""


def _step_view(step: Step, split: str, n: int) -> StepView:
    return StepView(
        title=f"{step.old.commit.short} → {step.new.commit.short}: {step.new.commit.subject}",
        verdict=step.verdict,
        mark=_mark(step.verdict),
        sentence=_step_sentence(step, split, n),
        segments=step.segments,
    )


@dataclass(frozen=True)
class HistoryView:
    """A history report as every format shows it."""

    task: str
    file: str
    metric_name: str
    provenance: tuple[ProvenanceRow, ...]
    rows: tuple[RevisionRow, ...]
    steps: tuple[StepView, ...]
    summary: tuple[str, ...]
    """Sentences: the best revision, the significant improvements and regressions, the gate."""
    newest_regressed: bool
    baseline: StepView | None = None

    @classmethod
    def of(cls, report: HistoryReport) -> HistoryView:
        """The view of a history report.

        Args:
            report: The revisions of a prompt file, scored on the same examples.

        Returns:
            Every figure and row of the report, formatted.
        """
        p = report.provenance
        best = report.best
        by_new = {s.new.commit.hash: s for s in report.steps}
        rows = []
        for i, rev in enumerate(report.revisions):
            step = by_new.get(rev.commit.hash) if i else None
            rows.append(
                RevisionRow(
                    number=i + 1,
                    commit=rev.commit.short,
                    hash=rev.commit.hash,
                    date=rev.commit.date[:10],
                    author=rev.commit.author.split(" <")[0],
                    subject=rev.commit.subject,
                    score=f"{rev.mean:.3f}",
                    ci=f"[{rev.ci_low:.3f}, {rev.ci_high:.3f}]",
                    delta="-" if step is None else f"{step.comparison.paired.delta:+.3f}",
                    delta_ci="-" if step is None else _step_ci(step),
                    mcnemar_p="-" if step is None else _changed_p(step),
                    verdict="first" if step is None else step.verdict,
                    mark="first" if step is None else _mark(step.verdict),
                    best=rev is best,
                    mean=rev.mean,
                    ci_low=rev.ci_low,
                    ci_high=rev.ci_high,
                )
            )
        summary = [
            f"Best revision: {best.commit.short} ({best.commit.subject}), "
            f"{p.metric_name} {best.mean:.3f} [{best.ci_low:.3f}, {best.ci_high:.3f}]."
        ]
        for label, steps in (
            ("Significant improvements", report.improvements),
            ("Significant regressions", report.regressions),
        ):
            listed = ", ".join(
                f"{s.new.commit.short} ({s.comparison.paired.delta:+.3f}: {s.new.commit.subject})"
                for s in steps
            )
            summary.append(f"{label}: {listed or 'none'}.")
        gate = report.gate
        if gate is not None:
            against = "the baseline" if report.baseline is not None else "the revision before it"
            summary.append(
                f"The newest revision {gate.new.commit.short} against {against} "
                f"{gate.old.commit.short}: {gate.verdict}."
            )
        provenance = (
            ProvenanceRow("file", p.file),
            ProvenanceRow("task", p.task),
            ProvenanceRow("task hash", p.task_hash[:16]),
            ProvenanceRow("data hash", p.data_hash[:16]),
            ProvenanceRow("split", f"{p.split} ({report.n} examples)"),
            ProvenanceRow("seed", str(p.seed)),
            ProvenanceRow("promptopt", p.promptopt_version),
            *(
                ProvenanceRow(
                    f"{role} model",
                    f"{info.model} (API reported: {', '.join(info.reported) or 'not reported'})",
                )
                for role, info in p.models.items()
            ),
        )
        return cls(
            task=p.task,
            file=p.file,
            metric_name=p.metric_name,
            provenance=provenance,
            rows=tuple(rows),
            steps=tuple(_step_view(s, p.split, report.n) for s in report.steps),
            summary=tuple(summary),
            newest_regressed=report.newest_regressed,
            baseline=(
                None if report.baseline is None else _step_view(report.baseline, p.split, report.n)
            ),
        )

    @property
    def title(self) -> str:
        """The report's heading."""
        return f"Prompt history: {self.file} ({self.task})"
