"""Locating problems in a task file: YAML lines, dotted field paths, schema and duplicate keys.

pydantic reports where a value failed as a path of keys; these helpers turn that path into the
`data.dev[1].ctx` form users read and into the line of the YAML file that holds it.
"""

from __future__ import annotations

import difflib
import re
import types
from collections.abc import Sequence
from typing import Any, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, ValidationError

from promptopt.errors import Problem


def yaml_line(root: yaml.Node, loc: Sequence[str | int]) -> int:
    """The line of the deepest node of `loc` that exists (keys point at their key)."""
    node = root
    line: int = node.start_mark.line + 1
    for key in loc:
        if isinstance(node, yaml.MappingNode):
            for key_node, value_node in node.value:
                if isinstance(key_node, yaml.ScalarNode) and key_node.value == str(key):
                    line, node = key_node.start_mark.line + 1, value_node
                    break
            else:
                return line
        elif isinstance(node, yaml.SequenceNode) and isinstance(key, int):
            if not 0 <= key < len(node.value):
                return line
            node = node.value[key]
            line = node.start_mark.line + 1
        else:
            return line
    return line


def dotted(loc: Sequence[str | int]) -> str:
    """A location as users write it: `data.dev[1].ctx`."""
    out = ""
    for key in loc:
        out += f"[{key}]" if isinstance(key, int) else (f".{key}" if out else str(key))
    return out


def duplicate_keys(file: str, node: yaml.Node, loc: tuple[str | int, ...]) -> list[Problem]:
    """Every mapping key under `node` that appears twice; PyYAML itself keeps the last silently."""
    problems: list[Problem] = []
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key_node, value_node in node.value:
            key = str(key_node.value)
            if key in seen:
                problems.append(
                    Problem(
                        file,
                        dotted((*loc, key)),
                        "the key appears twice; the later value would silently win",
                        key_node.start_mark.line + 1,
                    )
                )
            seen.add(key)
            problems += duplicate_keys(file, value_node, (*loc, key))
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            problems += duplicate_keys(file, item, (*loc, index))
    return problems


def _models_in(annotation: Any) -> list[Any]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    if get_origin(annotation) in (Union, types.UnionType):
        return [m for arg in get_args(annotation) for m in _models_in(arg)]
    return []


def _model_at(model: type[BaseModel], loc: Sequence[str | int]) -> type[BaseModel] | None:
    """The pydantic model that validates the mapping at `loc`, if there is exactly one."""
    current: type[BaseModel] = model
    keys = list(loc)
    while keys:
        info = current.model_fields.get(str(keys.pop(0)))
        if info is None:
            return None
        annotation = info.annotation
        if get_origin(annotation) is dict and keys:
            keys.pop(0)  # a user-chosen key, such as a model id under `prices`
            annotation = get_args(annotation)[1]
        models = _models_in(annotation)
        if len(models) != 1:
            return None
        current = models[0]
    return current


def schema_problems(
    file: str, root: yaml.Node, exc: ValidationError, model: type[BaseModel]
) -> list[Problem]:
    """Pydantic's errors for `model` as problems located in the file, in friendlier words."""
    problems: list[Problem] = []
    for error in exc.errors():
        loc = tuple(error["loc"])
        kind = error["type"]
        message = error["msg"].removeprefix("Value error, ")
        if kind == "missing":
            message = "required field is missing"
        elif kind == "extra_forbidden":
            parent = _model_at(model, error["loc"][:-1])
            message = f"unknown field {str(loc[-1])!r}"
            if parent is not None:
                valid = list(parent.model_fields)
                close = difflib.get_close_matches(str(loc[-1]), valid, n=1)
                message += f" (did you mean {close[0]!r}?)" if close else ""
                message += f"; valid fields here: {', '.join(valid)}"
        else:
            message = re.sub(r" or instance of \w+", "", message)
            value = error.get("input")
            if kind != "value_error" and isinstance(value, str | int | float | bool):
                message += f" (got {value!r})"
        problems.append(Problem(file, dotted(loc), message, yaml_line(root, loc)))
    return problems
