"""YAML read by the YAML 1.2 core schema: plain scalars become booleans, numbers or null only
in the few spellings YAML 1.2 gives them, and everything else is the text the user wrote.

PyYAML implements YAML 1.1, where `yes`, `no`, `on`, `off`, `y` and `n` are booleans, `012` is
octal, `1:30` is a sexagesimal number and `2026-01-31` a date: a task with `labels: [yes, no]`
would be read as `[True, False]`. This loader keeps PyYAML's parser and safety (no Python
objects) and swaps its implicit resolvers for the YAML 1.2 core ones.
"""

from __future__ import annotations

import re
from typing import Any

import yaml

_BOOL = re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$")
_NULL = re.compile(r"^(?:~|null|Null|NULL|)$")
_INT = re.compile(r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$")
_FLOAT = re.compile(
    r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?"
    r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"
)


class CoreLoader(yaml.SafeLoader):
    """A safe loader with the YAML 1.2 core schema's implicit types."""


def _construct_bool(loader: yaml.SafeLoader, node: yaml.Node) -> bool:
    return str(loader.construct_scalar(node)).lower() == "true"  # type: ignore[arg-type]


def _construct_int(loader: yaml.SafeLoader, node: yaml.Node) -> int:
    text = str(loader.construct_scalar(node))  # type: ignore[arg-type]
    if text.startswith(("0o", "0x")):
        return int(text, 0)
    # Leading zeros are decimal in YAML 1.2 (`012` is 12, not octal 10).
    return int(text, 10)


def _construct_float(loader: yaml.SafeLoader, node: yaml.Node) -> float:
    text = str(loader.construct_scalar(node)).lower()  # type: ignore[arg-type]
    sign = -1.0 if text.startswith("-") else 1.0
    body = text.lstrip("+-")
    if body == ".inf":
        return sign * float("inf")
    if body == ".nan":
        return float("nan")
    return float(text)


# Emptied, so that only the resolvers added below apply (add_implicit_resolver would otherwise
# copy SafeLoader's YAML 1.1 table into the subclass).
CoreLoader.yaml_implicit_resolvers = {}
for _tag, _pattern, _first in (
    ("tag:yaml.org,2002:bool", _BOOL, list("tTfF")),
    ("tag:yaml.org,2002:null", _NULL, ["~", "n", "N", ""]),
    ("tag:yaml.org,2002:int", _INT, list("-+0123456789")),
    ("tag:yaml.org,2002:float", _FLOAT, list("-+.0123456789")),
    ("tag:yaml.org,2002:merge", re.compile(r"^(?:<<)$"), ["<"]),
):
    CoreLoader.add_implicit_resolver(_tag, _pattern, _first)
CoreLoader.add_constructor("tag:yaml.org,2002:bool", _construct_bool)
CoreLoader.add_constructor("tag:yaml.org,2002:int", _construct_int)
CoreLoader.add_constructor("tag:yaml.org,2002:float", _construct_float)


def load(text: str) -> Any:
    """The data of a YAML document, read with the YAML 1.2 core schema."""
    return yaml.load(text, Loader=CoreLoader)


def compose(text: str) -> yaml.Node | None:
    """The node tree of a YAML document (for locating fields by line)."""
    return yaml.compose(text, Loader=CoreLoader)
