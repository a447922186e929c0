"""Self-contained HTML for diff reports and run reports: one file, inline CSS and inline SVG,
no scripts, fonts, images or style sheets from anywhere else, so that it opens offline and
can be attached to a CI run as it is."""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

from promptopt.reporting.diff import DiffReport
from promptopt.reporting.markdown import (
    SECTION_FLIPS,
    SECTION_LINEAGE,
    SECTION_PROMPT,
    SECTION_PROVENANCE,
    SECTION_RUN_USAGE,
    SECTION_SCORE,
    SECTION_TEST_DIFF,
    SECTION_TRAJECTORY,
    SECTION_USAGE,
    RunReport,
    TrajectoryPoint,
    provenance_rows,
    trajectory_rows,
    usage_rows,
    verdict_sentence,
)

_CSS = """
body{font:15px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:2rem auto;
max-width:70rem;padding:0 1rem;color:#1f2328;background:#fff}
h1{font-size:1.6rem}h2{font-size:1.25rem;margin-top:2rem;border-bottom:1px solid #d0d7de}
h3{font-size:1.1rem}
table{border-collapse:collapse;margin:.5rem 0}
th,td{border:1px solid #d0d7de;padding:.3rem .6rem;text-align:left;vertical-align:top}
th{background:#f6f8fa}
td.num{text-align:right;font-variant-numeric:tabular-nums}
pre{background:#f6f8fa;padding:.8rem;white-space:pre-wrap;word-break:break-word;
border-radius:6px}
del{background:#ffebe9;color:#82071e;text-decoration:line-through}
ins{background:#dafbe1;color:#116329;text-decoration:none}
.verdict{font-size:1.1rem;padding:.6rem .9rem;border-radius:6px;border:1px solid #d0d7de}
.verdict.improved{background:#dafbe1}.verdict.regressed{background:#ffebe9}
.verdict.same{background:#f6f8fa}
tr.regression td:first-child{color:#82071e;font-weight:600}
tr.improvement td:first-child{color:#116329;font-weight:600}
.out{white-space:pre-wrap;word-break:break-word;max-width:22rem}
svg text{font:11px system-ui,sans-serif;fill:#57606a}
.muted{color:#57606a}
"""


def _page(title: str, body: list[str]) -> str:
    return "\n".join(
        [
            "<!DOCTYPE html>",
            '<html lang="en">',
            "<head>",
            '<meta charset="utf-8">',
            '<meta name="viewport" content="width=device-width, initial-scale=1">',
            f"<title>{escape(title)}</title>",
            f"<style>{_CSS}</style>",
            "</head>",
            "<body>",
            *body,
            "</body>",
            "</html>",
            "",
        ]
    )


def _table(header: Sequence[str], rows: Sequence[Sequence[str]], numeric: set[int]) -> str:
    """A table from already-escaped cells."""
    head = "".join(f"<th>{h}</th>" for h in header)
    body = []
    for row in rows:
        cells = "".join(
            f'<td class="num">{c}</td>' if i in numeric else f"<td>{c}</td>"
            for i, c in enumerate(row)
        )
        body.append(f"<tr>{cells}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _verdict_class(verdict: str) -> str:
    return {"improved": "improved", "regressed": "regressed"}.get(verdict, "same")


def _word_diff_html(report: DiffReport) -> str:
    parts = []
    for seg in report.segments:
        text = escape(seg.text)
        if seg.op == "delete":
            parts.append(f"<del>{text}</del>")
        elif seg.op == "insert":
            parts.append(f"<ins>{text}</ins>")
        else:
            parts.append(text)
    return f'<pre class="word-diff">{"".join(parts)}</pre>'


def _diff_sections(report: DiffReport, level: int) -> list[str]:
    h, h2 = f"h{level}", f"h{level + 1}"
    p = report.provenance
    verdict = report.verdict
    out = [
        f"<{h}>Prompt diff: {escape(p.task)}</{h}>",
        f'<p class="verdict {_verdict_class(verdict)}" id="verdict"><strong>Verdict: '
        f"{escape(verdict)}</strong>: {escape(verdict_sentence(report))}.</p>",
        f"<{h2}>{SECTION_PROVENANCE}</{h2}>",
        _table(["", ""], [(escape(k), escape(v)) for k, v in provenance_rows(report)], set()),
        f"<{h2}>{SECTION_PROMPT}</{h2}>",
        '<p class="muted">Deleted words are struck through, inserted words highlighted.</p>',
        _word_diff_html(report),
        "<details><summary>old and new prompt in full</summary>",
        f"<pre>{escape(report.old_prompt)}</pre>",
        f"<pre>{escape(report.new_prompt)}</pre>",
        "</details>",
        f"<{h2}>{SECTION_SCORE}</{h2}>",
    ]
    rows = []
    for side, label in (("old", p.old_label), ("new", p.new_label)):
        mean, lo, hi = report.mean_ci(side)  # type: ignore[arg-type]
        rows.append((escape(f"{side}: {label}"), f"{mean:.3f}", f"[{lo:.3f}, {hi:.3f}]"))
    paired = report.comparison.paired
    rows.append(
        (
            "<strong>new - old</strong>",
            f"<strong>{paired.delta:+.3f}</strong>",
            f"[{paired.ci_low:+.3f}, {paired.ci_high:+.3f}]",
        )
    )
    out.append(_table(["prompt", escape(report.metric_name), "95% CI"], rows, {1, 2}))
    mcnemar = report.comparison.mcnemar
    if mcnemar is not None:
        out.append(
            f"<p>Exact McNemar test on the flips: {mcnemar.b} regressions, {mcnemar.c} "
            f"improvements, p = {mcnemar.p_value:.4g}.</p>"
        )
    counts = report.counts()
    out += [
        f"<{h2}>{SECTION_FLIPS}</{h2}>",
        f"<p>{counts['regressions']} regressions, {counts['improvements']} improvements, "
        f"{counts['unchanged']} unchanged.</p>",
    ]
    flips = report.flips
    if flips:
        body = []
        for o in flips:
            old_out = escape(o.old_output) + (
                f' <span class="muted">(error: {escape(o.old_error)})</span>' if o.old_error else ""
            )
            new_out = escape(o.new_output) + (
                f' <span class="muted">(error: {escape(o.new_error)})</span>' if o.new_error else ""
            )
            body.append(
                f'<tr class="{o.kind}"><td>{o.kind} {o.old_score:.2f} → {o.new_score:.2f}</td>'
                f"<td>{escape(o.id)}</td><td class=out>{escape(o.input)}</td>"
                f"<td class=out>{escape(' / '.join(o.expected))}</td>"
                f"<td class=out>{old_out}</td><td class=out>{new_out}</td></tr>"
            )
        head = "".join(
            f"<th>{c}</th>" for c in ("", "id", "input", "expected", "old output", "new output")
        )
        out.append(
            f'<table class="flips"><thead><tr>{head}</tr></thead>'
            f"<tbody>{''.join(body)}</tbody></table>"
        )
    out += [
        f"<{h2}>{SECTION_USAGE}</{h2}>",
        _table(
            ["", "old", "new", "new - old"],
            [tuple(escape(c) for c in row) for row in usage_rows(report)],
            {1, 2, 3},
        ),
    ]
    return out


def diff_html(report: DiffReport) -> str:
    """A diff report as one self-contained HTML page."""
    return _page(f"Prompt diff: {report.provenance.task}", _diff_sections(report, 1))


def trajectory_svg(points: Sequence[TrajectoryPoint], width: int = 640, height: int = 260) -> str:
    """The best score after each step against target calls spent, as an inline SVG step chart."""
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
    if scored:
        path: list[str] = []
        for i, p in enumerate(scored):
            assert p.best_score is not None
            if i:
                path.append(f"{x(p.target_calls):.1f},{y(scored[i - 1].best_score or 0):.1f}")
            path.append(f"{x(p.target_calls):.1f},{y(p.best_score):.1f}")
        parts.append(
            f'<polyline points="{" ".join(path)}" fill="none" stroke="#0969da" stroke-width="2"/>'
        )
        for p in scored:
            assert p.best_score is not None
            parts.append(
                f'<circle cx="{x(p.target_calls):.1f}" cy="{y(p.best_score):.1f}" r="3" '
                f'fill="#0969da"><title>step {p.step} ({escape(p.name)}): '
                f"{p.best_score:.3f} after {p.target_calls} target calls</title></circle>"
            )
    parts.append("</svg>")
    return "".join(parts)


def _fmt(x: object) -> str:
    return "-" if x is None else f"{float(x):.3f}"  # type: ignore[arg-type]


def run_html(report: RunReport) -> str:
    """A run report as one self-contained HTML page."""
    summary = report.summary
    scores = summary.get("scores", {})
    initial, best = scores.get("initial", {}), scores.get("best", {})
    reason = summary.get("stop_reason")
    stop = f" (stopped: {reason})" if reason not in (None, "finished") else ""
    body = [
        f"<h1>promptopt run: {escape(report.task)}</h1>",
        "<ul>",
        f"<li>strategy <code>{escape(str(summary.get('strategy')))}</code>, "
        f"seed {escape(str(summary.get('seed')))}</li>",
        f'<li>status: <span id="status">{escape(report.status)}</span>{escape(stop)}</li>',
        f"<li>steps: {escape(str(summary.get('steps')))}, candidates: "
        f"{escape(str(summary.get('candidates')))}, wall time: "
        f"{float(summary.get('wall_s', 0)):.1f} s</li>",
        f"<li>folder: <code>{escape(report.path)}</code></li>",
        "</ul>",
        "<h2>Scores</h2>",
        _table(
            ["prompt", "dev", "test"],
            [
                ("initial", _fmt(initial.get("dev")), _fmt(initial.get("test"))),
                (
                    f"best ({escape(str(summary.get('best_id')))})",
                    _fmt(best.get("dev")),
                    _fmt(best.get("test")),
                ),
            ],
            {1, 2},
        ),
        f"<h2>{SECTION_TRAJECTORY}</h2>",
    ]
    if report.trajectory:
        body += [
            '<p class="muted">Best score on the search\'s own examples after each step.</p>',
            trajectory_svg(report.trajectory),
            _table(
                ["step", "operation", "best score", "target calls", "optimizer calls", "cost"],
                [
                    (
                        str(t.step),
                        escape(t.name),
                        _fmt(t.best_score),
                        str(t.target_calls),
                        str(t.optimizer_calls),
                        f"${t.cost_usd:.4f}",
                    )
                    for t in trajectory_rows(report.trajectory)
                ],
                {0, 2, 3, 4, 5},
            ),
        ]
    else:
        body.append("<p>No step has finished yet.</p>")
    body += [
        "<h2>Best prompt</h2>",
        f"<pre>{escape(str(summary.get('best_prompt', '')).strip())}</pre>",
        f"<h2>{SECTION_LINEAGE}</h2>",
    ]
    if report.lineage and report.lineage[-1].get("operator") != "initial":
        items = []
        for record in report.lineage:
            dev = (record.get("scores", {}).get("dev") or {}).get("mean")
            feedback = record.get("feedback") or {}
            notes = "".join(
                f"<p class=muted>{escape(key)}:</p><pre>"
                + escape("\n".join(v) if isinstance(v := feedback[key], list) else str(v))
                + "</pre>"
                for key in ("errors", "gradient", "edit")
                if feedback.get(key)
            )
            items.append(
                f"<li><code>{escape(str(record.get('id')))}</code> by "
                f"<strong>{escape(str(record.get('operator')))}</strong> at step "
                f"{escape(str(record.get('step')))}: dev {_fmt(dev)}{notes}"
                f"<pre>{escape(str(record.get('text', '')))}</pre></li>"
            )
        body.append(f"<ol>{''.join(items)}</ol>")
    else:
        body.append("<p>The best prompt is the initial prompt.</p>")
    body.append(f"<h2>{SECTION_TEST_DIFF}</h2>")
    if report.test_diff is not None:
        body += _diff_sections(report.test_diff, 3)
    else:
        body.append("<p>Not available: the run has no final evaluation on test yet.</p>")
    body += [
        f"<h2>{SECTION_RUN_USAGE}</h2>",
        _table(
            ["model role", "model", "requests", "cache hits", "tokens in", "tokens out", "cost"],
            [
                (
                    escape(str(r["role"])),
                    escape(str(r["model"]) + (f" ({r['reported']})" if r["reported"] else "")),
                    str(r["requests"]),
                    str(r["cache_hits"]),
                    str(r["input_tokens"]),
                    str(r["output_tokens"]),
                    f"${r['cost_usd']:.4f}",
                )
                for r in report.usage_rows()
            ],
            {2, 3, 4, 5, 6},
        ),
    ]
    if report.rejected:
        body += [
            "<h2>Rejected proposals</h2>",
            "<p>"
            + escape(", ".join(f"{reason}: {n}" for reason, n in report.rejected.items()))
            + "</p>",
        ]
    return _page(f"promptopt run: {report.task}", body)
