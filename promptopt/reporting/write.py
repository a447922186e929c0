"""The reports a run folder gets: report.md and report.html, rendered from one view."""

from __future__ import annotations

from promptopt.reporting.html import run_html
from promptopt.reporting.markdown import run_markdown
from promptopt.reporting.view import RunView
from promptopt.run.folder import REPORT_HTML, REPORT_MD, RunFolder


def write_run_reports(folder: RunFolder) -> None:
    """Write report.md and the self-contained report.html into the run folder.

    Args:
        folder: A run folder, finished or interrupted.

    Raises:
        UsageError: A record of the folder is damaged.
    """
    view = RunView.from_folder(folder)
    folder.write_text(REPORT_MD, run_markdown(view))
    folder.write_text(REPORT_HTML, run_html(view))
