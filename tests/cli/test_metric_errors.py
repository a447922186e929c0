"""A metric that raises, or returns a value outside [0, 1], is an error on that example: counted,
reported, and, when it keeps happening, the end of the command (exit 1), never a silent 0."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from promptopt.scoring import metrics
from tests.app.test_checks import write
from tests.support.diff import make_task, run_cli

METRICS = """
def sometimes_raises(output, example):
    if example.id == "r101":
        raise ValueError("cannot parse")
    return float(output == example.target)


def always_raises(output, example):
    raise ValueError("cannot parse")


def too_big(output, example):
    return 1.5
"""


def task_with_metric(tmp_path: Path, function: str) -> Path:
    task = make_task(tmp_path / "task")
    (task.parent / "metrics.py").write_text(METRICS)
    spec = yaml.safe_load(task.read_text())
    spec["metric"] = {"type": "python", "function": f"metrics.py:{function}"}
    task.write_text(yaml.safe_dump(spec, sort_keys=False))
    return task


def one_error_line(stderr: str) -> str:
    assert "Traceback" not in stderr, stderr
    (line,) = [line for line in stderr.splitlines() if line.startswith("error:")]
    return line


def test_a_metric_that_always_raises_stops_the_run(tmp_path: Path) -> None:
    task = task_with_metric(tmp_path, "always_raises")
    out = tmp_path / "runs"
    result = run_cli("run", str(task), "--out", str(out), "--no-cache", "--json")
    assert result.exit_code == 1, result.output
    line = one_error_line(result.stderr)
    assert "metric python metrics.py:always_raises: 20 of 20 examples failed (raised: 20)" in line
    (run_dir,) = out.iterdir()
    assert json.loads((run_dir / "summary.json").read_text())["status"] == "failed"


def test_a_metric_that_raises_on_one_example_is_counted_and_reported(tmp_path: Path) -> None:
    task = task_with_metric(tmp_path, "sometimes_raises")
    result = run_cli("eval", str(task), "--no-cache", "--json")
    assert result.exit_code == 0, result.output  # 1 of 20: within the error budget
    payload = json.loads(result.stdout)
    assert payload["errors"] == 1
    (failed,) = [e for e in payload["examples"] if "error" in e]
    assert failed["id"] == "r101" and "cannot parse" in failed["error"]
    assert "1 of 20 examples failed" in result.stderr

    out = tmp_path / "runs"
    ran = run_cli("run", str(task), "--out", str(out), "--no-cache", "--json")
    assert ran.exit_code == 0, ran.output
    summary = json.loads(ran.stdout)
    assert summary["metric_errors"] >= 1
    report = (Path(summary["run_dir"]) / "report.md").read_text()
    assert "metric: " in report and "example(s) where it failed" in report


def test_a_metric_value_outside_0_1_is_an_error_naming_the_metric(tmp_path: Path) -> None:
    task = task_with_metric(tmp_path, "too_big")
    result = run_cli("eval", str(task), "--no-cache", "--json", "--limit", "5")
    assert result.exit_code == 1, result.output
    line = one_error_line(result.stderr)
    assert "5 of 5 examples on dev failed (metric invalid value: 5)" in line
    first = json.loads(result.stdout)["examples"][0]
    assert first["score"] == 0.0
    assert "metric.function metrics.py:too_big returned 1.5, outside [0, 1]" in first["error"]


def test_a_catastrophic_regex_metric_is_an_error_per_example_not_a_stall(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(metrics, "REGEX_TIMEOUT_S", 0.05)
    path = write(
        tmp_path, **{"{type: label, labels: [yes, no]}": "{type: regex, pattern: '(a|aa)+$'}"}
    )
    (tmp_path / "s.py").write_text("def f(request):\n    return 'a' * 40 + 'b'\n")
    result = run_cli("eval", str(path), "--no-cache", "--json")
    assert result.exit_code == 1, result.output
    assert "2 of 2 examples on dev failed (metric raised: 2)" in one_error_line(result.stderr)
    first = json.loads(result.stdout)["examples"][0]
    assert "metric.pattern '(a|aa)+$' did not finish within 0.05 s" in first["error"]
