"""The command line: the typer app and its commands. The CLI is the only code that prints or
exits; each command parses its options, calls the application layer and prints the result."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from promptopt.cli.cache import cache_app
from promptopt.cli.common import (
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    fail,
    run_async,
    stderr,
    stdout,
)
from promptopt.cli.completion import PROG_NAME, RootGroup, completion_command
from promptopt.cli.diff import diff_command
from promptopt.cli.eval import eval_command
from promptopt.cli.history import history_command
from promptopt.cli.init import init_command
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
    cls=RootGroup,
    context_settings={"help_option_names": ["-h", "--help"]},
    # Typer's --install-completion edits shell startup files; `promptopt completion SHELL`
    # prints the script instead, for the user to put where they like.
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
app.command("init")(init_command)
app.command("completion")(completion_command)


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
    env_file: Annotated[
        Path | None,
        typer.Option(
            "--env-file",
            help="Read environment variables (API keys, PROMPTOPT_* settings) from this file "
            "[default: ./.env if present]; variables already set are never overridden.",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Automatic prompt optimization for black-box LLM APIs."""
    import os

    from promptopt.cli.envfile import EnvFileError, load_env_file

    # Here, before the subcommand parses its options: its PROMPTOPT_* variables may come from
    # the file.
    try:
        loaded = load_env_file(env_file, os.environ)
    except EnvFileError as exc:
        fail(f"--env-file: {exc}", EXIT_USAGE)
    for line in loaded.bad_lines:
        stderr().print(
            f"warning: {loaded.path}:{line}: not NAME=value; the line is ignored",
            highlight=False,
        )


def main() -> None:
    """Console-script entry point."""
    # The name, not argv[0]: `python -m promptopt` must answer completion requests and print
    # usage lines under the same name as the console script.
    app(prog_name=PROG_NAME)
