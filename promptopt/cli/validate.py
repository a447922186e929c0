"""`promptopt validate`: check a task file and its data, and everything a run checks before
calling a model."""

from __future__ import annotations

from promptopt.cli.common import TaskArg, fail_with_problems, load, stdout


def validate_command(task_path: TaskArg) -> None:
    """Check a task file, its data, strategy, metric, models and budget without calling a
    model; report every problem with its file, field and line."""
    from promptopt.app.checks import run_problems
    from promptopt.task.loader import validate_task

    problems = validate_task(task_path)
    if problems:
        fail_with_problems(problems)
    task = load(task_path)
    problems = run_problems(task)
    if problems:
        fail_with_problems(problems)
    sizes = ", ".join(f"{name} {len(rows)}" for name, rows in task.splits.items())
    stdout().print(f"{task_path}: ok ({sizes})", highlight=False)
