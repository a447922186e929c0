"""`promptopt init` writes a task that validates and runs; it never overwrites unasked."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from promptopt.cli.main import EXIT_USAGE, app
from promptopt.task.reference import json_schema_text

runner = CliRunner()

# The target answers right only when its instruction asks for the label alone, as the
# optimizer (tests.support.search) sometimes proposes; otherwise it chats.
SCRIPT = """
import json
from pathlib import Path

from tests.support.search import optimizer_answer

LABELS = {}
for split in ("train", "dev", "test"):
    for line in (Path(__file__).parent / "data" / f"{split}.jsonl").read_text().splitlines():
        row = json.loads(line)
        LABELS[row["input"]] = row["target"]


def target(request):
    system = request.messages[0]["content"].lower()
    review = request.messages[-1]["content"]
    if "label only" in system:
        return LABELS[review]
    return "I think it is a fair review."


def optimizer(request):
    return optimizer_answer(request)
"""


@pytest.fixture(autouse=True)
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROMPTOPT_CACHE_DIR", str(tmp_path / "cache"))


def test_init_then_validate_then_run_with_scripted_models(tmp_path: Path) -> None:
    folder = tmp_path / "starter"
    result = runner.invoke(app, ["init", str(folder)])
    assert result.exit_code == 0, result.output
    task = folder / "task.yaml"
    assert f"promptopt run {task}" in result.stderr
    assert runner.invoke(app, ["validate", str(task)]).exit_code == 0
    (folder / "script.py").write_text(SCRIPT)
    result = runner.invoke(
        app,
        [
            "run",
            str(task),
            "--target",
            "scripted:script.py:target",
            "--optimizer",
            "scripted:script.py:optimizer",
            "--out",
            str(tmp_path / "runs"),
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    scores = summary["scores"]
    assert scores["initial"]["test"] == 0.0
    assert scores["best"]["test"] == 1.0
    assert "label only" in summary["best_prompt"]


def test_the_task_names_its_schema_for_editors(tmp_path: Path) -> None:
    assert runner.invoke(app, ["init", str(tmp_path)]).exit_code == 0
    first = (tmp_path / "task.yaml").read_text().splitlines()[0]
    assert first == "# yaml-language-server: $schema=task-file.schema.json"
    assert (tmp_path / "task-file.schema.json").read_text() == json_schema_text()


def test_init_writes_into_the_current_folder_by_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert runner.invoke(app, ["init"]).exit_code == 0
    assert (tmp_path / "task.yaml").is_file() and (tmp_path / "data" / "dev.jsonl").is_file()


def test_init_refuses_to_overwrite_and_writes_nothing(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "dev.jsonl").write_text("mine\n")
    result = runner.invoke(app, ["init", str(tmp_path)])
    assert result.exit_code == EXIT_USAGE
    out = " ".join(result.output.split())
    assert "dev.jsonl" in out and "--force" in out and "nothing was written" in out
    assert (tmp_path / "data" / "dev.jsonl").read_text() == "mine\n"
    assert not (tmp_path / "task.yaml").exists()


def test_force_overwrites(tmp_path: Path) -> None:
    (tmp_path / "task.yaml").write_text("mine\n")
    result = runner.invoke(app, ["init", str(tmp_path), "--force"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "task.yaml").read_text().startswith("# yaml-language-server")


def test_a_file_as_dir_is_a_usage_error(tmp_path: Path) -> None:
    target = tmp_path / "file.txt"
    target.write_text("x")
    result = runner.invoke(app, ["init", str(target)])
    assert result.exit_code == EXIT_USAGE and "not a folder" in result.output
