"""`promptopt validate`: check a task file and its data."""

from __future__ import annotations

import typer

from promptopt.cli.common import EXIT_USAGE, TaskArg, load, stderr, stdout


def validate_command(task_path: TaskArg) -> None:
    """Check a task file and its data; report every problem with its file and field."""
    from promptopt.task.loader import validate_task

    problems = validate_task(task_path)
    if problems:
        err = stderr()
        for problem in problems:
            err.print(str(problem), highlight=False, markup=False)
        err.print(f"{len(problems)} problem(s) found", highlight=False)
        raise typer.Exit(EXIT_USAGE)
    task = load(task_path)
    sizes = ", ".join(f"{name} {len(rows)}" for name, rows in task.splits.items())
    stdout().print(f"{task_path}: ok ({sizes})", highlight=False)
