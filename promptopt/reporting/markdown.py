"""Run, diff and history reports and CI summaries as Markdown, from the templates *.md.j2.

Markdown is what a person reads in the run folder (report.md) or in a pull request (the CI
summary, `promptopt diff --format md`). Every figure comes from `promptopt.reporting.view`.
"""

from __future__ import annotations

from pathlib import Path

from promptopt.reporting.diff import DiffReport
from promptopt.reporting.history import HistoryReport
from promptopt.reporting.run_files import RunReport
from promptopt.reporting.templating import render
from promptopt.reporting.view import DiffView, HistoryView, RunView
from promptopt.run.folder import RunFolder

# Enough rows for a pull-request comment; the JSON and HTML formats list every flip.
MAX_MD_FLIPS = 50


def diff_markdown(
    report: DiffReport | DiffView, *, level: int = 1, max_flips: int = MAX_MD_FLIPS
) -> str:
    """A diff report as Markdown that fits a pull-request comment.

    Args:
        report: The diff report, or its view.
        level: The level of the first heading; sections are one level below.
        max_flips: How many flips the table lists; a line says how many more there are.

    Returns:
        The Markdown, ending with a line break.
    """
    view = report if isinstance(report, DiffView) else DiffView.of(report)
    return render("diff.md.j2", view=view.limited(max_flips), level=level)


def run_markdown(report: RunReport | RunView) -> str:
    """The report.md of a finished or interrupted run.

    Args:
        report: What `build_run_report` read from the run folder, or its view.

    Returns:
        The Markdown, ending with a line break.
    """
    view = report if isinstance(report, RunView) else RunView.of(report)
    return render("run.md.j2", run=view.limited(MAX_MD_FLIPS))


def render_run_markdown(folder: RunFolder) -> str:
    """The report.md of the run in `folder` (see `run_markdown`)."""
    return run_markdown(RunView.from_folder(folder))


def ci_summary_markdown(
    folder: RunFolder,
    passed: bool,
    reason: str,
    written_to: Path | None,
    demos_written_to: Path | None = None,
) -> str:
    """The Markdown summary of a CI-mode run: the gate's decision, then initial vs best.

    Args:
        folder: The finished run.
        passed: Whether the best prompt passed the gate.
        reason: Why it passed or not, as one clause.
        written_to: Where the best prompt was written, or None when the prompt file was left
            alone.
        demos_written_to: Where its few-shot demonstrations were written (`--demos-file`), or
            None.

    Returns:
        The Markdown, ending with a line break.
    """
    view = RunView.from_folder(folder).limited(MAX_MD_FLIPS)
    outcome = (
        f"wrote the best prompt to `{written_to}`"
        if written_to is not None
        else "left the prompt file untouched"
    )
    if written_to is not None and demos_written_to is not None:
        outcome += f" and its few-shot demonstrations to `{demos_written_to}`"
    return render("ci_summary.md.j2", run=view, passed=passed, reason=reason, outcome=outcome)


def history_markdown(report: HistoryReport | HistoryView, *, level: int = 1) -> str:
    """A history report as Markdown that fits a pull-request comment.

    Args:
        report: The history report, or its view.
        level: The level of the first heading; sections are one level below.

    Returns:
        The Markdown, ending with a line break.
    """
    view = report if isinstance(report, HistoryView) else HistoryView.of(report)
    return render("history.md.j2", view=view, level=level)
