"""Self-contained HTML for diff reports and run reports, from the templates *.html.j2: one file,
inline CSS and inline SVG, no scripts, fonts, images or style sheets from anywhere else, so that
it opens offline and can be attached to a CI run as it is. The templates are autoescaped."""

from __future__ import annotations

from collections.abc import Sequence

from markupsafe import Markup, escape

from promptopt.reporting.diff import DiffReport
from promptopt.reporting.run_files import RunReport, TrajectoryPoint
from promptopt.reporting.templating import render
from promptopt.reporting.view import DiffView, RunView


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
