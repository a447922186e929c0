"""YAML read by the YAML 1.2 core schema: plain scalars become booleans, numbers or null only
in the few spellings YAML 1.2 gives them, and everything else is the text the user wrote.

PyYAML implements YAML 1.1, where `yes`, `no`, `on`, `off`, `y` and `n` are booleans, `012` is
octal, `1:30` is a sexagesimal number and `2026-01-31` a date: a task with `labels: [yes, no]`
would be read as `[True, False]`. This loader keeps PyYAML's parser and safety (no Python
objects) and swaps its implicit resolvers for the YAML 1.2 core ones.

It also bounds what a hostile file can cost: aliases may repeat at most `MAX_ALIAS_NODES` values
in all (a 25-line "billion laughs" file would otherwise expand to a billion values in whatever
walks the data next), and lists and mappings may nest at most `MAX_DEPTH` levels (the composer
recurses, so deeper files would end in a RecursionError).
"""

from __future__ import annotations

import re
from typing import Any

import yaml
from yaml.composer import ComposerError
from yaml.events import AliasEvent, MappingStartEvent, SequenceStartEvent

from promptopt.util.nesting import MAX_DEPTH

MAX_ALIAS_NODES = 100_000
"""How many values aliases may repeat in one document: far more than sharing a few settings
or rows needs, far fewer than an alias bomb makes."""

_BOOL = re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$")
_NULL = re.compile(r"^(?:~|null|Null|NULL|)$")
_INT = re.compile(r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$")
_FLOAT = re.compile(
    r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?"
    r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"
)


class CoreLoader(yaml.SafeLoader):
    """A safe loader with the YAML 1.2 core schema's implicit types, bounded alias expansion
    and bounded nesting."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        # The size of each composed node with its aliases expanded, by id: an alias costs the
        # size of what it repeats, which is known once that node is complete.
        self._sizes: dict[int, int] = {}
        self._repeated = 0
        self._depth = 0

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        """A node of the document, refused when aliases repeat too much or nesting is too deep."""
        event = self.peek_event()  # type: ignore[no-untyped-call]
        if isinstance(event, AliasEvent):
            node = super().compose_node(parent, index)
            size = self._sizes.get(id(node))
            if size is None:
                raise _refused(
                    f"the alias *{event.anchor} is used inside the value it names; "
                    "a value cannot contain itself",
                    event.start_mark,
                )
            self._repeated += size
            if self._repeated > MAX_ALIAS_NODES:
                raise _refused(
                    f"aliases repeat more than {MAX_ALIAS_NODES} values (an alias bomb?); "
                    "write the values out or use fewer aliases",
                    event.start_mark,
                )
            return node
        collection = isinstance(event, SequenceStartEvent | MappingStartEvent)
        if collection:
            self._depth += 1
            if self._depth > MAX_DEPTH:
                raise _refused(
                    f"lists and mappings nest more than {MAX_DEPTH} levels deep here; "
                    "flatten the data",
                    event.start_mark,
                )
        node = super().compose_node(parent, index)
        if collection:
            self._depth -= 1
        children: list[yaml.Node] = []
        if isinstance(node, yaml.SequenceNode):
            children = node.value
        elif isinstance(node, yaml.MappingNode):
            children = [n for pair in node.value for n in pair]
        self._sizes[id(node)] = 1 + sum(self._sizes.get(id(child), 1) for child in children)
        return node


def _refused(problem: str, mark: Any) -> ComposerError:
    # Located like PyYAML's own errors, so the task loader reports the line.
    return ComposerError(None, None, problem, mark)


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
