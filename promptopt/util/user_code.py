"""Loading a user's Python function from a file named in a task (metrics, scripted models)."""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from pathlib import Path
from typing import Any

from promptopt.errors import UsageError


def load_function(path: Path, name: str, *, what: str) -> Callable[..., Any]:
    """Import `name` from the Python file at `path`; `what` names the task-file field in errors."""
    if not path.is_file():
        raise UsageError(f"{what}: file {path} not found (paths are relative to the task file)")
    module_spec = importlib.util.spec_from_file_location(f"promptopt_user_{path.stem}", path)
    if module_spec is None or module_spec.loader is None:
        raise UsageError(f"{what}: cannot import {path} as a Python module")
    module = importlib.util.module_from_spec(module_spec)
    try:
        module_spec.loader.exec_module(module)
    except Exception as exc:
        raise UsageError(f"{what}: importing {path} failed: {exc!r}") from exc
    function = getattr(module, name, None)
    if not callable(function):
        raise UsageError(f"{what}: {path} has no function {name!r}")
    return function  # type: ignore[no-any-return]
