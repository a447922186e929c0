"""A task's examples: rows read from JSONL, CSV or inline data, checked and cut into splits.

Every problem with a data source or a row is collected, located by file, field and line, rather
than stopping at the first.
"""

from __future__ import annotations

import contextlib
import csv
import json
import math
import random
import types
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from promptopt.errors import Problem
from promptopt.task.example import Example
from promptopt.task.locate import dotted, yaml_line
from promptopt.task.metricspec import MetricSpec
from promptopt.task.schema import SPLITS, DataSource, DataSpec, SplitSpec
from promptopt.util.nesting import MAX_DEPTH, too_deep
from promptopt.util.template import as_text, template_fields

# More row problems than this in one data file are summarised: the first ones show the pattern.
MAX_ROW_PROBLEMS_PER_FILE = 20

_TOO_DEEP = object()


def resolve_path(task_path: Path, relative: str) -> Path:
    """A path written in the task file, relative to the file's folder."""
    candidate = Path(relative)
    # expanduser fails for "~someone" who does not exist; such a path then stays literal.
    with contextlib.suppress(RuntimeError):
        candidate = candidate.expanduser()
    return candidate if candidate.is_absolute() else task_path.parent / candidate


def template_values(fields: Mapping[str, Any], data: DataSpec) -> dict[str, Any]:
    """The values an example offers to the input template."""
    # `{{input}}` always means the input field, so renaming input_field alone keeps the default
    # template working.
    out = dict(fields)
    if data.input_field != "input" and "input" not in out:
        out["input"] = fields.get(data.input_field)
    return out


@dataclass
class _Row:
    fields: dict[str, Any]
    file: str
    line: int | None
    where: tuple[str | int, ...]  # for inline rows, the location inside the task file


@dataclass
class DataLoader:
    """Reads every data source of a task, collecting problems instead of stopping at one."""

    task_path: Path
    root: yaml.Node
    data: DataSpec
    problems: list[Problem] = field(default_factory=list)
    # each example with the row it came from, for the checks that need its location
    pairs: list[tuple[Example, _Row]] = field(default_factory=list)
    # row problems per data file: past a cap they are counted, not listed
    row_problems: dict[str, int] = field(default_factory=dict)
    targets_required: bool = True
    """False for a task without a metric (a preference search): rows need no target."""
    only: str | None = None
    """Read this split alone (when each split has its own source), for a command that scores
    one split: the others are not read at all."""
    limit: int | None = None
    """With `only`: read that split's data file up to its first `limit` usable rows."""

    def load(self) -> dict[str, tuple[Example, ...]]:
        """The examples of every split the data section provides."""
        if self.data.file is not None and self.data.split is not None:
            rows = self._read(self.data.file, "file")
            return self._cut(rows, self.data.split)
        splits: dict[str, tuple[Example, ...]] = {}
        for name in SPLITS:
            source = getattr(self.data, name)
            if source is None or (self.only is not None and name != self.only):
                continue
            before = len(self.problems)
            rows = self._read(source, name, self.limit if self.only is not None else None)
            if not rows and len(self.problems) == before:
                self._problem(
                    Problem(str(self.task_path), f"data.{name}", "has no rows", self._line(name))
                )
            splits[name] = self._examples(rows, name)
        return splits

    def _line(self, *loc: str | int) -> int:
        return yaml_line(self.root, ("data", *loc))

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
            problems = _row_problems(row, self.data, self.targets_required)
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
            problems = _row_problems(row, self.data, self.targets_required)
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
        example_id = as_text(raw_id) if raw_id is not None else f"{split}-{index}"
        example = Example(
            id=example_id,
            fields=types.MappingProxyType(dict(row.fields)),
            targets=_targets(row, self.data, self.targets_required)[0],
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
                fields = template_values(example.fields, data)
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

    def _read(self, source: DataSource, name: str, limit: int | None = None) -> list[_Row]:
        field_name = f"data.{name}"
        if isinstance(source, list):
            return [
                _Row(dict(item), str(self.task_path), self._line(name, i), (name, i))
                for i, item in enumerate(source)
            ]
        path = resolve_path(self.task_path, source)
        where = Problem(str(self.task_path), field_name, "", self._line(name))
        suffix = path.suffix.lower()
        if suffix not in (".jsonl", ".csv"):
            self._problem(
                _with_message(where, f"unsupported data file {source!r}: use .jsonl or .csv")
            )
            return []
        jsonl = suffix == ".jsonl"
        try:
            if limit is not None:
                # Streamed, and only as far as needed: `eval --limit 100` on a 100,000-row file
                # reads about 100 lines. Lines end at "\n" only, as split("\n") cuts them below.
                with path.open(encoding="utf-8-sig", newline="\n" if jsonl else "") as handle:
                    if jsonl:
                        return self._read_jsonl(path, handle, limit)
                    return self._read_csv(path, handle, limit)
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
        # split("\n"), not splitlines(): JSON strings may hold U+2028, which splitlines breaks on.
        if jsonl:
            return self._read_jsonl(path, text.split("\n"))
        return self._read_csv(path, text.splitlines(keepends=True))

    def _read_jsonl(self, path: Path, lines: Iterable[str], limit: int | None = None) -> list[_Row]:
        rows: list[_Row] = []
        usable = 0  # rows without problems, when reading up to `limit` of them
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                value = json.loads(line)
            except json.JSONDecodeError as exc:
                problem = Problem(str(path), "", f"invalid JSON: {exc.msg}", number)
                self._row_problem(_Row({}, str(path), number, ()), problem)
                continue
            except RecursionError:
                # The parser recursed past Python's limit: far deeper than MAX_DEPTH anyway.
                value = _TOO_DEEP
            if value is _TOO_DEEP or too_deep(value):
                problem = Problem(
                    str(path),
                    "",
                    f"the row nests lists and objects more than {MAX_DEPTH} levels deep; "
                    "flatten it",
                    number,
                )
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
            if limit is not None and not _row_problems(rows[-1], self.data):
                usable += 1
                if usable >= limit:
                    break
        return rows

    def _read_csv(self, path: Path, lines: Iterable[str], limit: int | None = None) -> list[_Row]:
        reader = csv.DictReader(lines)
        rows: list[_Row] = []
        usable = 0  # rows without problems, when reading up to `limit` of them
        try:
            header = reader.fieldnames
            if not header:
                return []
            required = [self.data.input_field]
            if self.targets_required and self.data.targets_field not in header:
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
                    # Unparsable or absurdly nested text stays as it is, and the row check
                    # reports it.
                    with contextlib.suppress(json.JSONDecodeError, RecursionError):
                        parsed = json.loads(listed)
                        if not too_deep(parsed):
                            values[self.data.targets_field] = parsed
                rows.append(_Row(values, str(path), start, ()))
                if limit is not None and not _row_problems(rows[-1], self.data):
                    usable += 1
                    if usable >= limit:
                        break
        except csv.Error as exc:
            self._problem(Problem(str(path), "", f"invalid CSV: {exc}", reader.line_num))
        return rows


def _with_message(problem: Problem, message: str) -> Problem:
    return Problem(problem.file, problem.field, message, problem.line)


def _row_field(row: _Row, name: str) -> str:
    return dotted(("data", *row.where, name)) if row.where else name


def _targets(
    row: _Row, data: DataSpec, required: bool = True
) -> tuple[tuple[str, ...], list[Problem]]:
    """Every acceptable target of a row, or the problems that prevent reading them (a row
    without any is one only when targets are `required`)."""
    problems: list[Problem] = []
    found: list[str] = []
    single = row.fields.get(data.target_field)
    if single is not None:
        text = as_text(single)
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
                text = as_text(item) if item is not None else ""
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
    if required and single is None and listed is None:
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


def _row_problems(row: _Row, data: DataSpec, targets_required: bool = True) -> list[Problem]:
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
    problems += _targets(row, data, targets_required)[1]
    raw_id = row.fields.get(data.id_field)
    if raw_id is not None and not as_text(raw_id).strip():
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
