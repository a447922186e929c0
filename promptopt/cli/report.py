"""`promptopt report`: render a run folder without calling a model."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from promptopt.cli.common import OutputOpt, emit, fail_on, report_format
from promptopt.errors import PromptoptError


def report_command(
    run_dir: Annotated[Path, typer.Argument(help="A run folder, finished or interrupted.")],
    fmt: Annotated[
        str | None, typer.Option("--format", help="md or html [default: from -o, else md].")
    ] = None,
    output: OutputOpt = None,
) -> None:
    """Render a run: score trajectory, lineage of the best prompt, initial vs best on test,
    usage and cost. Calls no model."""
    from promptopt.reporting.html import run_html
    from promptopt.reporting.markdown import run_markdown
    from promptopt.reporting.view import RunView
    from promptopt.run.folder import RunFolder

    kind = report_format(fmt, output, ("md", "html"))
    try:
        view = RunView.from_folder(RunFolder.open(run_dir))
    except PromptoptError as exc:
        fail_on(exc)
    emit(run_markdown(view) if kind == "md" else run_html(view), output)
