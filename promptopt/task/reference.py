"""The task file described from its schema: the JSON Schema editors complete from, and the
field table of docs/task-file.md, both made from the pydantic models so that neither drifts."""

from __future__ import annotations

import json
import types
import typing
from collections.abc import Iterator
from typing import Any, Literal

from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from promptopt.task.modelspec import ModelSpec
from promptopt.task.schema import TaskFile

SCHEMA_ID = "https://json-schema.org/draft/2020-12/schema"
TABLE_START = (
    "<!-- fields: made from the schema by python -m promptopt.task.reference "
    "docs/task-file.md docs/task-file.schema.json -->"
)
TABLE_END = "<!-- end of fields -->"


def json_schema() -> dict[str, Any]:
    """The JSON Schema of a task file."""
    schema = TaskFile.model_json_schema()
    return {"$schema": SCHEMA_ID, **schema, "title": "promptopt task file"}


def json_schema_text() -> str:
    """The JSON Schema as `promptopt schema` prints it and docs/task-file.schema.json holds it."""
    return json.dumps(json_schema(), indent=2, ensure_ascii=False) + "\n"


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    """The pydantic models an annotation names (`Foo | None`, `str | Foo`)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return [m for arg in typing.get_args(annotation) for m in _models_in(arg)]
    return []


def _type_name(annotation: Any) -> str:
    if annotation is type(None):
        return "null"
    if annotation is ModelSpec:
        return "text or mapping"  # `target: openai:gpt-4o-mini` is short for {model: ...}
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return "mapping"
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        names = [_type_name(arg) for arg in typing.get_args(annotation) if arg is not type(None)]
        return " or ".join(dict.fromkeys(names))
    if origin is Literal:
        return " \\| ".join(f"`{value}`" for value in typing.get_args(annotation))
    if origin is list:
        (item,) = typing.get_args(annotation) or (Any,)
        return (
            "list of mappings" if typing.get_origin(item) is dict else f"list of {_type_name(item)}"
        )
    if origin is dict:
        return "mapping"
    plain: dict[Any, str] = {str: "text", int: "integer", float: "number", bool: "boolean"}
    return plain.get(annotation) or str(getattr(annotation, "__name__", annotation))


def _default(field: FieldInfo) -> str:
    if field.is_required():
        return "required"
    value = field.get_default(call_default_factory=True, validated_data={})
    if value is PydanticUndefined or value is None:
        return ""
    if isinstance(value, BaseModel):
        return ""
    if isinstance(value, dict | list) and not value:
        return ""
    if value == "":
        return '`""`'
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    return f"`{value}`"


def fields(
    model: type[BaseModel] = TaskFile,
    prefix: str = "",
    seen: dict[type[BaseModel], str] | None = None,
) -> Iterator[tuple[str, str, str, str]]:
    """Every field of the task file, depth first: dotted path, type, default, description.

    A mapping that appears in several places (a model) has its fields listed at the first.
    """
    seen = {} if seen is None else seen
    for name, field in model.model_fields.items():
        path = f"{prefix}{name}"
        description = field.description or ""
        subs = _models_in(field.annotation)
        repeated = [seen[sub] for sub in subs if sub in seen]
        if repeated:
            description += f" (its fields as `{repeated[0]}`)"
        yield path, _type_name(field.annotation), _default(field), description
        for sub in subs:
            if sub not in seen:
                seen[sub] = path
                yield from fields(sub, f"{path}.", seen)


def field_table() -> str:
    """The Markdown table of every field, between the markers docs/task-file.md keeps it in."""
    rows = [
        TABLE_START,
        "",
        "| field | type | default | meaning |",
        "|---|---|---|---|",
    ]
    pipe = "\\|"  # a literal | inside a table cell
    rows += [
        f"| `{path}` | {kind} | {default} | {description.replace('|', pipe)} |"
        for path, kind, default, description in fields()
    ]
    return "\n".join([*rows, "", TABLE_END])


def with_field_table(document: str) -> str:
    """`document` with the text between its field-table markers replaced by `field_table()`."""
    start, end = document.index(TABLE_START), document.index(TABLE_END) + len(TABLE_END)
    return document[:start] + field_table() + document[end:]


if __name__ == "__main__":
    # python -m promptopt.task.reference docs/task-file.md docs/task-file.schema.json
    import sys
    from pathlib import Path

    doc, schema_file = (Path(arg) for arg in sys.argv[1:3])
    doc.write_text(with_field_table(doc.read_text(encoding="utf-8")), encoding="utf-8")
    schema_file.write_text(json_schema_text(), encoding="utf-8")
