"""Self-contained HTML for diff, history and run reports, from the templates *.html.j2: one file,
inline CSS and inline SVG, no scripts, fonts, images or style sheets from anywhere else, so that
it opens offline and can be attached to a CI run as it is. The templates are autoescaped."""

from __future__ import annotations

from collections.abc import Sequence

from markupsafe import Markup, escape

from promptopt.reporting.diff import DiffReport
from promptopt.reporting.history import HistoryReport
from promptopt.reporting.run_files import RunReport, TrajectoryPoint
from promptopt.reporting.templating import render
from promptopt.reporting.view import DiffView, HistoryView, RevisionRow, RunView


def diff_html(report: DiffReport | DiffView) -> str:
    """A diff report as one self-contained HTML page.

    Args:
        report: The diff report, or its view.

    Returns:
        The page; it lists every flip.
    """
    view = report if isinstance(report, DiffView) else DiffView.of(report)
    return render("diff.html.j2", view=view)


def run_html(report: RunReport | RunView) -> str:
    """A run report as one self-contained HTML page (report.html).

    Args:
        report: What `build_run_report` read from the run folder, or its view.

    Returns:
        The page, with the score trajectory as an inline SVG chart.
    """
    view = report if isinstance(report, RunView) else RunView.of(report)
    return render("run.html.j2", run=view, trajectory_svg=trajectory_svg(view.points))


def trajectory_svg(
    points: Sequence[TrajectoryPoint], width: int = 640, height: int = 260
) -> Markup:
    """The best score after each step against target calls spent, as an inline SVG step chart.

    Args:
        points: Every step of the run, in order.
        width: The chart's width in pixels.
        height: The chart's height in pixels.

    Returns:
        The SVG element, safe to insert into an HTML template: every text in it is escaped.
    """
    scored = [p for p in points if p.best_score is not None]
    left, right, top, bottom = 48, 16, 12, 36
    plot_w, plot_h = width - left - right, height - top - bottom
    max_x = max((p.target_calls for p in points), default=0) or 1
    lo = min([0.0, *(p.best_score or 0.0 for p in scored)])
    hi = max([1.0, *(p.best_score or 0.0 for p in scored)])

    def x(calls: int) -> float:
        return left + plot_w * calls / max_x

    def y(score: float) -> float:
        return top + plot_h * (1 - (score - lo) / (hi - lo))

    parts = [
        f'<svg class="trajectory" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="best score against target calls">',
        f'<rect x="{left}" y="{top}" width="{plot_w}" height="{plot_h}" fill="#fff" '
        'stroke="#d0d7de"/>',
    ]
    for tick in (lo, (lo + hi) / 2, hi):
        parts.append(
            f'<line x1="{left}" x2="{left + plot_w}" y1="{y(tick):.1f}" y2="{y(tick):.1f}" '
            'stroke="#eaeef2"/>'
            f'<text x="{left - 6}" y="{y(tick) + 4:.1f}" text-anchor="end">{tick:.2f}</text>'
        )
    for calls in (0, max_x // 2, max_x):
        parts.append(
            f'<text x="{x(calls):.1f}" y="{top + plot_h + 16}" text-anchor="middle">{calls}</text>'
        )
    parts.append(
        f'<text x="{left + plot_w / 2:.1f}" y="{height - 4}" text-anchor="middle">'
        "target calls spent</text>"
    )
    path: list[str] = []
    for i, p in enumerate(scored):
        score = p.best_score or 0.0
        if i:
            path.append(f"{x(p.target_calls):.1f},{y(scored[i - 1].best_score or 0.0):.1f}")
        path.append(f"{x(p.target_calls):.1f},{y(score):.1f}")
    if path:
        parts.append(
            f'<polyline points="{" ".join(path)}" fill="none" stroke="#0969da" stroke-width="2"/>'
        )
    for p in scored:
        score = p.best_score or 0.0
        # The step's name is the only text not made here: escaped before the whole is marked safe.
        parts.append(
            f'<circle cx="{x(p.target_calls):.1f}" cy="{y(score):.1f}" r="3" '
            f'fill="#0969da"><title>step {p.step} ({escape(p.name)}): '
            f"{score:.3f} after {p.target_calls} target calls</title></circle>"
        )
    parts.append("</svg>")
    return Markup("".join(parts))


def history_html(report: HistoryReport | HistoryView) -> str:
    """A history report as one self-contained HTML page.

    Args:
        report: The history report, or its view.

    Returns:
        The page, with the score across revisions as an inline SVG chart and each step's word
        diff.
    """
    view = report if isinstance(report, HistoryView) else HistoryView.of(report)
    return render("history.html.j2", view=view, history_svg=history_svg(view.rows))


_MARK_COLOUR = {"regressed": "#cf222e", "improved": "#1a7f37"}


def history_svg(rows: Sequence[RevisionRow], width: int = 720, height: int = 280) -> Markup:
    """Each revision's score across the commits, its 95% CI as a band, significant regressions
    marked in red (improvements in green), as an inline SVG chart.

    Args:
        rows: The revisions, oldest first.
        width: The chart's width in pixels.
        height: The chart's height in pixels.

    Returns:
        The SVG element, safe to insert into an HTML template: every text in it is escaped.
    """
    left, right, top, bottom = 48, 24, 16, 40
    plot_w, plot_h = width - left - right, height - top - bottom
    lo = min([0.0, *(r.ci_low for r in rows)])
    hi = max([1.0, *(r.ci_high for r in rows)])
    last = max(len(rows) - 1, 1)

    inset = 40  # room for the labels of the first and the last revision

    def x(i: int) -> float:
        # One revision sits in the middle; more spread over the whole width.
        return left + inset + (plot_w - 2 * inset) * (i / last if len(rows) > 1 else 0.5)

    def y(score: float) -> float:
        return top + plot_h * (1 - (score - lo) / (hi - lo))

    parts = [
        f'<svg class="history" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="score of each revision with its 95% CI">',
        f'<rect x="{left}" y="{top}" width="{plot_w}" height="{plot_h}" fill="#fff" '
        'stroke="#d0d7de"/>',
    ]
    for tick in (lo, (lo + hi) / 2, hi):
        parts.append(
            f'<line x1="{left}" x2="{left + plot_w}" y1="{y(tick):.1f}" y2="{y(tick):.1f}" '
            'stroke="#eaeef2"/>'
            f'<text x="{left - 6}" y="{y(tick) + 4:.1f}" text-anchor="end">{tick:.2f}</text>'
        )
    if rows:
        upper = [f"{x(i):.1f},{y(r.ci_high):.1f}" for i, r in enumerate(rows)]
        lower = [f"{x(i):.1f},{y(r.ci_low):.1f}" for i, r in reversed(list(enumerate(rows)))]
        parts.append(
            f'<polygon class="ci-band" points="{" ".join(upper + lower)}" fill="#0969da" '
            'fill-opacity="0.15" stroke="none"/>'
        )
        line = " ".join(f"{x(i):.1f},{y(r.mean):.1f}" for i, r in enumerate(rows))
        parts.append(f'<polyline points="{line}" fill="none" stroke="#0969da" stroke-width="2"/>')
    for i, r in enumerate(rows):
        colour = _MARK_COLOUR.get(r.mark, "#0969da")
        radius = 6 if r.mark in _MARK_COLOUR else 4
        # Subjects and authors are the only text not made here: escaped before marked safe.
        parts.append(
            f'<circle class="rev {r.mark}" cx="{x(i):.1f}" cy="{y(r.mean):.1f}" r="{radius}" '
            f'fill="{colour}"><title>{escape(r.commit)} {escape(r.subject)}: {r.score} '
            f"{r.ci} ({escape(r.verdict)})</title></circle>"
        )
        if r.mark == "regressed":
            parts.append(
                f'<text class="regression-mark" x="{x(i):.1f}" y="{y(r.mean) + 20:.1f}" '
                f'text-anchor="middle" style="fill:#cf222e;font-weight:600">regression</text>'
            )
        parts.append(
            f'<text x="{x(i):.1f}" y="{top + plot_h + 16}" text-anchor="middle">'
            f"{escape(r.commit)}{' ★' if r.best else ''}</text>"
        )
    parts.append(
        f'<text x="{left + plot_w / 2:.1f}" y="{height - 4}" text-anchor="middle">'
        "revision (oldest to newest)</text>"
    )
    parts.append("</svg>")
    return Markup("".join(parts))
