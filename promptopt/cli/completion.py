"""Shell completion through click's `_PROMPTOPT_COMPLETE` mechanism, as typer carries it: the
shell runs `promptopt` with `_PROMPTOPT_COMPLETE=complete_bash` (or _zsh, _fish) and the words
typed so far, and the command tree answers with the commands, options and files that fit.

Typer offers this through `--install-completion`, which edits shell startup files; here it is
off, and `promptopt completion SHELL` prints the script for the user to load where they like.
Typer registers its completion scripts only when it adds those options, so the root group
registers them itself before answering.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from enum import StrEnum
from typing import Annotated, Any

import typer

from promptopt.cli.envvars import EnvvarGroup

PROG_NAME = "promptopt"
COMPLETE_VAR = "_PROMPTOPT_COMPLETE"


class Shell(StrEnum):
    """The shells a completion script is written for."""

    bash = "bash"
    zsh = "zsh"
    fish = "fish"


def _register_scripts() -> None:
    from typer._completion_classes import completion_init

    completion_init()


class RootGroup(EnvvarGroup):
    """The root command group; answers completion requests under `_PROMPTOPT_COMPLETE`."""

    def _main_shell_completion(
        self,
        ctx_args: MutableMapping[str, Any],
        prog_name: str,
        complete_var: str | None = None,
    ) -> None:
        import os

        if os.environ.get(complete_var or COMPLETE_VAR):
            _register_scripts()
        super()._main_shell_completion(ctx_args, prog_name, complete_var or COMPLETE_VAR)


def completion_script(shell: str) -> str:
    """The completion script of `shell` (bash, zsh or fish) for `promptopt`."""
    from typer._completion_shared import get_completion_script

    _register_scripts()
    return get_completion_script(prog_name=PROG_NAME, complete_var=COMPLETE_VAR, shell=shell)


def completion_command(
    shell: Annotated[Shell, typer.Argument(help="bash, zsh or fish.", show_default=False)],
) -> None:
    """Print the shell completion script for bash, zsh or fish.

    Load it in the current shell, or add the line to your shell's startup file:

      bash (~/.bashrc):   eval "$(promptopt completion bash)"

      zsh (~/.zshrc):     eval "$(promptopt completion zsh)"

      fish:               promptopt completion fish > ~/.config/fish/completions/promptopt.fish
    """
    import sys

    script = completion_script(shell.value)
    sys.stdout.write(script if script.endswith("\n") else script + "\n")
