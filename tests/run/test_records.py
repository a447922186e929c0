"""Typed run-folder records: the schema version, old folders, damaged files."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from promptopt.errors import UsageError
from promptopt.run.folder import RunFolder
from promptopt.run.records import SCHEMA_VERSION, ConfigRecord, ResultRecord, SummaryRecord
from tests.support import FIXTURES
from tests.support.diff import make_run, make_task, run_cli

OLD_RUN = FIXTURES / "runs" / "v0-toy-sentiment"


def test_a_new_run_writes_the_schema_version(tmp_path: Path) -> None:
    run = make_run(make_task(tmp_path / "task"), tmp_path / "runs", tmp_path / "cache")
    for name in ("summary.json", "config.json"):
        data = json.loads((run / name).read_text())
        assert data["schema_version"] == SCHEMA_VERSION, name
    folder = RunFolder(run)
    summary = folder.summary()
    assert summary is not None and summary.schema_version == SCHEMA_VERSION
    assert summary.test_comparison is not None


def test_a_folder_written_before_schema_versions_still_loads() -> None:
    folder = RunFolder.open(OLD_RUN)
    config, summary, final = folder.config(), folder.summary(), folder.final_eval()
    assert config is not None and config.schema_version is None
    assert summary is not None and summary.schema_version is None
    assert summary.rejected is None  # written before summaries counted rejected proposals
    assert summary.best_id in folder.candidates()
    assert final is not None and len(final.best.test) == len(final.examples["test"])
    assert [e.event for e in folder.events() if e.event == "step"]


@pytest.mark.parametrize("fmt", ["md", "html"])
def test_report_renders_a_folder_written_before_schema_versions(tmp_path: Path, fmt: str) -> None:
    # A copy, since opening a folder may trim a cut-short JSONL line.
    run = tmp_path / "old"
    shutil.copytree(OLD_RUN, run)
    out = tmp_path / f"report.{fmt}"
    result = run_cli("report", str(run), "-o", str(out))
    assert result.exit_code == 0, result.output
    text = out.read_text()
    best = (run / "best_prompt.txt").read_text().strip()
    assert best in text
    assert "improved" in text


def test_unknown_fields_survive_a_round_trip() -> None:
    data = json.loads((OLD_RUN / "summary.json").read_text())
    data["added_by_a_newer_promptopt"] = {"x": 1}
    again = SummaryRecord.model_validate(data).to_json()
    assert again["added_by_a_newer_promptopt"] == {"x": 1}
    assert again["usage"] == data["usage"]


def test_a_damaged_summary_names_the_file_and_field(tmp_path: Path) -> None:
    run = tmp_path / "old"
    shutil.copytree(OLD_RUN, run)
    data = json.loads((run / "summary.json").read_text())
    data["scores"] = {"initial": {"dev": "high"}}
    (run / "summary.json").write_text(json.dumps(data))
    with pytest.raises(UsageError, match=r"summary\.json: scores\.initial\.dev"):
        RunFolder.open(run).summary()
    result = run_cli("report", str(run))
    assert result.exit_code == 2
    assert "summary.json" in result.output


def test_damaged_demonstrations_name_the_file(tmp_path: Path) -> None:
    run = tmp_path / "old"
    shutil.copytree(OLD_RUN, run)
    folder = RunFolder.open(run)
    assert folder.best_demos() is None and folder.initial_demos() == []
    (run / "best_demos.json").write_text('{"id": "c0001", "demos": [{"id": "r1"}]}')
    with pytest.raises(UsageError, match=r"best_demos\.json: demos\.0\.input"):
        folder.best_demos()
    result = run_cli("report", str(run))
    assert result.exit_code == 2 and "best_demos.json" in result.output
    config = json.loads((run / "config.json").read_text())
    config["settings"]["initial_demos"] = [{"id": "r1", "input": "x"}]
    (run / "config.json").write_text(json.dumps(config))
    with pytest.raises(UsageError, match=r"config\.json: settings\.initial_demos\.0\.output"):
        folder.initial_demos()
    config["settings"]["initial_demos"] = 3
    (run / "config.json").write_text(json.dumps(config))
    with pytest.raises(UsageError, match=r"config\.json: settings\.initial_demos: not a list"):
        folder.initial_demos()


def test_the_task_prompt_of_a_structured_task_is_its_system_message() -> None:
    config = json.loads((OLD_RUN / "config.json").read_text())
    record = ConfigRecord.model_validate(config)
    assert record.task_prompt == config["task"]["prompt"]  # plain text, as it was
    config["task"]["prompt"] = {"instruction": "Classify.\n", "output_format": "Label only."}
    assert ConfigRecord.model_validate(config).task_prompt == "Classify.\n\nLabel only."


def test_summary_names_the_instruction_only_for_a_structured_prompt() -> None:
    data = json.loads((OLD_RUN / "summary.json").read_text())
    assert "best_instruction" not in SummaryRecord.model_validate(data).to_json()
    data["best_instruction"] = "Classify."
    assert SummaryRecord.model_validate(data).to_json()["best_instruction"] == "Classify."


def test_unset_optional_fields_are_left_out_as_before() -> None:
    # Readers that ask `"test_comparison" in summary` or `"error" in result` keep their answer.
    summary = SummaryRecord(
        run_dir="r", task="t", strategy="ape", seed=0, initial_prompt="a", best_prompt="a"
    ).to_json()
    for key in ("n", "ci95", "test_comparison", "rejected", "best_instruction"):
        assert key not in summary, key
    assert summary["scores"]["best"] == {"dev": None, "test": None}
    assert "error" not in ResultRecord(id="x", score=1.0, latency_s=0.1).to_json()
    assert ResultRecord(id="x", score=0.0, error="boom").to_json()["error"] == "boom"
