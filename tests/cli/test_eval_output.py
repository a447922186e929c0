"""`eval -o FILE` writes per-example results in the format its extension names; `eval` shows
the model and the prompt it scored."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from promptopt.cli.main import EXIT_USAGE, app
from tests.support.search import write_task

runner = CliRunner()

SCRIPT = """
from promptopt.errors import ExampleRejected


def target(request):
    review = request.messages[-1]["content"]
    if "superb" in review:
        raise ExampleRejected("too long for the context", status=400)
    return "positive" if "great" in review or "lovely" in review else "negative, I think"
"""


@pytest.fixture
def task(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("PROMPTOPT_CACHE_DIR", str(tmp_path / "cache"))
    (tmp_path / "script.py").write_text(SCRIPT)
    path = write_task(tmp_path)
    spec = yaml.safe_load(path.read_text())
    for role in ("target", "optimizer"):
        spec["models"][role]["model"] = "scripted:script.py:target"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def run_eval(task: Path, *args: str) -> str:
    result = runner.invoke(app, ["eval", str(task), "--limit", "6", *args])
    assert result.exit_code == 0, result.output
    return result.stdout


def test_jsonl_has_a_record_per_example_with_input_and_expected(task: Path, tmp_path: Path) -> None:
    out = tmp_path / "results.jsonl"
    run_eval(task, "-o", str(out))
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["id"] for r in records] == [f"r{100 + i}" for i in range(6)]
    first = records[0]
    assert first["input"] == "review 100: a great film" and first["expected"] == ["positive"]
    assert first["output"] == "positive" and first["score"] == 1.0 and first["error"] is None
    failed = [r for r in records if r["error"]]
    assert failed and failed[0]["score"] == 0.0 and failed[0]["error_kind"]


def test_csv_has_a_header_and_a_row_per_example(task: Path, tmp_path: Path) -> None:
    out = tmp_path / "results.CSV"
    run_eval(task, "-o", str(out))
    with out.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 6
    assert list(rows[0]) == [
        "id",
        "input",
        "expected",
        "output",
        "score",
        "error",
        "error_kind",
        "cached",
        "latency_s",
    ]
    assert rows[1]["expected"] == "negative" and rows[1]["output"] == "negative, I think"


def test_json_is_the_eval_json_document(task: Path, tmp_path: Path) -> None:
    out = tmp_path / "results.json"
    printed = json.loads(run_eval(task, "-o", str(out), "--json"))
    written = json.loads(out.read_text())
    assert written["n"] == printed["n"] == 6
    assert written["model"] == "scripted:script.py:target"
    assert written["prompt"] == "Classify the review."
    assert written["examples"][0]["expected"] == ["positive"]
    assert written["examples"][0]["input"] == "review 100: a great film"


def test_an_unknown_extension_is_a_usage_error_before_any_call(task: Path, tmp_path: Path) -> None:
    result = runner.invoke(app, ["eval", str(task), "-o", str(tmp_path / "results.txt")])
    assert result.exit_code == EXIT_USAGE
    out = " ".join(result.output.split())
    assert "-o:" in out and ".jsonl, .csv, .json" in out
    assert not (tmp_path / "cache").exists()


def test_a_missing_folder_is_a_usage_error(task: Path, tmp_path: Path) -> None:
    result = runner.invoke(app, ["eval", str(task), "-o", str(tmp_path / "no" / "r.csv")])
    assert result.exit_code == EXIT_USAGE and "does not exist" in result.output


def test_the_table_shows_the_model_and_the_prompt(task: Path) -> None:
    shown = " ".join(run_eval(task).replace("│", " ").split())
    assert "model scripted:script.py:target" in shown
    assert "prompt Classify the review." in shown
