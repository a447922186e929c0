"""A diff report as rich renderables for the terminal (cli.py prints them).

Word changes carry git-style markers besides their colours, so that they survive a pipe or a
log file where colours are dropped.
"""

from __future__ import annotations

from rich.console import Group, RenderableType
from rich.rule import Rule
from rich.table import Table
from rich.text import Text

from promptopt.reporting.diff import DiffReport
from promptopt.reporting.markdown import (
    SECTION_FLIPS,
    SECTION_PROMPT,
    SECTION_PROVENANCE,
    SECTION_SCORE,
    SECTION_USAGE,
    provenance_rows,
    usage_rows,
    verdict_sentence,
)

_VERDICT_STYLE = {"improved": "bold green", "regressed": "bold red"}
_CELL_CHARS = 120


def _short(text: str) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= _CELL_CHARS else flat[: _CELL_CHARS - 1] + "…"


def word_diff_text(report: DiffReport) -> Text:
    """The word diff: [-deleted-] in red, {+inserted+} in green."""
    text = Text()
    for seg in report.segments:
        if seg.op == "delete":
            text.append(f"[-{seg.text}-]", style="red strike")
        elif seg.op == "insert":
            text.append(f"{{+{seg.text}+}}", style="green")
        else:
            text.append(seg.text)
    return text


def diff_renderable(report: DiffReport) -> RenderableType:
    """Every section of a diff report, for a rich console."""
    p = report.provenance
    verdict = Text.assemble(
        ("Verdict: ", "bold"),
        (report.verdict, _VERDICT_STYLE.get(report.verdict, "bold")),
        f": {verdict_sentence(report)}",
    )
    provenance = Table(title=SECTION_PROVENANCE, show_header=False, title_justify="left")
    provenance.add_column(style="bold")
    provenance.add_column()
    for key, value in provenance_rows(report):
        provenance.add_row(key, value)

    score = Table(title=SECTION_SCORE, title_justify="left", header_style="bold")
    score.add_column("prompt")
    score.add_column(report.metric_name, justify="right")
    score.add_column("95% CI", justify="right")
    for side, label in (("old", p.old_label), ("new", p.new_label)):
        mean, lo, hi = report.mean_ci(side)  # type: ignore[arg-type]
        score.add_row(f"{side}: {label}", f"{mean:.3f}", f"[{lo:.3f}, {hi:.3f}]")
    paired = report.comparison.paired
    score.add_row(
        "new - old", f"{paired.delta:+.3f}", f"[{paired.ci_low:+.3f}, {paired.ci_high:+.3f}]"
    )
    mcnemar = report.comparison.mcnemar

    counts = report.counts()
    flips = Table(
        title=f"{SECTION_FLIPS}: {counts['regressions']} regressions, "
        f"{counts['improvements']} improvements, {counts['unchanged']} unchanged",
        title_justify="left",
        header_style="bold",
    )
    for column in ("", "id", "input", "expected", "old output", "new output"):
        flips.add_column(column)
    for o in report.flips:
        style = "red" if o.kind == "regression" else "green"
        flips.add_row(
            Text(f"{o.kind} {o.old_score:.2f}→{o.new_score:.2f}", style=style),
            o.id,
            _short(o.input),
            _short(" / ".join(o.expected)),
            _short(o.old_output + (f" (error: {o.old_error})" if o.old_error else "")),
            _short(o.new_output + (f" (error: {o.new_error})" if o.new_error else "")),
        )

    usage = Table(title=SECTION_USAGE, title_justify="left", header_style="bold")
    usage.add_column("")
    for column in ("old", "new", "new - old"):
        usage.add_column(column, justify="right")
    for row in usage_rows(report):
        usage.add_row(*row)

    parts: list[RenderableType] = [
        Rule(f"Prompt diff: {p.task}"),
        verdict,
        provenance,
        Text(SECTION_PROMPT, style="italic"),
        word_diff_text(report),
        score,
    ]
    if mcnemar is not None:
        parts.append(
            Text(
                f"Exact McNemar test on the flips: {mcnemar.b} regressions, "
                f"{mcnemar.c} improvements, p = {mcnemar.p_value:.4g}"
            )
        )
    parts += [flips, usage]
    return Group(*parts)
