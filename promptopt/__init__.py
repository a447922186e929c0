"""promptopt: automatic prompt optimization for black-box LLM APIs.

The Python API (`load_task`, `make_task`, `optimize`, `evaluate`, `compare` and their `_async`
twins) is what the command line calls; see `promptopt.app.api`. It is imported on first use,
so that `import promptopt` and `promptopt --version` stay fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from promptopt.version import __version__

if TYPE_CHECKING:
    from promptopt.app.api import (
        RunResult,
        Task,
        compare,
        compare_async,
        evaluate,
        evaluate_async,
        load_task,
        make_task,
        optimize,
        optimize_async,
    )
    from promptopt.app.evaluate import Evaluation
    from promptopt.errors import PromptoptError, TaskFileError, UsageError
    from promptopt.reporting.diff import DiffReport
    from promptopt.task.prompt import Demo

_API = {
    "RunResult": "promptopt.app.api",
    "Task": "promptopt.app.api",
    "compare": "promptopt.app.api",
    "compare_async": "promptopt.app.api",
    "evaluate": "promptopt.app.api",
    "evaluate_async": "promptopt.app.api",
    "load_task": "promptopt.app.api",
    "make_task": "promptopt.app.api",
    "optimize": "promptopt.app.api",
    "optimize_async": "promptopt.app.api",
    "Evaluation": "promptopt.app.evaluate",
    "DiffReport": "promptopt.reporting.diff",
    "Demo": "promptopt.task.prompt",
    "PromptoptError": "promptopt.errors",
    "TaskFileError": "promptopt.errors",
    "UsageError": "promptopt.errors",
}

__all__ = [
    "Demo",
    "DiffReport",
    "Evaluation",
    "PromptoptError",
    "RunResult",
    "Task",
    "TaskFileError",
    "UsageError",
    "__version__",
    "compare",
    "compare_async",
    "evaluate",
    "evaluate_async",
    "load_task",
    "make_task",
    "optimize",
    "optimize_async",
]


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


def __getattr__(name: str) -> Any:
    module = _API.get(name)
    if module is None:
        raise AttributeError(f"module 'promptopt' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
