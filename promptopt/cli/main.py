"""The command line: the typer app and its commands. The CLI is the only code that prints or
exits; each command parses its options, calls the application layer and prints the result."""

from __future__ import annotations

from typing import Annotated

import typer

from promptopt.cli.cache import cache_app
from promptopt.cli.common import EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE, run_async, stdout
from promptopt.cli.diff import diff_command
from promptopt.cli.envvars import EnvvarGroup
from promptopt.cli.eval import eval_command
from promptopt.cli.history import history_command
from promptopt.cli.report import report_command
from promptopt.cli.run import run_command
from promptopt.cli.schema import schema_command
from promptopt.cli.strategies import strategies_command
from promptopt.cli.validate import validate_command
from promptopt.version import __version__

__all__ = ["EXIT_INTERRUPTED", "EXIT_USAGE", "app", "main", "run_async"]

app = typer.Typer(
    name="promptopt",
    help="Automatic prompt optimization for black-box LLM APIs.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
    cls=EnvvarGroup,
    context_settings={"help_option_names": ["-h", "--help"]},
    add_completion=False,
    # Plain help: in rich mode, help strings are markup, and `[default: the task's]` vanished.
    rich_markup_mode=None,
)
app.command("eval")(eval_command)
app.command("validate")(validate_command)
app.add_typer(cache_app, name="cache")
app.command("run")(run_command)
app.command("strategies")(strategies_command)
app.command("diff")(diff_command)
app.command("report")(report_command)
app.command("history")(history_command)
app.command("schema")(schema_command)


def _version(value: bool) -> None:
    if value:
        stdout().print(f"promptopt {__version__}")
        raise typer.Exit(EXIT_OK)


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Show the version."),
    ] = False,
) -> None:
    """Automatic prompt optimization for black-box LLM APIs."""


def main() -> None:
    """Console-script entry point."""
    app()
