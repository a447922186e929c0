"""A run folder whose config.json was damaged gives one message and exit 2, never a traceback."""

from __future__ import annotations

import json
from pathlib import Path

from tests.support.diff import make_run, make_task, run_cli


def damaged_run(tmp_path: Path) -> Path:
    run = make_run(make_task(tmp_path / "task"), tmp_path / "runs", tmp_path / "cache")
    config = json.loads((run / "config.json").read_text())
    config["task"]["models"]["target"] = {"model": "no-provider-here"}
    (run / "config.json").write_text(json.dumps(config))
    return run


def test_diff_of_a_run_with_a_damaged_task_says_which_field(tmp_path: Path) -> None:
    result = run_cli("diff", str(damaged_run(tmp_path)))
    assert result.exit_code == 2, result.output
    assert "config.json: task.models.target" in result.output
    assert "Traceback" not in result.output


def test_resume_of_a_run_with_a_damaged_model_says_so(tmp_path: Path) -> None:
    result = run_cli("run", "--resume", str(damaged_run(tmp_path)))
    assert result.exit_code == 2, result.output
    assert "invalid model" in result.output
