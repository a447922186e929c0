from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from promptopt.reporting.markdown import render_run_markdown
from promptopt.reporting.run_files import build_run_report, trajectory
from promptopt.reporting.view import RunView, trajectory_rows
from promptopt.reporting.write import write_run_reports
from promptopt.run.folder import FINAL_EVAL, REPORT_HTML, REPORT_MD, SUMMARY, RunFolder
from promptopt.run.records import EventRecord
from tests.support import FIXTURES
from tests.support.diff import OLD_PROMPT, external_references, make_run, make_task, run_cli

RUN_SECTIONS = (
    "Scores",
    "Score trajectory",
    "Best prompt",
    "How the best prompt was found",
    "Initial vs best on test",
    "Usage",
)
DIFF_SECTIONS = ("Verdict", "Provenance", "Prompt changes", "Flips", "Tokens, cost and latency")


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("report")
    return make_run(make_task(root / "task"), root / "runs", root / "cache")


@pytest.fixture
def interrupted(finished: Path, tmp_path: Path) -> Path:
    """What an interrupted run leaves: no final evaluation, status "interrupted"."""
    folder = tmp_path / "interrupted"
    shutil.copytree(finished, folder)
    (folder / FINAL_EVAL).unlink()
    summary = json.loads((folder / SUMMARY).read_text())
    for key in ("test_comparison", "n", "ci95"):
        summary.pop(key)
    summary.update(status="interrupted", stop_reason="interrupted")
    summary["scores"]["initial"]["test"] = summary["scores"]["best"]["test"] = None
    (folder / SUMMARY).write_text(json.dumps(summary))
    return folder


def test_trajectory_follows_step_events() -> None:
    events = [
        {"event": "proposed"},
        {"event": "step", "step": 1, "name": "a", "best_score": 0.5, "calls": {"target": 10}},
        {"event": "step", "step": 2, "name": "b", "best_score": 0.5, "calls": {"target": 20}},
        {
            "event": "step",
            "step": 3,
            "name": "c",
            "best_score": 0.9,
            "calls": {"target": 30, "optimizer": 4},
            "cost_usd": 0.25,
        },
        {"event": "step", "step": 4, "name": "d", "best_score": 0.9, "calls": {"target": 40}},
        {"event": "step", "step": 5, "name": "e", "best_score": 0.9, "calls": {"target": 50}},
    ]
    points = trajectory([EventRecord.model_validate(e) for e in events])
    assert [p.step for p in points] == [1, 2, 3, 4, 5]
    assert points[2].optimizer_calls == 4 and points[2].cost_usd == 0.25
    # The table keeps the first step, every change of the best score, and the last step.
    assert [p.step for p in trajectory_rows(points)] == [1, 3, 5]


def test_markdown_report_of_a_finished_run(finished: Path) -> None:
    result = run_cli("report", str(finished))
    assert result.exit_code == 0, result.output
    text = result.stdout
    for section in RUN_SECTIONS + DIFF_SECTIONS:
        assert section in text, section
    steps = [e for e in RunFolder(finished).read_jsonl("events.jsonl") if e["event"] == "step"]
    assert f"| {steps[-1]['step']} |" in text  # the last step is a trajectory row
    assert "**Verdict: improved**" in text
    assert "scripted:script.py:target" in text and "scripted:script.py:optimizer" in text
    assert "r201" in text and "status: finished" in text
    best_id = json.loads((finished / SUMMARY).read_text())["best_id"]
    assert f"`{best_id}` by **" in text  # the lineage ends at the best prompt


def test_html_report_of_a_finished_run(finished: Path, tmp_path: Path) -> None:
    out = tmp_path / "run.html"
    result = run_cli("report", str(finished), "-o", str(out))
    assert result.exit_code == 0, result.output
    page = out.read_text()
    assert page.startswith("<!DOCTYPE html>")
    for section in RUN_SECTIONS + DIFF_SECTIONS:
        assert section in page, section
    assert "<svg" in page and "<polyline" in page
    assert "Verdict: improved" in page and "r201" in page
    assert external_references(page) == []


def test_report_of_an_interrupted_run(interrupted: Path) -> None:
    for fmt in ("md", "html"):
        result = run_cli("report", str(interrupted), "--format", fmt)
        assert result.exit_code == 0, result.output
        text = result.stdout
        assert "interrupted" in text and "Not available" in text
        assert "Score trajectory" in text and "How the best prompt was found" in text
        assert "Verdict" not in text
    report = build_run_report(RunFolder(interrupted))
    assert report.test_diff is None and report.trajectory


def test_report_of_a_run_with_no_step_yet(finished: Path, tmp_path: Path) -> None:
    folder = tmp_path / "fresh"
    folder.mkdir()
    shutil.copy(finished / "config.json", folder / "config.json")
    text = render_run_markdown(RunFolder(folder))
    assert "No step has finished yet." in text and "not started" in text


def test_write_run_reports_writes_markdown_and_html(finished: Path, tmp_path: Path) -> None:
    folder = tmp_path / "copy"
    shutil.copytree(finished, folder)
    (folder / REPORT_MD).unlink()
    write_run_reports(RunFolder(folder))
    assert (folder / REPORT_MD).read_text() == render_run_markdown(RunFolder(folder))
    assert "<svg" in (folder / REPORT_HTML).read_text()


def test_report_errors(tmp_path: Path, finished: Path) -> None:
    not_run = run_cli("report", str(tmp_path))
    assert not_run.exit_code == 2 and "not a run folder" in " ".join(not_run.output.split())
    bad = run_cli("report", str(finished), "--format", "json")
    assert bad.exit_code == 2 and "--format" in bad.output


def test_initial_prompt_is_the_old_side(finished: Path) -> None:
    report = build_run_report(RunFolder(finished))
    assert report.test_diff is not None
    assert report.test_diff.old_prompt == OLD_PROMPT
    summary = json.loads((finished / SUMMARY).read_text())
    # Recomputed from final_eval.json with the run's seed: the run's own statistics.
    assert report.test_diff.comparison.paired.delta == summary["test_comparison"]["delta"]
    paired = report.test_diff.comparison.paired
    assert [paired.ci_low, paired.ci_high] == summary["test_comparison"]["ci95"]


def test_rejected_proposals_show_their_total_and_reasons(tmp_path: Path) -> None:
    # A folder from before summaries counted them: the events still say it.
    old = tmp_path / "old"
    shutil.copytree(FIXTURES / "runs" / "v0-toy-sentiment", old)
    assert json.loads((old / SUMMARY).read_text()).get("rejected") is None
    assert RunView.from_folder(RunFolder(old)).rejected == "7 (degenerate: 2, empty: 5)"
    result = run_cli("report", str(old))
    assert result.exit_code == 0, result.output
    assert "## Rejected proposals\n\n7 (degenerate: 2, empty: 5)" in result.stdout

    # A summary's counts stand in for events that are gone.
    (old / "events.jsonl").write_text("")
    summary = json.loads((old / SUMMARY).read_text())
    summary["rejected"] = {"truncated": 3}
    (old / SUMMARY).write_text(json.dumps(summary))
    assert build_run_report(RunFolder(old)).rejected == {"truncated": 3}
    assert RunView.from_folder(RunFolder(old)).rejected == "3 (truncated: 3)"


def test_usage_shows_what_the_providers_prompt_cache_read_and_wrote(
    finished: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "cached"
    shutil.copytree(finished, folder)
    summary = json.loads((folder / SUMMARY).read_text())
    target = summary["usage"]["target"]
    target.update(input_tokens=5000, cache_read_tokens=4096, cache_write_tokens=300)
    (folder / SUMMARY).write_text(json.dumps(summary))
    [row] = [u for u in RunView.from_folder(RunFolder(folder)).usage if u.role == "target"]
    assert row.input_tokens == "5000 (4096 cache read, 300 written)"
    assert "5000 (4096 cache read, 300 written)" in render_run_markdown(RunFolder(folder))
    # Without cache tokens, the plain count as before.
    assert all(u.input_tokens.isdigit() for u in RunView.from_folder(RunFolder(finished)).usage)
