"""Diff and history reports as rich renderables for the terminal (the CLI prints them).

Word changes carry git-style markers besides their colours, so that they survive a pipe or a
log file where colours are dropped. Text from prompts, models and tasks goes in as `Text` or
escaped, never as console markup, so that brackets in it are shown as they are.
"""

from __future__ import annotations

from rich import box
from rich.console import Group, RenderableType
from rich.markup import escape
from rich.rule import Rule
from rich.table import Table
from rich.text import Text

from promptopt.reporting.diff import DiffReport
from promptopt.reporting.history import HistoryReport
from promptopt.reporting.view import (
    SECTION_FLIPS,
    SECTION_PROMPT,
    SECTION_PROVENANCE,
    SECTION_REVISIONS,
    SECTION_SCORE,
    SECTION_USAGE,
    DiffView,
    HistoryView,
    shorten,
)

_VERDICT_STYLE = {"improved": "bold green", "regressed": "bold red", "same": "bold"}
# A table cell's width on a terminal: the outputs of two prompts side by side stay legible.
_CELL_CHARS = 120


def _short(text: str) -> Text:
    return Text(shorten(" ".join(text.split()), _CELL_CHARS))


def word_diff_text(view: DiffView) -> Text:
    """The word diff: [-deleted-] in red, {+inserted+} in green.

    Args:
        view: The diff report's view.

    Returns:
        The styled text.
    """
    text = Text()
    for seg in view.segments:
        if seg.op == "delete":
            text.append(f"[-{seg.text}-]", style="red strike")
        elif seg.op == "insert":
            text.append(f"{{+{seg.text}+}}", style="green")
        else:
            text.append(seg.text)
    return text


def diff_renderable(
    report: DiffReport | DiffView, *, max_flips: int | None = None
) -> RenderableType:
    """Every section of a diff report, for a rich console.

    Args:
        report: The diff report, or its view.
        max_flips: How many flips the table lists (None: all); a line says how many more
            there are.

    Returns:
        The sections as one renderable.
    """
    view = report if isinstance(report, DiffView) else DiffView.of(report)
    if max_flips is not None:
        view = view.limited(max_flips)
    verdict = Text.assemble(
        ("Verdict: ", "bold"),
        (view.verdict, _VERDICT_STYLE[view.verdict_class]),
        f": {view.verdict_sentence}",
    )
    provenance = Table(title=SECTION_PROVENANCE, show_header=False, title_justify="left")
    provenance.add_column(style="bold")
    provenance.add_column()
    for row in view.provenance:
        provenance.add_row(Text(row.field), Text(row.value))

    score = Table(title=SECTION_SCORE, title_justify="left", header_style="bold")
    score.add_column("prompt")
    score.add_column(Text(view.metric_name), justify="right")
    score.add_column("95% CI", justify="right")
    for s in view.scores:
        score.add_row(Text(s.label), s.value, s.ci)

    flips = Table(
        title=escape(f"{SECTION_FLIPS}: {view.counts}"),
        title_justify="left",
        header_style="bold",
    )
    for column in ("", "id", "input", "expected", "old output", "new output"):
        flips.add_column(column)
    for o in view.flips:
        flips.add_row(
            Text(
                f"{o.kind} {o.old_score}→{o.new_score}",
                style="red" if o.kind == "regression" else "green",
            ),
            Text(o.id),
            _short(o.input),
            _short(o.expected),
            _short(o.old_shown),
            _short(o.new_shown),
        )

    usage = Table(title=SECTION_USAGE, title_justify="left", header_style="bold")
    usage.add_column("")
    for column in ("old", "new", "new - old"):
        usage.add_column(column, justify="right")
    for u in view.usage:
        usage.add_row(u.quantity, u.old, u.new, u.delta)

    parts: list[RenderableType] = [
        Rule(escape(view.title)),
        verdict,
        provenance,
        Text(SECTION_PROMPT, style="italic"),
        word_diff_text(view),
        score,
    ]
    if view.changed_test is not None:
        parts.append(Text(view.changed_test))
    parts.append(flips)
    if view.flips_omitted:
        parts.append(
            Text(
                f"… and {view.flips_omitted} more (--max-flips 0 lists every one; "
                "--format json, md or html keep them too)",
                style="italic",
            )
        )
    parts.append(usage)
    return Group(*parts)


_SHORT_VERDICT = {"no significant change": "-"}
_MARK_STYLE = {"improved": "green", "regressed": "bold red", "same": "", "first": ""}


def history_renderable(report: HistoryReport | HistoryView) -> RenderableType:
    """A history report for a rich console: the table of revisions, then the summary.

    Args:
        report: The history report, or its view.

    Returns:
        The sections as one renderable (word diffs are in the Markdown and HTML formats).
    """
    view = report if isinstance(report, HistoryView) else HistoryView.of(report)
    table = Table(
        title=SECTION_REVISIONS,
        title_justify="left",
        header_style="bold",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
        padding=(0, 1, 0, 0),
    )
    cells = [
        (
            row.commit + (" ★" if row.best else ""),
            f"{row.score} {row.ci}",
            "-" if row.mark == "first" else f"{row.delta} {row.delta_ci}",
            row.mcnemar_p,
            _SHORT_VERDICT.get(row.verdict, row.verdict),
        )
        for row in view.rows
    ]
    headers = ("commit", f"{view.metric_name} [95% CI]", "Δ previous [95% CI]", "p", "verdict")
    for k, header in enumerate(headers):
        # Figures never shrink: rich would cut them rather than wrap.
        width = max([len(header), *(len(c[k]) for c in cells)])
        table.add_column(
            Text(header), justify="left" if k in (0, 4) else "right", min_width=width, no_wrap=True
        )
    for row, c in zip(view.rows, cells, strict=True):
        table.add_row(Text(c[0]), c[1], c[2], c[3], Text(c[4], style=_MARK_STYLE[row.mark]))
    # Subjects below the table rather than in it: the table then fits 80 columns.
    commits = Text("\n".join(f"{r.commit} {r.date} {r.author}: {r.subject}" for r in view.rows))
    parts: list[RenderableType] = [Rule(escape(view.title)), table, commits]
    parts.append(
        Text(
            "★ best revision; p: McNemar or sign test; verdict -: no significant change",
            style="dim",
        )
    )
    parts += [Text(line) for line in view.summary]
    if view.newest_regressed:
        parts.append(Text("The newest revision is significantly worse.", style="bold red"))
    return Group(*parts)
