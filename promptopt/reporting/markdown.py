"""Run reports and diff reports as Markdown, rendered from a run folder alone (no model call).

`build_run_report` gathers what a report shows; `render_run_markdown` and `diff_markdown` turn it
into Markdown (a file a person reads, or a pull-request comment); `write_run_reports` writes
report.md and report.html into the run folder.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from promptopt.reporting.diff import DiffReport, SideUsage, diff_from_final_eval
from promptopt.run.folder import CONFIG, EVENTS, REPORT_MD, SUMMARY, RunFolder

REPORT_HTML = "report.html"

# Enough rows for a pull-request comment; the JSON and HTML formats list every flip.
MAX_MD_FLIPS = 50
_CELL_CHARS = 200

SECTION_PROVENANCE = "Provenance"
SECTION_PROMPT = "Prompt changes"
SECTION_SCORE = "Score"
SECTION_FLIPS = "Flips"
SECTION_USAGE = "Tokens, cost and latency"
SECTION_TRAJECTORY = "Score trajectory"
SECTION_LINEAGE = "How the best prompt was found"
SECTION_TEST_DIFF = "Initial vs best on test"
SECTION_RUN_USAGE = "Usage"


def _fmt(x: Any) -> str:
    return "-" if x is None else f"{float(x):.3f}"


def lineage(candidates: dict[str, dict[str, Any]], best_id: str) -> list[dict[str, Any]]:
    """The chain of candidates from the initial prompt to `best_id`, oldest first.

    Where a candidate has several parents, the first is followed.
    """
    chain: list[dict[str, Any]] = []
    seen: set[str] = set()
    current: str | None = best_id
    while current is not None and current in candidates and current not in seen:
        seen.add(current)
        record = candidates[current]
        chain.append(record)
        parents = record.get("parents") or []
        current = str(parents[0]) if parents else None
    return list(reversed(chain))


@dataclass(frozen=True)
class TrajectoryPoint:
    """The search's state after one step: its best score and the budget spent so far."""

    step: int
    name: str
    best_score: float | None
    target_calls: int
    optimizer_calls: int
    cost_usd: float


def trajectory(events: Sequence[Mapping[str, Any]]) -> list[TrajectoryPoint]:
    """One point per "step" event of events.jsonl, in order."""
    points: list[TrajectoryPoint] = []
    for e in events:
        if e.get("event") != "step":
            continue
        calls = e.get("calls") or {}
        score = e.get("best_score")
        points.append(
            TrajectoryPoint(
                step=int(e.get("step", len(points) + 1)),
                name=str(e.get("name", "")),
                best_score=None if score is None else float(score),
                target_calls=int(calls.get("target", 0)),
                optimizer_calls=int(calls.get("optimizer", 0)),
                cost_usd=float(e.get("cost_usd", 0.0)),
            )
        )
    return points


@dataclass(frozen=True)
class RunReport:
    """Everything a run report shows, read from a finished or interrupted run folder."""

    path: str
    summary: Mapping[str, Any]
    config: Mapping[str, Any]
    trajectory: tuple[TrajectoryPoint, ...]
    lineage: tuple[Mapping[str, Any], ...]
    test_diff: DiffReport | None
    rejected: Mapping[str, int]

    @property
    def task(self) -> str:
        """The task's name."""
        return str(self.summary.get("task") or self.config.get("task", {}).get("name", "?"))

    @property
    def status(self) -> str:
        """finished, interrupted or running (a run killed mid-way still says running)."""
        return str(self.summary.get("status") or "not started")

    def usage_rows(self) -> list[dict[str, Any]]:
        """Usage and cost per model role, with the model id and what the API reported."""
        models = self.summary.get("models") or {}
        rows = []
        for role, usage in (self.summary.get("usage") or {}).items():
            info = models.get(role) or {}
            model = info.get("model") or ((self.config.get("task") or {}).get("models") or {}).get(
                role, {}
            ).get("model", "?")
            rows.append(
                {
                    "role": role,
                    "model": model,
                    "reported": ", ".join(info.get("reported") or []),
                    "requests": usage.get("requests", 0),
                    "cache_hits": usage.get("cache_hits", 0),
                    "input_tokens": usage.get("input_tokens", 0),
                    "output_tokens": usage.get("output_tokens", 0),
                    "cost_usd": float(usage.get("cost_usd", 0.0)),
                }
            )
        return rows


def build_run_report(folder: RunFolder) -> RunReport:
    """Read a run folder into a `RunReport`."""
    # Validated first, so a damaged file is reported with its name and field.
    folder.summary(), folder.config(), folder.final_eval(), folder.events()
    summary = folder.read_json(SUMMARY) or {}
    config = folder.read_json(CONFIG) or {}
    events = folder.read_jsonl(EVENTS)
    best_id = str(summary.get("best_id", ""))
    rejected: dict[str, int] = {}
    for e in events:
        if e.get("event") == "rejected":
            reason = str(e.get("reason"))
            rejected[reason] = rejected.get(reason, 0) + 1
    return RunReport(
        path=str(folder.path),
        summary=summary,
        config=config,
        trajectory=tuple(trajectory(events)),
        lineage=tuple(lineage({k: v.to_json() for k, v in folder.candidates().items()}, best_id)),
        test_diff=diff_from_final_eval(folder, "test"),
        rejected=dict(sorted(rejected.items())),
    )


# ---------------------------------------------------------------------------------------------
# Markdown helpers


def md_cell(text: Any, limit: int = _CELL_CHARS) -> str:
    """Text made safe for one cell of a Markdown table (GitHub-flavoured)."""
    value = str(text)
    if len(value) > limit:
        value = value[: limit - 1] + "…"
    for char in "\\`*_[]|<>#":
        value = value.replace(char, "\\" + char)
    value = value.replace("\r", "").replace("\n", "<br>")
    return value or " "


def _fence(text: str) -> str:
    ticks = 3
    while "`" * ticks in text:
        ticks += 1
    return "`" * ticks


def _code_block(text: str, lang: str = "text") -> list[str]:
    fence = _fence(text)
    return [f"{fence}{lang}", text, fence]


def _quote(text: str) -> str:
    return "\n".join("> " + line if line else ">" for line in text.strip().splitlines())


def _money(x: float | None) -> str:
    return "-" if x is None else f"${x:.4f}"


def _money_delta(x: float | None) -> str:
    return "-" if x is None else f"{'-' if x < 0 else '+'}${abs(x):.4f}"


def _signed(x: float | None, fmt: str = "{:+.3f}") -> str:
    return "-" if x is None else fmt.format(x)


def word_diff_text(report: DiffReport) -> str:
    """The word diff with git-style markers: [-deleted-] and {+inserted+}."""
    parts = []
    for seg in report.segments:
        if seg.op == "delete":
            parts.append(f"[-{seg.text}-]")
        elif seg.op == "insert":
            parts.append(f"{{+{seg.text}+}}")
        else:
            parts.append(seg.text)
    return "".join(parts)


def verdict_sentence(report: DiffReport) -> str:
    """One sentence: the verdict with the delta, its interval and McNemar's test."""
    paired, mcnemar = report.comparison.paired, report.comparison.mcnemar
    text = (
        f"new - old = {paired.delta:+.3f} on {report.provenance.split} "
        f"(n = {report.n}; paired bootstrap {paired.confidence:.0%} CI "
        f"[{paired.ci_low:+.3f}, {paired.ci_high:+.3f}]"
    )
    if mcnemar is not None:
        text += (
            f"; exact McNemar p = {mcnemar.p_value:.4g} on {mcnemar.b} regressions "
            f"and {mcnemar.c} improvements"
        )
    return text + ")"


def usage_rows(report: DiffReport) -> list[tuple[str, str, str, str]]:
    """(quantity, old, new, delta) rows of the tokens, cost and latency table."""
    o, n, d = report.old_usage, report.new_usage, report.usage_delta()

    def count(x: float | None) -> str:
        return "-" if x is None else f"{int(x)}"

    def seconds(x: float | None) -> str:
        return "-" if x is None else f"{x:.3f} s"

    rows: list[tuple[str, str, str, str]] = [
        (
            "input tokens",
            count(o.input_tokens),
            count(n.input_tokens),
            _signed(d["input_tokens"], "{:+.0f}"),
        ),
        (
            "output tokens",
            count(o.output_tokens),
            count(n.output_tokens),
            _signed(d["output_tokens"], "{:+.0f}"),
        ),
        ("cost", _money(o.cost_usd), _money(n.cost_usd), _money_delta(d["cost_usd"])),
        (
            "mean latency",
            seconds(o.mean_latency_s),
            seconds(n.mean_latency_s),
            _signed(d["mean_latency_s"], "{:+.3f} s"),
        ),
    ]
    return rows


def provenance_rows(report: DiffReport) -> list[tuple[str, str]]:
    """(field, value) rows of the provenance table."""
    p = report.provenance
    rows = [
        ("task", p.task),
        ("task hash", p.task_hash[:16]),
        ("data hash", p.data_hash[:16]),
        ("split", f"{p.split} ({report.n} examples)"),
        ("seed", str(p.seed)),
        ("promptopt", p.promptopt_version),
        ("old", f"{p.old_label} ({p.old_source})"),
        ("new", f"{p.new_label} ({p.new_source})"),
    ]
    for role, info in p.models.items():
        reported = ", ".join(info.get("reported") or []) or "not reported"
        rows.append((f"{role} model", f"{info.get('model')} (API reported: {reported})"))
    for problem in p.mismatches:
        rows.append(("forced despite", problem))
    return rows


def _usage_is_known(usage: SideUsage) -> bool:
    return any(
        v is not None
        for v in (usage.input_tokens, usage.output_tokens, usage.cost_usd, usage.mean_latency_s)
    )


# ---------------------------------------------------------------------------------------------
# diff report


def diff_markdown(report: DiffReport, *, level: int = 1, max_flips: int = MAX_MD_FLIPS) -> str:
    """A diff report as Markdown that fits a pull-request comment; headings start at `level`."""
    h1, h2 = "#" * level, "#" * (level + 1)
    p = report.provenance
    lines = [
        f"{h1} Prompt diff: {p.task}",
        "",
        f"**Verdict: {report.verdict}**: {verdict_sentence(report)}.",
        "",
        f"{h2} {SECTION_PROVENANCE}",
        "",
        "| | |",
        "|---|---|",
        *(f"| {md_cell(k)} | {md_cell(v, 400)} |" for k, v in provenance_rows(report)),
        "",
        f"{h2} {SECTION_PROMPT}",
        "",
        "Word diff, `[-deleted-]` and `{+inserted+}`:",
        "",
        *_code_block(word_diff_text(report)),
        "",
        "<details><summary>old and new prompt in full</summary>",
        "",
        *_code_block(report.old_prompt),
        "",
        *_code_block(report.new_prompt),
        "",
        "</details>",
        "",
        f"{h2} {SECTION_SCORE}",
        "",
        f"| prompt | {md_cell(report.metric_name)} | 95% CI |",
        "|---|---|---|",
    ]
    for side, label in (("old", p.old_label), ("new", p.new_label)):
        mean, lo, hi = report.mean_ci(side)  # type: ignore[arg-type]
        lines.append(f"| {side}: {md_cell(label)} | {mean:.3f} | [{lo:.3f}, {hi:.3f}] |")
    paired = report.comparison.paired
    lines.append(
        f"| **new - old** | **{paired.delta:+.3f}** "
        f"| [{paired.ci_low:+.3f}, {paired.ci_high:+.3f}] |"
    )
    mcnemar = report.comparison.mcnemar
    if mcnemar is not None:
        lines += [
            "",
            f"Exact McNemar test on the flips: {mcnemar.b} regressions, {mcnemar.c} improvements, "
            f"p = {mcnemar.p_value:.4g}.",
        ]
    counts = report.counts()
    flips = report.flips
    lines += [
        "",
        f"{h2} {SECTION_FLIPS}",
        "",
        f"{counts['regressions']} regressions, {counts['improvements']} improvements, "
        f"{counts['unchanged']} unchanged.",
        "",
    ]
    if flips:
        lines += [
            "| | id | input | expected | old output | new output |",
            "|---|---|---|---|---|---|",
        ]
        for o in flips[:max_flips]:
            mark = "regression" if o.kind == "regression" else "improvement"
            old_out = o.old_output + (f" (error: {o.old_error})" if o.old_error else "")
            new_out = o.new_output + (f" (error: {o.new_error})" if o.new_error else "")
            lines.append(
                f"| {mark} {o.old_score:.2f} → {o.new_score:.2f} | {md_cell(o.id)} | "
                f"{md_cell(o.input)} | {md_cell(' / '.join(o.expected))} | "
                f"{md_cell(old_out)} | {md_cell(new_out)} |"
            )
        if len(flips) > max_flips:
            lines += ["", f"… and {len(flips) - max_flips} more (see the JSON or HTML report)."]
    lines += [
        "",
        f"{h2} {SECTION_USAGE}",
        "",
        "| | old | new | new - old |",
        "|---|---|---|---|",
        *(f"| {a} | {b} | {c} | {d} |" for a, b, c, d in usage_rows(report)),
    ]
    if not (_usage_is_known(report.old_usage) or _usage_is_known(report.new_usage)):
        lines += ["", "Not recorded for these scores."]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------
# run report


def trajectory_rows(points: Sequence[TrajectoryPoint]) -> list[TrajectoryPoint]:
    """The steps worth a table row: the first, each one that changed the best score, the last."""
    rows: list[TrajectoryPoint] = []
    for i, point in enumerate(points):
        if i == 0 or i == len(points) - 1 or point.best_score != points[i - 1].best_score:
            rows.append(point)
    return rows


def run_markdown(report: RunReport) -> str:
    """The report.md of a finished or interrupted run."""
    summary = report.summary
    scores = summary.get("scores", {})
    initial, best = scores.get("initial", {}), scores.get("best", {})
    lines = [
        f"# promptopt run: {report.task}",
        "",
        f"- strategy: `{summary.get('strategy')}`, seed {summary.get('seed')}",
        f"- status: {report.status}"
        + (
            f" (stopped: {summary['stop_reason']})"
            if summary.get("stop_reason") not in (None, "finished")
            else ""
        ),
        f"- steps: {summary.get('steps')}, candidates: {summary.get('candidates')}, "
        f"wall time: {float(summary.get('wall_s', 0)):.1f} s",
        "",
        "## Scores",
        "",
        "| prompt | dev | test |",
        "|---|---|---|",
        f"| initial | {_fmt(initial.get('dev'))} | {_fmt(initial.get('test'))} |",
        f"| best (`{summary.get('best_id')}`) | {_fmt(best.get('dev'))} "
        f"| {_fmt(best.get('test'))} |",
        "",
    ]
    comparison = summary.get("test_comparison")
    if comparison:
        lo, hi = comparison["ci95"]
        p = comparison.get("mcnemar_p")
        lines += [
            f"On held-out test (n = {summary.get('n', {}).get('test')}), best - initial = "
            f"{comparison['delta']:+.3f} (paired bootstrap 95% CI [{lo:+.3f}, {hi:+.3f}]"
            + (f"; exact McNemar p = {p:.4g}" if p is not None else "")
            + f"): **{comparison['verdict']}**.",
            "",
        ]
    elif report.status != "finished":
        lines += ["The run has not finished: held-out test scores are not available yet.", ""]
    lines += [f"## {SECTION_TRAJECTORY}", ""]
    if report.trajectory:
        lines += [
            "Best score on the search's own examples after each step, against the budget spent "
            "(steps where it changed):",
            "",
            "| step | operation | best score | target calls | optimizer calls | cost |",
            "|---|---|---|---|---|---|",
        ]
        for t in trajectory_rows(report.trajectory):
            lines.append(
                f"| {t.step} | {md_cell(t.name)} | {_fmt(t.best_score)} | {t.target_calls} | "
                f"{t.optimizer_calls} | ${t.cost_usd:.4f} |"
            )
    else:
        lines.append("No step has finished yet.")
    lines += ["", "## Best prompt", "", *_code_block(str(summary.get("best_prompt", "")).strip())]
    lines += ["", f"## {SECTION_LINEAGE}", ""]
    if report.lineage and report.lineage[-1].get("operator") != "initial":
        lines += _lineage_markdown(report.lineage)
    else:
        lines += ["The best prompt is the initial prompt.", ""]
    lines += [f"## {SECTION_TEST_DIFF}", ""]
    if report.test_diff is not None:
        lines += [diff_markdown(report.test_diff, level=3)]
    else:
        lines += ["Not available: the run has no final evaluation on test yet.", ""]
    lines += [
        f"## {SECTION_RUN_USAGE}",
        "",
        "| model role | model | requests | cache hits | tokens in | tokens out | cost |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in report.usage_rows():
        model = str(row["model"]) + (f" ({row['reported']})" if row["reported"] else "")
        lines.append(
            f"| {row['role']} | {md_cell(model)} | {row['requests']} | {row['cache_hits']} | "
            f"{row['input_tokens']} | {row['output_tokens']} | ${row['cost_usd']:.4f} |"
        )
    if report.rejected:
        lines += [
            "",
            "## Rejected proposals",
            "",
            ", ".join(f"{reason}: {n}" for reason, n in report.rejected.items()),
        ]
    return "\n".join(lines) + "\n"


def _lineage_markdown(chain: Sequence[Mapping[str, Any]]) -> list[str]:
    lines: list[str] = []
    previous: float | None = None
    for i, record in enumerate(chain):
        dev = (record.get("scores", {}).get("dev") or {}).get("mean")
        train = (record.get("scores", {}).get("train") or {}).get("mean")
        gain = (
            f" ({dev - previous:+.3f} on dev)" if dev is not None and previous is not None else ""
        )
        lines.append(
            f"{i + 1}. `{record['id']}` by **{record.get('operator')}** at step "
            f"{record.get('step')}: dev {_fmt(dev)}, train {_fmt(train)}{gain}"
        )
        feedback = record.get("feedback") or {}
        for key in ("errors", "gradient", "edit"):
            if feedback.get(key):
                value = feedback[key]
                text = "\n".join(value) if isinstance(value, list) else str(value)
                lines += ["", f"   {key}:", "", _quote(text)]
        lines += ["", _quote(str(record.get("text", ""))), ""]
        if dev is not None:
            previous = dev
    return lines


def render_run_markdown(folder: RunFolder) -> str:
    """The report.md of a finished or interrupted run."""
    return run_markdown(build_run_report(folder))


def write_run_reports(folder: RunFolder) -> None:
    """Write report.md and the self-contained report.html into the run folder."""
    # Imported here: render_html imports this module's RunReport and Markdown helpers.
    from promptopt.reporting.html import run_html

    report = build_run_report(folder)
    folder.write_text(REPORT_MD, run_markdown(report))
    folder.write_text(REPORT_HTML, run_html(report))


# ---------------------------------------------------------------------------------------------
# CI mode


def ci_summary_markdown(
    folder: RunFolder, passed: bool, reason: str, written_to: Path | None
) -> str:
    """The Markdown summary of a CI-mode run: the gate's decision (`passed`, with its
    `reason`), then initial vs best."""
    report = build_run_report(folder)
    outcome = (
        f"wrote the best prompt to `{written_to}`"
        if written_to is not None
        else "left the prompt file untouched"
    )
    lines = [
        f"# promptopt: {report.task}",
        "",
        f"**{'Improved' if passed else 'No significant gain'}**: {reason}; {outcome}.",
        "",
        f"Run folder: `{report.path}`.",
        "",
    ]
    if report.test_diff is not None:
        lines.append(diff_markdown(report.test_diff, level=2))
    return "\n".join(lines) + ("" if lines[-1].endswith("\n") else "\n")
