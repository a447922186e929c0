"""The task file: its schema, its data (JSONL, CSV or inline rows), splits and input templates.

`load_task` either returns a fully checked task or raises `TaskFileError` carrying every problem it
found, each located by file, field and line, so a user can fix them all in one pass.
"""

from __future__ import annotations

import contextlib
import csv
import difflib
import json
import math
import random
import re
import types
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from promptopt.errors import Problem, PromptoptError, TaskFileError, UsageError
from promptopt.task.example import Example
from promptopt.task.metricspec import MetricSpec
from promptopt.task.modelspec import ModelSpec, Price
from promptopt.util.hashing import content_hash

SPLITS: tuple[str, ...] = ("train", "dev", "test")

# More row problems than this in one data file are summarised: the first ones show the pattern.
MAX_ROW_PROBLEMS_PER_FILE = 20

_PLACEHOLDER = re.compile(r"\{\{(.*?)\}\}", re.DOTALL)

DataSource = str | list[dict[str, Any]]
_M = TypeVar("_M", bound=BaseModel)


# ---------------------------------------------------------------------------------------------
# templates


class TemplateFieldError(PromptoptError):
    """A template names a field the values do not have."""

    def __init__(self, name: str, available: Sequence[str]) -> None:
        self.field = name
        listed = ", ".join(sorted(available)) or "none"
        super().__init__(
            f"the template uses {{{{{name}}}}} but there is no field {name!r} ({listed})"
        )


def template_fields(template: str) -> tuple[str, ...]:
    """The field names a `{{field}}` template uses, in order of first use."""
    names: dict[str, None] = {}
    for match in _PLACEHOLDER.finditer(template):
        names.setdefault(match.group(1).strip(), None)
    return tuple(names)


def _as_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, default=str)


def render_template(template: str, fields: Mapping[str, Any]) -> str:
    """Replace each `{{ name }}` with the field's value (non-strings as JSON).

    Raises `TemplateFieldError` for a field that is missing or null.
    """

    def substitute(match: re.Match[str]) -> str:
        name = match.group(1).strip()
        value = fields.get(name)
        if value is None:
            raise TemplateFieldError(name, list(fields))
        return _as_text(value)

    return _PLACEHOLDER.sub(substitute, template)


# ---------------------------------------------------------------------------------------------
# schema


class _Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class SplitSpec(_Strict):
    """How many rows of `data.file` go to each split: a count (int) or a fraction (0 < x <= 1)."""

    train: int | float | None = None
    dev: int | float | None = None
    test: int | float | None = None

    @field_validator("train", "dev", "test", mode="before")
    @classmethod
    def _size(cls, value: Any) -> Any:
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError("must be a row count (like 50) or a fraction (like 0.25)")
        if value <= 0:
            raise ValueError(f"must be greater than 0 (got {value})")
        if isinstance(value, float) and value > 1:
            raise ValueError(
                f"a fraction must be at most 1 (got {value}); write a whole number for a row count"
            )
        return value

    @model_validator(mode="after")
    def _fractions_fit(self) -> SplitSpec:
        total = sum(v for v in (self.train, self.dev, self.test) if isinstance(v, float))
        if total > 1 + 1e-9:
            raise ValueError(f"the fractions add up to {total:g}, more than 1")
        return self


class DataSpec(_Strict):
    """Where the examples come from and which fields hold input, targets and ids."""

    train: DataSource | None = None
    dev: DataSource | None = None
    test: DataSource | None = None
    file: DataSource | None = None
    split: SplitSpec | None = None
    seed: int = 0
    input_field: str = Field(default="input", min_length=1)
    target_field: str = Field(default="target", min_length=1)
    targets_field: str = Field(default="targets", min_length=1)
    id_field: str = Field(default="id", min_length=1)

    @field_validator("train", "dev", "test", "file", mode="before")
    @classmethod
    def _source(cls, value: Any) -> Any:
        if value is None:
            return None
        if isinstance(value, str):
            if not value.strip():
                raise ValueError("the path is empty")
            return value
        if isinstance(value, list) and all(isinstance(row, dict) for row in value):
            # Field names are text, as in JSONL and CSV rows, whatever YAML made of them.
            return [{str(key): item for key, item in row.items()} for row in value]
        raise ValueError("must be a path to a .jsonl or .csv file, or a list of mappings")

    @model_validator(mode="after")
    def _one_layout(self) -> DataSpec:
        named = [name for name in SPLITS if getattr(self, name) is not None]
        if self.file is not None:
            if named:
                raise ValueError(
                    f"give either 'file' with 'split', or {'/'.join(SPLITS)}, not both "
                    f"(found file and {', '.join(named)})"
                )
            if self.split is None:
                raise ValueError(
                    "'file' needs 'split', e.g. split: {train: 50, dev: 50, test: 100}"
                )
            if self.split.dev is None:
                raise ValueError("'split' needs a dev size: the search scores prompts on dev")
        else:
            if self.split is not None:
                raise ValueError("'split' only applies with 'file'")
            if self.dev is None:
                raise ValueError(
                    "no dev data: set data.dev (the search scores prompts on it), "
                    "or data.file with split"
                )
        return self

    def has_split(self, name: str) -> bool:
        """Whether the task file provides the named split."""
        if self.file is not None:
            return self.split is not None and getattr(self.split, name) is not None
        return getattr(self, name) is not None


class ModelsSpec(_Strict):
    """The models a run uses; CLI flags may supply or replace them."""

    target: ModelSpec | None = None
    optimizer: ModelSpec | None = None
    judge: ModelSpec | None = None


class BudgetSpec(_Strict):
    """Hard caps; any subset may be set."""

    target_calls: int | None = Field(default=None, gt=0)
    optimizer_calls: int | None = Field(default=None, gt=0)
    cost_usd: float | None = Field(default=None, gt=0)


class SearchSpec(_Strict):
    """Which strategy searches, with what seed, budget and strategy parameters."""

    strategy: str = Field(default="ape", min_length=1)
    seed: int = 0
    budget: BudgetSpec = Field(default_factory=BudgetSpec)
    params: dict[str, Any] = Field(default_factory=dict)


class TaskFile(_Strict):
    """The whole task file (see DESIGN.md, "Task file")."""

    name: str = Field(min_length=1)
    description: str = ""
    prompt: str
    input_template: str = "{{input}}"
    data: DataSpec
    metric: MetricSpec
    models: ModelsSpec = Field(default_factory=ModelsSpec)
    search: SearchSpec = Field(default_factory=SearchSpec)
    prices: dict[str, Price] = Field(default_factory=dict)

    @field_validator("prompt")
    @classmethod
    def _prompt_not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("the initial prompt is empty")
        return value

    @field_validator("input_template")
    @classmethod
    def _template_has_fields(cls, value: str) -> str:
        names = template_fields(value)
        if "" in names:
            raise ValueError("'{{}}' names no field; write e.g. {{input}}")
        if not names:
            raise ValueError(
                "has no {{field}} placeholder, so every example would send the same message"
            )
        return value

    @field_validator("prices")
    @classmethod
    def _price_ids(cls, value: dict[str, Price]) -> dict[str, Price]:
        for key in value:
            if ":" not in key:
                raise ValueError(f"{key!r} must be a model id written provider:name")
        return value


# ---------------------------------------------------------------------------------------------
# the loaded task


@dataclass(frozen=True)
class LoadedTask:
    """A validated task file with its examples, split by name."""

    path: Path
    spec: TaskFile
    splits: dict[str, tuple[Example, ...]]
    data_hash: str

    @property
    def task_hash(self) -> str:
        """sha256 of the canonical spec JSON; follows the spec when overrides replace it."""
        return content_hash(self.spec.model_dump(mode="json"))

    def render_input(self, example: Example) -> str:
        """The user message for an example."""
        return render_template(
            self.spec.input_template, _render_fields(example.fields, self.spec.data)
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

    def resolve(self, relative: str | Path) -> Path:
        """A path written in the task file, relative to the file's folder."""
        return _resolve(self.path, str(relative))


def load_task(path: Path) -> LoadedTask:
    """Load and check a task file and its data; raises `TaskFileError` with every problem."""
    task, problems = _load(Path(path))
    if problems or task is None:
        raise TaskFileError(problems)
    return task


def validate_task(path: Path) -> list[Problem]:
    """Every problem in a task file and its data; empty when the task is valid."""
    return _load(Path(path))[1]


# ---------------------------------------------------------------------------------------------
# loading


def _resolve(task_path: Path, relative: str) -> Path:
    candidate = Path(relative)
    # expanduser fails for "~someone" who does not exist; such a path then stays literal.
    with contextlib.suppress(RuntimeError):
        candidate = candidate.expanduser()
    return candidate if candidate.is_absolute() else task_path.parent / candidate


def _render_fields(fields: Mapping[str, Any], data: DataSpec) -> dict[str, Any]:
    # `{{input}}` always means the input field, so renaming input_field alone keeps the default
    # template working.
    out = dict(fields)
    if data.input_field != "input" and "input" not in out:
        out["input"] = fields.get(data.input_field)
    return out


def _load(path: Path) -> tuple[LoadedTask | None, list[Problem]]:
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

    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        raw = yaml.safe_load(text)
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

    problems = _duplicate_keys(file, root, ())
    spec: TaskFile | None = None
    try:
        spec = TaskFile.model_validate(raw)
    except ValidationError as exc:
        problems += _schema_problems(file, root, exc, TaskFile)

    # Even when another section is invalid, check the data too, so that one pass finds everything.
    data = spec.data if spec is not None else _section(DataSpec, raw.get("data"))
    metric = spec.metric if spec is not None else _section(MetricSpec, raw.get("metric"))
    template = spec.input_template if spec is not None else _raw_template(raw)
    if data is None:
        return None, problems
    if template is not None:
        problems += _template_leaks(file, root, template, data)

    loader = _DataLoader(path, root, data)
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
            _line(root, ("input_template",)),
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


# ---------------------------------------------------------------------------------------------
# YAML locations and schema messages


def _line(root: yaml.Node, loc: Sequence[str | int]) -> int:
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


def _dotted(loc: Sequence[str | int]) -> str:
    out = ""
    for key in loc:
        out += f"[{key}]" if isinstance(key, int) else (f".{key}" if out else str(key))
    return out


def _duplicate_keys(file: str, node: yaml.Node, loc: tuple[str | int, ...]) -> list[Problem]:
    problems: list[Problem] = []
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key_node, value_node in node.value:
            key = str(key_node.value)
            if key in seen:
                problems.append(
                    Problem(
                        file,
                        _dotted((*loc, key)),
                        "the key appears twice; the later value would silently win",
                        key_node.start_mark.line + 1,
                    )
                )
            seen.add(key)
            problems += _duplicate_keys(file, value_node, (*loc, key))
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            problems += _duplicate_keys(file, item, (*loc, index))
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


def _schema_problems(
    file: str, root: yaml.Node, exc: ValidationError, model: type[BaseModel]
) -> list[Problem]:
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
        problems.append(Problem(file, _dotted(loc), message, _line(root, loc)))
    return problems


# ---------------------------------------------------------------------------------------------
# data


@dataclass
class _Row:
    fields: dict[str, Any]
    file: str
    line: int | None
    where: tuple[str | int, ...]  # for inline rows, the location inside the task file


@dataclass
class _DataLoader:
    """Reads every data source of a task, collecting problems instead of stopping at one."""

    task_path: Path
    root: yaml.Node
    data: DataSpec
    problems: list[Problem] = field(default_factory=list)
    # each example with the row it came from, for the checks that need its location
    pairs: list[tuple[Example, _Row]] = field(default_factory=list)
    # row problems per data file: past a cap they are counted, not listed
    row_problems: dict[str, int] = field(default_factory=dict)

    def load(self) -> dict[str, tuple[Example, ...]]:
        if self.data.file is not None and self.data.split is not None:
            rows = self._read(self.data.file, "file")
            return self._cut(rows, self.data.split)
        splits: dict[str, tuple[Example, ...]] = {}
        for name in SPLITS:
            source = getattr(self.data, name)
            if source is None:
                continue
            before = len(self.problems)
            rows = self._read(source, name)
            if not rows and len(self.problems) == before:
                self._problem(
                    Problem(str(self.task_path), f"data.{name}", "has no rows", self._line(name))
                )
            splits[name] = self._examples(rows, name)
        return splits

    def _line(self, *loc: str | int) -> int:
        return _line(self.root, ("data", *loc))

    def _problem(self, problem: Problem) -> None:
        self.problems.append(problem)

    def finish(self) -> list[Problem]:
        """Every problem found, with a count of the row problems left out."""
        out = list(self.problems)
        for file, count in self.row_problems.items():
            if count > MAX_ROW_PROBLEMS_PER_FILE:
                hidden = count - MAX_ROW_PROBLEMS_PER_FILE
                out.append(Problem(file, "", f"{hidden} more row problems like these not shown"))
        return out

    def _cut(self, rows: list[_Row], split: SplitSpec) -> dict[str, tuple[Example, ...]]:
        usable: list[_Row] = []
        for row in rows:
            problems = _row_problems(row, self.data)
            for problem in problems:
                self._row_problem(row, problem)
            if not problems:
                usable.append(row)
        shuffled = list(usable)
        random.Random(self.data.seed).shuffle(shuffled)
        counts: dict[str, int] = {}
        for name in SPLITS:
            size = getattr(split, name)
            if size is None:
                continue
            # A tiny epsilon keeps 0.29 * 100 from flooring to 28.
            counts[name] = size if isinstance(size, int) else math.floor(size * len(usable) + 1e-9)
            if counts[name] == 0:
                self._problem(
                    Problem(
                        str(self.task_path),
                        f"data.split.{name}",
                        f"{size} of {len(usable)} usable rows is 0 rows; ask for a larger share",
                        self._line("split", name),
                    )
                )
        wanted = sum(counts.values())
        if wanted > len(usable):
            asked = " + ".join(f"{counts[n]} {n}" for n in counts)
            self._problem(
                Problem(
                    str(self.task_path),
                    "data.split",
                    f"asks for {asked} = {wanted} rows but the data file has {len(usable)} "
                    "usable rows",
                    self._line("split"),
                )
            )
        out: dict[str, tuple[Example, ...]] = {}
        start = 0
        for name, count in counts.items():
            out[name] = self._examples(shuffled[start : start + count], name)
            start += count
        return out

    def _examples(self, rows: list[_Row], split: str) -> tuple[Example, ...]:
        examples: list[Example] = []
        for index, row in enumerate(rows):
            problems = _row_problems(row, self.data)
            if problems:
                for problem in problems:
                    self._row_problem(row, problem)
                continue
            examples.append(self._example(row, split, index))
        return tuple(examples)

    def _row_problem(self, row: _Row, problem: Problem) -> None:
        count = self.row_problems.get(row.file, 0) + 1
        self.row_problems[row.file] = count
        if count <= MAX_ROW_PROBLEMS_PER_FILE:
            self._problem(problem)

    def _example(self, row: _Row, split: str, index: int) -> Example:
        raw_id = row.fields.get(self.data.id_field)
        example_id = _as_text(raw_id) if raw_id is not None else f"{split}-{index}"
        example = Example(
            id=example_id,
            fields=types.MappingProxyType(dict(row.fields)),
            targets=_targets(row, self.data)[0],
            line=row.line,
        )
        self.pairs.append((example, row))
        return example

    def check(self, template: str | None, metric: MetricSpec | None) -> None:
        """Checks that need whole examples: template fields, duplicate ids, unknown labels."""
        data = self.data
        seen: dict[str, _Row] = {}
        labels = set(metric.labels or ()) if metric is not None and metric.type == "label" else None
        for example, row in self.pairs:
            if template is not None:
                fields = _render_fields(example.fields, data)
                for name in template_fields(template):
                    if fields.get(name) is None:
                        message = (
                            f"input_template uses {{{{{name}}}}} but the row has no {name!r} field"
                        )
                        self._row_problem(
                            row, Problem(row.file, _row_field(row, name), message, row.line)
                        )
            first = seen.setdefault(example.id, row)
            if first is not row:
                at = f"{first.file}:{first.line}" if first.line is not None else first.file
                message = f"duplicate id {example.id!r} (first used at {at})"
                self._row_problem(
                    row, Problem(row.file, _row_field(row, data.id_field), message, row.line)
                )
            if labels is not None:
                for target in example.targets:
                    if target not in labels:
                        self._row_problem(row, _unknown_label(row, data, target, labels))

    # -- reading sources ------------------------------------------------------------------------

    def _read(self, source: DataSource, name: str) -> list[_Row]:
        field_name = f"data.{name}"
        if isinstance(source, list):
            return [
                _Row(
                    dict(item), str(self.task_path), _line(self.root, ("data", name, i)), (name, i)
                )
                for i, item in enumerate(source)
            ]
        path = _resolve(self.task_path, source)
        where = Problem(str(self.task_path), field_name, "", self._line(name))
        suffix = path.suffix.lower()
        if suffix not in (".jsonl", ".csv"):
            self._problem(
                _with_message(where, f"unsupported data file {source!r}: use .jsonl or .csv")
            )
            return []
        try:
            text = path.read_text(encoding="utf-8-sig")
        except FileNotFoundError:
            self._problem(_with_message(where, f"data file not found: {path.resolve()}"))
            return []
        except IsADirectoryError:
            self._problem(_with_message(where, f"is a folder, not a data file: {path.resolve()}"))
            return []
        except UnicodeDecodeError as exc:
            self._problem(_with_message(where, f"{path} is not UTF-8 text ({exc.reason})"))
            return []
        except OSError as exc:
            self._problem(_with_message(where, f"cannot read {path.resolve()}: {exc.strerror}"))
            return []
        except ValueError as exc:  # e.g. a NUL character in the path
            self._problem(_with_message(where, f"invalid path {source!r}: {exc}"))
            return []
        return self._read_jsonl(path, text) if suffix == ".jsonl" else self._read_csv(path, text)

    def _read_jsonl(self, path: Path, text: str) -> list[_Row]:
        rows: list[_Row] = []
        # split("\n"), not splitlines(): JSON strings may hold U+2028, which splitlines breaks on.
        for number, line in enumerate(text.split("\n"), start=1):
            if not line.strip():
                continue
            try:
                value = json.loads(line)
            except json.JSONDecodeError as exc:
                problem = Problem(str(path), "", f"invalid JSON: {exc.msg}", number)
                self._row_problem(_Row({}, str(path), number, ()), problem)
                continue
            if not isinstance(value, dict):
                kind = type(value).__name__
                problem = Problem(
                    str(path), "", f"each line must be a JSON object, not {kind}", number
                )
                self._row_problem(_Row({}, str(path), number, ()), problem)
                continue
            rows.append(_Row(value, str(path), number, ()))
        return rows

    def _read_csv(self, path: Path, text: str) -> list[_Row]:
        reader = csv.DictReader(text.splitlines(keepends=True))
        rows: list[_Row] = []
        try:
            header = reader.fieldnames
            if not header:
                return []
            required = [self.data.input_field]
            if self.data.targets_field not in header:
                required.append(self.data.target_field)
            missing = [column for column in required if column not in header]
            if missing:
                for column in missing:
                    self._problem(
                        Problem(
                            str(path),
                            column,
                            f"no column {column!r} in the header (columns: {', '.join(header)})",
                            1,
                        )
                    )
                return []
            end = reader.line_num
            for record in reader:
                start, end = end + 1, reader.line_num
                if None in record:
                    problem = Problem(
                        str(path), "", "the row has more values than the header", start
                    )
                    self._row_problem(_Row({}, str(path), start, ()), problem)
                    continue
                values: dict[str, Any] = {k: v for k, v in record.items() if v is not None}
                # Every CSV row has every column; a blank optional cell means "not given".
                for optional in (self.data.targets_field, self.data.id_field):
                    if not str(values.get(optional, "x")).strip():
                        del values[optional]
                listed = values.get(self.data.targets_field)
                if isinstance(listed, str) and listed.strip().startswith("["):
                    # A CSV cell cannot hold a list, so several targets are written as a JSON list.
                    # Unparsable text stays as it is, and the row check reports it.
                    with contextlib.suppress(json.JSONDecodeError):
                        values[self.data.targets_field] = json.loads(listed)
                rows.append(_Row(values, str(path), start, ()))
        except csv.Error as exc:
            self._problem(Problem(str(path), "", f"invalid CSV: {exc}", reader.line_num))
        return rows


def _with_message(problem: Problem, message: str) -> Problem:
    return Problem(problem.file, problem.field, message, problem.line)


def _row_field(row: _Row, name: str) -> str:
    return _dotted(("data", *row.where, name)) if row.where else name


def _targets(row: _Row, data: DataSpec) -> tuple[tuple[str, ...], list[Problem]]:
    """Every acceptable target of a row, or the problems that prevent reading them."""
    problems: list[Problem] = []
    found: list[str] = []
    single = row.fields.get(data.target_field)
    if single is not None:
        text = _as_text(single)
        if text.strip():
            found.append(text)
        else:
            problems.append(
                Problem(
                    row.file, _row_field(row, data.target_field), "the target is empty", row.line
                )
            )
    listed = row.fields.get(data.targets_field)
    if listed is not None:
        if not isinstance(listed, list) or not listed:
            problems.append(
                Problem(
                    row.file,
                    _row_field(row, data.targets_field),
                    "must be a non-empty list of acceptable targets",
                    row.line,
                )
            )
        else:
            for item in listed:
                text = _as_text(item) if item is not None else ""
                if not text.strip():
                    problems.append(
                        Problem(
                            row.file,
                            _row_field(row, data.targets_field),
                            "holds an empty target",
                            row.line,
                        )
                    )
                elif text not in found:
                    found.append(text)
    if single is None and listed is None:
        problems.append(
            Problem(
                row.file,
                _row_field(row, data.target_field),
                f"the row has no {data.target_field!r} field "
                f"(or a {data.targets_field!r} list of acceptable answers)",
                row.line,
            )
        )
    return tuple(found), problems


def _row_problems(row: _Row, data: DataSpec) -> list[Problem]:
    problems: list[Problem] = []
    if row.fields.get(data.input_field) is None:
        problems.append(
            Problem(
                row.file,
                _row_field(row, data.input_field),
                f"the row has no {data.input_field!r} field (data.input_field)",
                row.line,
            )
        )
    problems += _targets(row, data)[1]
    raw_id = row.fields.get(data.id_field)
    if raw_id is not None and not _as_text(raw_id).strip():
        problems.append(
            Problem(row.file, _row_field(row, data.id_field), "the id is empty", row.line)
        )
    return problems


def _unknown_label(row: _Row, data: DataSpec, target: str, labels: set[str]) -> Problem:
    close = [label for label in labels if label.strip().lower() == target.strip().lower()]
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return Problem(
        row.file,
        _row_field(row, data.target_field),
        f"target {target!r} is not one of metric.labels ({', '.join(sorted(labels))}){hint}",
        row.line,
    )
