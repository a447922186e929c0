"""docs/task-file.md, its JSON Schema copy and `promptopt schema` follow the task schema."""

from __future__ import annotations

import json
import re
import typing
from typing import Any

import pytest
from typer.testing import CliRunner

from promptopt.cli.main import app
from promptopt.task.metricspec import MetricType
from promptopt.task.reference import (
    TABLE_END,
    TABLE_START,
    field_table,
    fields,
    json_schema,
    json_schema_text,
)
from promptopt.task.schema import TaskFile
from promptopt.util import yamlcore
from tests.support import REPO

DOC = REPO / "docs" / "task-file.md"
SCHEMA = REPO / "docs" / "task-file.schema.json"
REGENERATE = "python -m promptopt.task.reference docs/task-file.md docs/task-file.schema.json"
MINIMAL: dict[str, Any] = {
    "name": "t",
    "prompt": "p",
    "data": {"dev": [{"input": "a", "target": "b"}]},
    "metric": {"type": "exact"},
}


def doc_text() -> str:
    return DOC.read_text(encoding="utf-8")


def test_the_field_table_is_the_schemas() -> None:
    text = doc_text()
    start, end = text.index(TABLE_START), text.index(TABLE_END) + len(TABLE_END)
    assert text[start:end] == field_table(), f"the schema changed: run {REGENERATE}"


def test_the_field_table_names_every_field() -> None:
    paths = [path for path, *_ in fields()]
    for path in ("data.input_field", "metric.pattern", "models.target.base_url", "prompt.demos.k"):
        assert path in paths
    assert all(f"`{path}`" in doc_text() for path in paths)


def test_the_schema_copy_is_current() -> None:
    assert SCHEMA.read_text(encoding="utf-8") == json_schema_text(), f"run {REGENERATE}"


def test_promptopt_schema_prints_the_json_schema() -> None:
    result = CliRunner().invoke(app, ["schema"])
    assert result.exit_code == 0
    schema = json.loads(result.stdout)
    assert schema == json_schema()
    # metric is optional: a task without one is searched by preferences.
    assert set(schema["required"]) == {"name", "prompt", "data"}
    model = schema["$defs"]["ModelSpec"]["anyOf"]
    assert model[0]["type"] == "string"  # `target: openai:gpt-4o-mini`


@pytest.mark.parametrize("metric", typing.get_args(MetricType))
def test_every_metric_type_has_a_section_with_an_example(metric: str) -> None:
    text = doc_text()
    section = text.split(f"### `{metric}`\n", 1)[1].split("\n### ", 1)[0]
    assert f"type: {metric}" in section


def yaml_blocks() -> list[str]:
    return re.findall(r"```yaml\n(.*?)```", doc_text(), re.DOTALL)


def test_every_yaml_example_is_valid() -> None:
    blocks = yaml_blocks()
    assert len(blocks) > 15
    for block in blocks:
        data = yamlcore.load(block)
        assert isinstance(data, dict), block
        task = data if "name" in data else {**MINIMAL, **data}
        TaskFile.model_validate(task)


def test_the_first_example_keeps_yes_and_no_as_text() -> None:
    first = yamlcore.load(yaml_blocks()[0])
    assert first["metric"]["labels"] == ["yes", "no"]


def test_readme_links_the_reference_and_example_tasks_name_the_schema() -> None:
    assert "(docs/task-file.md)" in (REPO / "README.md").read_text(encoding="utf-8")
    for task in sorted((REPO / "tasks").glob("*.yaml")):
        first = task.read_text(encoding="utf-8").splitlines()[0]
        assert first == "# yaml-language-server: $schema=../docs/task-file.schema.json", task
        assert (task.parent / "../docs/task-file.schema.json").resolve() == SCHEMA
