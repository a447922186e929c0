"""Property tests: over random task files and data rows, `validate` never prints a traceback (it
exits 0, or 2 with located problems), and whatever it accepts loads and runs (`eval`) on the
scripted provider.

Random documents start from a valid task and are damaged: sections dropped, unknown fields
added, values replaced by values of any type, inline and JSONL rows of any shape, and raw YAML
text. Example counts stay modest so that the suite stays fast.
"""

from __future__ import annotations

import copy
import json
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from promptopt.cli.main import app

runner = CliRunner()

SCRIPT = "def f(request):\n    return 'yes'\n"
BASE: dict[str, Any] = {
    "name": "t",
    "prompt": "Classify.",
    "data": {
        "dev": [{"input": "a", "target": "yes"}, {"input": "b", "target": "no"}],
        "test": [{"input": "c", "target": "yes"}],
    },
    "metric": {"type": "label", "labels": ["yes", "no"]},
    "models": {"target": "scripted:s.py:f", "optimizer": "scripted:s.py:f"},
    "search": {"strategy": "ape", "params": {"num_demos": 1}},
}
# Words the schema knows, so that random documents reach past "unknown field" often.
WORDS = [
    "input", "target", "targets", "id", "dev", "test", "train", "file", "split", "seed",
    "type", "labels", "pattern", "label", "exact", "contains", "regex", "f1", "numeric", "json",
    "judge", "rubric", "instruction", "output_format", "input_template", "input_field",
    "{{input}}", "{{target}}", "ape", "opro", "budget", "target_calls", "errors", "yes", "no",
    "data.jsonl", "s.py", "(a|aa)+$", "[", "0.5",
]  # fmt: skip
SETTINGS = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-5, max_value=1_000_000),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(WORDS),
    st.text(max_size=12),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.one_of(st.sampled_from(WORDS), st.text(max_size=6)), inner, max_size=4),
    ),
    max_leaves=12,
)
# Mostly plausible values, so that many damaged documents are still valid and reach eval.
plausible = st.one_of(st.sampled_from(WORDS), st.text(min_size=1, max_size=12), st.integers(0, 9))
good_row = st.fixed_dictionaries(
    {"input": plausible, "target": st.sampled_from(["yes", "no"])},
    optional={"id": plausible, "targets": st.lists(plausible, max_size=2), "extra": values},
)
any_row = st.dictionaries(
    st.sampled_from(["input", "target", "targets", "id", "extra"]), values, max_size=5
)
rows = st.lists(st.one_of(good_row, good_row, any_row), max_size=5)


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    yield prefix
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _paths(value, (*prefix, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _paths(value, (*prefix, index))


@st.composite
def task_documents(draw: st.DrawFn) -> dict[str, Any]:
    """The valid base task, damaged by a few random edits (models are never replaced by other
    providers: an accepted task must not reach a hosted API)."""
    doc = copy.deepcopy(BASE)
    for _ in range(draw(st.sampled_from([0, 1, 1, 1, 2, 3]))):
        paths = [p for p in _paths(doc) if p and p[0] != "models"]
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        parent: Any = doc
        for key in path[:-1]:
            parent = parent[key]
        edit = draw(st.sampled_from(["replace", "drop", "add", "rows"]))
        if edit == "replace":
            parent[path[-1]] = draw(st.one_of(plausible, values))
        elif edit == "drop" and isinstance(parent, dict):
            del parent[path[-1]]
        elif edit == "add" and isinstance(parent, dict):
            parent[draw(st.sampled_from(WORDS))] = draw(values)
        elif edit == "rows" and isinstance(doc.get("data"), dict):
            doc["data"][draw(st.sampled_from(["dev", "test", "train"]))] = draw(rows)
    return doc


@contextmanager
def task_folder() -> Iterator[Path]:
    # A fresh folder per example: hypothesis runs many examples within one test call.
    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        (folder / "s.py").write_text(SCRIPT)
        yield folder


@pytest.fixture(autouse=True)
def _no_keys(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # With no key set, a task without models falls back to the embedded models, never a
    # hosted API; the cache stays in the test's folder.
    for name in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("PROMPTOPT_CACHE_DIR", str(tmp_path / "cache"))


def check_validate(task: Path) -> bool:
    """Validate `task`: True when accepted; any outcome but exit 0 or 2 with text fails."""
    result = runner.invoke(app, ["validate", str(task)])
    assert result.exception is None or isinstance(result.exception, SystemExit), (
        result.exception,
        result.output,
    )
    assert "Traceback" not in result.output, result.output
    assert result.exit_code in (0, 2), result.output
    if result.exit_code == 2:
        assert "problem(s) found" in result.output or "error:" in result.output, result.output
    event("accepted" if result.exit_code == 0 else "refused")
    return result.exit_code == 0


def check_eval_runs(task: Path) -> None:
    """An accepted task loads and is scored on the scripted provider; errors the metric counts
    on examples (exit 1) are allowed, a refusal of the task (exit 2) or a crash is not."""
    result = runner.invoke(
        app, ["eval", str(task), "--target", "scripted:s.py:f", "--no-cache", "--json"]
    )
    assert result.exception is None or isinstance(result.exception, SystemExit), (
        result.exception,
        result.output,
    )
    assert "Traceback" not in result.output, result.output
    assert result.exit_code in (0, 1), result.output
    if result.exit_code == 0:
        assert json.loads(result.stdout)["n"] >= 1


@SETTINGS
@given(doc=task_documents())
def test_random_task_files(doc: dict[str, Any]) -> None:
    with task_folder() as folder:
        task = folder / "task.yaml"
        task.write_text(yaml.safe_dump(doc, sort_keys=False, allow_unicode=True))
        if check_validate(task):
            check_eval_runs(task)


@SETTINGS
@given(
    lines=st.lists(
        st.one_of(
            values.map(lambda v: json.dumps(v, allow_nan=True)),
            st.builds(dict, input=values, target=values).map(json.dumps),
            st.text(max_size=20).filter(lambda t: "\n" not in t and "\r" not in t),
        ),
        max_size=6,
    ),
    csv_text=st.text(max_size=80),
)
def test_random_data_files(lines: list[str], csv_text: str) -> None:
    with task_folder() as folder:
        (folder / "dev.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
        (folder / "test.csv").write_text("input,target\n" + csv_text, encoding="utf-8")
        doc = copy.deepcopy(BASE)
        doc["data"] = {"dev": "dev.jsonl", "test": "test.csv"}
        task = folder / "task.yaml"
        task.write_text(yaml.safe_dump(doc, sort_keys=False))
        if check_validate(task):
            check_eval_runs(task)


YAML_CHARS = "{}[]:,-&*!|>'\"%@`#? \n\tabcyesno01.~<=&*"


@SETTINGS
@given(
    head=st.text(alphabet=YAML_CHARS, max_size=60),
    tail=st.text(max_size=30),
)
def test_random_yaml_text(head: str, tail: str) -> None:
    with task_folder() as folder:
        task = folder / "task.yaml"
        valid = yaml.safe_dump(BASE, sort_keys=False)
        # Random text alone, and random text spliced into a valid task.
        for text in (head + tail, valid + head, head + "\n" + valid):
            task.write_text(text, encoding="utf-8")
            if check_validate(task):
                check_eval_runs(task)
