"""Loading a task file: the YAML, its schema and its data, checked together.

`load_task` either returns a fully checked task or raises `TaskFileError` carrying every problem it
found, each located by file, field and line, so a user can fix them all in one pass.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from promptopt.errors import Problem, TaskFileError, UsageError
from promptopt.task.data import DataLoader, resolve_path, template_values
from promptopt.task.example import Example
from promptopt.task.locate import duplicate_keys, schema_problems, yaml_line
from promptopt.task.metricspec import MetricSpec
from promptopt.task.schema import SPLITS, DataSpec, TaskFile
from promptopt.util import yamlcore
from promptopt.util.hashing import content_hash
from promptopt.util.template import render_template, template_fields

_M = TypeVar("_M", bound=BaseModel)

MetricFunction = Callable[[str, Example], float]
"""Scores a model output against an example; 1.0 is fully correct, 0.0 fully wrong."""


@dataclass(frozen=True)
class LoadedTask:
    """A validated task file with its examples, split by name."""

    path: Path
    spec: TaskFile
    splits: dict[str, tuple[Example, ...]]
    data_hash: str
    metric_function: MetricFunction | None = None
    """A Python callable that scores instead of the metric section (tasks built in Python)."""

    @property
    def task_hash(self) -> str:
        """sha256 of the canonical spec JSON; follows the spec when overrides replace it."""
        return content_hash(self.spec.model_dump(mode="json"))

    def render_input(self, example: Example) -> str:
        """The user message for an example."""
        return render_template(
            self.spec.input_template, template_values(example.fields, self.spec.data)
        )

    def split(self, name: str) -> tuple[Example, ...]:
        """The examples of a split; a clear error when the task has no such split."""
        if name not in SPLITS:
            raise UsageError(f"unknown split {name!r}: choose one of {', '.join(SPLITS)}")
        if name not in self.splits:
            hint = (
                f"add split.{name} under data"
                if self.spec.data.file is not None
                else f"add data.{name}"
            )
            raise TaskFileError(
                [Problem(str(self.path), f"data.{name}", f"the task has no {name} split; {hint}")]
            )
        return self.splits[name]

    def require_metric(self, command: str) -> MetricSpec:
        """The task's metric; for a task without one (searched by preferences), an error
        saying that `command` needs scores and what to do instead."""
        if self.spec.metric is None:
            raise TaskFileError(
                [
                    Problem(
                        str(self.path),
                        "metric",
                        f"{command} scores answers against expected ones, but the task has no "
                        "metric; add a metric section (and targets), or optimize it by "
                        "preferences with run --strategy apohf and a judge or --human",
                    )
                ]
            )
        return self.spec.metric

    def resolve(self, relative: str | Path) -> Path:
        """A path written in the task file, relative to the file's folder."""
        return resolve_path(self.path, str(relative))


def load_task(path: Path, *, only: str | None = None, limit: int | None = None) -> LoadedTask:
    """Load and check a task file and its data; raises `TaskFileError` with every problem.

    `only` reads one split alone, and `limit` its first `limit` usable rows, for a command that
    scores part of one split (`eval --limit`); the other splits are not read or checked. A
    data file cut into splits by `data.split` is read whole: its split depends on every row.
    """
    task, problems = _load(Path(path), only, limit)
    if problems or task is None:
        raise TaskFileError(problems)
    return task


def validate_task(path: Path) -> list[Problem]:
    """Every problem in a task file and its data; empty when the task is valid."""
    return _load(Path(path))[1]


def task_from_mapping(
    raw: Mapping[str, Any],
    *,
    base_dir: Path,
    metric_function: MetricFunction | None = None,
) -> LoadedTask:
    """A task built in Python: `raw` is what a task file would hold (data as inline lists of
    mappings, or paths relative to `base_dir`), checked exactly like a file.

    `metric_function(output, example) -> float` replaces the metric section's scoring; the
    section is then `{type: python, function: <the function's name>}` unless given.
    Raises `TaskFileError` with every problem, located as in a file named `<python>`.
    """
    data = dict(raw)
    if metric_function is not None and "metric" not in data:
        name = getattr(metric_function, "__qualname__", "metric")
        data["metric"] = {"type": "python", "function": f"<python>:{name}"}
    try:
        text = yaml.safe_dump(data, sort_keys=False, allow_unicode=True)
    except yaml.YAMLError as exc:
        # numpy scalars, pandas values and other objects have no YAML form.
        raise TaskFileError(
            [
                Problem(
                    "<python>",
                    "",
                    "the task holds a value that is not plain data (str, int, float, bool, "
                    f"None, list, dict): {exc}; convert it first (for example with .tolist() "
                    "or str())",
                )
            ]
        ) from None
    task, problems = _load_text(text, base_dir / "<python>")
    if problems or task is None:
        raise TaskFileError(problems)
    return replace(task, metric_function=metric_function)


def _load(
    path: Path, only: str | None = None, limit: int | None = None
) -> tuple[LoadedTask | None, list[Problem]]:
    file = str(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        return None, [Problem(file, "", f"task file not found: {path.resolve()}")]
    except IsADirectoryError:
        return None, [Problem(file, "", "is a folder; give the path of a task .yaml file")]
    except UnicodeDecodeError as exc:
        return None, [Problem(file, "", f"is not UTF-8 text ({exc.reason})")]
    except OSError as exc:
        return None, [Problem(file, "", f"cannot be read: {exc.strerror}")]
    except ValueError as exc:
        return None, [Problem(file, "", f"invalid path: {exc}")]
    return _load_text(text, path, only, limit)


def _load_text(
    text: str, path: Path, only: str | None = None, limit: int | None = None
) -> tuple[LoadedTask | None, list[Problem]]:
    file = str(path)
    try:
        root = yamlcore.compose(text)
        raw = yamlcore.load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        reason = getattr(exc, "problem", None) or str(exc)
        return None, [Problem(file, "", f"invalid YAML: {reason}", line)]
    if not isinstance(raw, dict) or root is None:
        kind = "empty" if raw is None else f"a {type(raw).__name__}"
        return None, [
            Problem(file, "", f"must be a YAML mapping of task settings, but it is {kind}")
        ]

    problems = duplicate_keys(file, root, ())
    spec: TaskFile | None = None
    try:
        spec = TaskFile.model_validate(raw)
    except ValidationError as exc:
        problems += schema_problems(file, root, exc, TaskFile)

    # Even when another section is invalid, check the data too, so that one pass finds everything.
    data = spec.data if spec is not None else _section(DataSpec, raw.get("data"))
    metric = spec.metric if spec is not None else _section(MetricSpec, raw.get("metric"))
    template = spec.input_template if spec is not None else _raw_template(raw)
    if data is None:
        return None, problems
    if template is not None:
        problems += _template_leaks(file, root, template, data)

    # A task without a metric is searched by preferences (which answer is better?), so its
    # rows need no expected answer; one whose metric failed to parse still wants them.
    labelled = spec.metric is not None if spec is not None else "metric" in raw
    loader = DataLoader(path, root, data, targets_required=labelled, only=only, limit=limit)
    splits = loader.load()
    loader.check(template, metric)
    problems += loader.finish()
    if problems or spec is None:
        return None, problems
    payload = {
        name: [{"id": e.id, "fields": dict(e.fields), "targets": list(e.targets)} for e in rows]
        for name, rows in splits.items()
    }
    return LoadedTask(path=path, spec=spec, splits=splits, data_hash=content_hash(payload)), []


def _template_leaks(file: str, root: yaml.Node, template: str, data: DataSpec) -> list[Problem]:
    leaked = [n for n in template_fields(template) if n in (data.target_field, data.targets_field)]
    return [
        Problem(
            file,
            "input_template",
            f"{{{{{name}}}}} shows the expected answer to the model; remove it",
            yaml_line(root, ("input_template",)),
        )
        for name in leaked
    ]


def _section(model: type[_M], raw: Any) -> _M | None:
    try:
        return model.model_validate(raw)
    except ValidationError:
        return None


def _raw_template(raw: Mapping[str, Any]) -> str | None:
    value = raw.get("input_template", "{{input}}")
    if isinstance(value, str) and template_fields(value) and "" not in template_fields(value):
        return value
    return None
