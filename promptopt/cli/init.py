"""`promptopt init`: write a small working task to start from."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from promptopt.cli.common import fail_on, stderr
from promptopt.errors import PromptoptError


def init_command(
    folder: Annotated[
        Path,
        typer.Argument(help="Folder to write the task into (created if missing).", metavar="DIR"),
    ] = Path("."),
    force: Annotated[
        bool, typer.Option("--force", help="Overwrite files of an earlier init.")
    ] = False,
) -> None:
    """Write a small working task: task.yaml (a prompt, a label metric and a small budget),
    its train/dev/test data and the task file's JSON Schema for editor completion.

    Existing files are never overwritten without --force. Exit codes: 0 written; 2 a file
    exists (nothing written) or DIR is not a folder.
    """
    from promptopt.app.scaffold import TASK_FILE, write_scaffold

    try:
        scaffold = write_scaffold(folder, force=force)
    except PromptoptError as exc:
        fail_on(exc)
    except OSError as exc:
        fail_on(PromptoptError(f"DIR: cannot write into {folder}: {exc.strerror}"))
    err = stderr()
    for path in scaffold.written:
        err.print(f"wrote {path}", highlight=False)
    task = folder / TASK_FILE
    err.print("next:", highlight=False)
    err.print(f"  promptopt validate {task}", highlight=False)
    err.print(f"  promptopt run {task} --dry-run", highlight=False)
    err.print(f"  promptopt run {task}", highlight=False)
