"""Bounds on how deeply user data may nest.

Parsers, validators and the JSON encoder all recurse, so a row nested tens of thousands of
levels deep would end in a RecursionError far from the file that caused it. Everything a user
writes is checked against one limit, well below Python's recursion limit and far above any real
task.
"""

from __future__ import annotations

from typing import Any

MAX_DEPTH = 100
"""The deepest nesting of lists and mappings accepted in a task file or a data row."""


def too_deep(value: Any, limit: int = MAX_DEPTH) -> bool:
    """Whether `value` nests lists or dicts more than `limit` levels deep (checked without
    recursion, so any depth can be measured)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list | tuple):
            children = item
        else:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children)
    return False
