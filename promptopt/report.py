"""Run reports: a Markdown file a person reads, rendered from a run folder alone."""

from __future__ import annotations

from typing import Any

from promptopt.runs import EVENTS, SUMMARY, RunFolder


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


def _quote(text: str) -> str:
    return "\n".join("> " + line if line else ">" for line in text.strip().splitlines())


def render_run_markdown(folder: RunFolder) -> str:
    """The report.md of a finished or interrupted run."""
    summary = folder.read_json(SUMMARY) or {}
    candidates = folder.candidates()
    events = folder.read_jsonl(EVENTS)
    scores = summary.get("scores", {})
    initial, best = scores.get("initial", {}), scores.get("best", {})
    lines = [
        f"# promptopt run: {summary.get('task', '?')}",
        "",
        f"- strategy: `{summary.get('strategy')}`, seed {summary.get('seed')}",
        f"- status: {summary.get('status')}"
        + (f" (stopped: {summary['stop_reason']})" if summary.get("stop_reason") else ""),
        f"- steps: {summary.get('steps')}, candidates: {summary.get('candidates')}, "
        f"wall time: {summary.get('wall_s', 0):.1f} s",
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
    elif summary.get("status") != "finished":
        lines += ["The run has not finished: held-out test scores are not available yet.", ""]
    lines += [
        "## Best prompt",
        "",
        "```text",
        str(summary.get("best_prompt", "")).strip(),
        "```",
        "",
    ]
    chain = lineage(candidates, str(summary.get("best_id", "")))
    if len(chain) > 1:
        lines += ["## How the best prompt was found", ""]
        previous: float | None = None
        for i, record in enumerate(chain):
            dev = (record.get("scores", {}).get("dev") or {}).get("mean")
            train = (record.get("scores", {}).get("train") or {}).get("mean")
            gain = (
                f" ({dev - previous:+.3f} on dev)"
                if dev is not None and previous is not None
                else ""
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
    lines += [
        "## Usage",
        "",
        "| model role | requests | cache hits | tokens in | tokens out | cost |",
    ]
    lines.append("|---|---|---|---|---|---|")
    for role, usage in (summary.get("usage") or {}).items():
        lines.append(
            f"| {role} | {usage.get('requests')} | {usage.get('cache_hits')} | "
            f"{usage.get('input_tokens')} | {usage.get('output_tokens')} | "
            f"${float(usage.get('cost_usd', 0)):.4f} |"
        )
    rejected = [e for e in events if e.get("event") == "rejected"]
    if rejected:
        reasons: dict[str, int] = {}
        for e in rejected:
            reasons[str(e.get("reason"))] = reasons.get(str(e.get("reason")), 0) + 1
        lines += [
            "",
            "## Rejected proposals",
            "",
            ", ".join(f"{reason}: {n}" for reason, n in sorted(reasons.items())),
        ]
    return "\n".join(lines) + "\n"
