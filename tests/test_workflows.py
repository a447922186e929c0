"""The example GitHub Actions workflows: actionlint passes on every one, and the nightly one
holds to least privilege and fails on what the run reports."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support import REPO

WORKFLOWS = sorted(
    [
        *(REPO / "examples" / "github-actions").glob("*.yml"),
        *(REPO / ".github" / "workflows").glob("*.yml"),
    ]
)
NIGHTLY = REPO / "examples" / "github-actions" / "nightly-optimize.yml"


def actionlint() -> str:
    # The dev extra installs it beside the interpreter; a PATH lookup covers other layouts.
    beside = Path(sys.executable).parent / "actionlint"
    found = str(beside) if beside.exists() else shutil.which("actionlint")
    assert found, "actionlint is missing: pip install -e '.[dev]' installs it"
    return found


def test_every_workflow_passes_actionlint() -> None:
    assert NIGHTLY in WORKFLOWS
    # shellcheck and pyflakes are off: actionlint uses them only when they happen to be on
    # PATH, and the result must not depend on the machine.
    done = subprocess.run(
        [actionlint(), "-shellcheck=", "-pyflakes=", *map(str, WORKFLOWS)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def nightly() -> dict[str, Any]:
    workflow: dict[str, Any] = yaml.safe_load(NIGHTLY.read_text())
    return workflow


def test_the_nightly_workflow_grants_permissions_per_job_only() -> None:
    workflow = nightly()
    assert workflow["permissions"] == {}
    job = workflow["jobs"]["optimize"]
    assert job["permissions"] == {"contents": "write", "pull-requests": "write"}
    for path in WORKFLOWS:
        for job in yaml.safe_load(path.read_text())["jobs"].values():
            for step in job["steps"]:
                if step.get("uses", "").startswith("actions/checkout@"):
                    assert step["with"]["persist-credentials"] is False, path


def test_the_nightly_workflow_runs_one_at_a_time_without_cancelling() -> None:
    concurrency = nightly()["concurrency"]
    assert concurrency["group"].startswith("promptopt-nightly-")
    assert concurrency["cancel-in-progress"] is False


def test_the_nightly_workflow_keeps_only_summaries_and_reports() -> None:
    steps = nightly()["jobs"]["optimize"]["steps"]
    upload = next(s for s in steps if s.get("uses", "").startswith("actions/upload-artifact@"))
    paths = upload["with"]["path"].split()
    assert "runs/" not in paths and "runs" not in paths
    allowed = ("summary.json", "report.md", "report.html", "best_prompt.txt", "-summary.md")
    assert all(p.endswith(allowed) for p in paths), paths
    text = NIGHTLY.read_text()
    assert "responses.jsonl" in text  # the comment says what the full run folder holds


def test_the_nightly_workflow_explains_the_pull_request_settings() -> None:
    text = " ".join(line.strip(" #") for line in NIGHTLY.read_text().splitlines())
    assert "Allow GitHub Actions to create and approve pull requests" in text
    assert "does not trigger other workflows" in text
    assert "pip install 'promptopt-cli==" in text


def shims(tmp_path: Path, promptopt_exit: int) -> dict[str, str]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, body in (
        ("promptopt", f"exit {promptopt_exit}"),
        ("python", f'exec "{sys.executable}" "$@"'),
    ):
        (bin_dir / name).write_text(f"#!/bin/sh\n{body}\n")
        (bin_dir / name).chmod(0o755)
    return {
        **os.environ,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "GITHUB_OUTPUT": str(tmp_path / "output"),
        "TASK": "task.yaml",
        "PROMPT": "prompt.txt",
    }


def step_script(step_id: str | None = None, name: str | None = None) -> str:
    steps = nightly()["jobs"]["optimize"]["steps"]
    step = next(
        s for s in steps if (step_id and s.get("id") == step_id) or (name and s.get("name") == name)
    )
    script: str = step["run"]
    return script


@pytest.mark.parametrize(("code", "expected"), [(0, 0), (3, 0), (1, 1), (2, 2)])
def test_the_optimize_step_fails_on_errors_and_failures(
    tmp_path: Path, code: int, expected: int
) -> None:
    env = shims(tmp_path, code)
    done = subprocess.run(
        ["bash", "-e", "-c", step_script(step_id="optimize")],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == expected, done.stdout + done.stderr
    assert (tmp_path / "output").read_text() == f"exit_code={code}\n"


@pytest.mark.parametrize(
    ("summary", "expected"),
    [
        ({"usage": {"target": {"errors": 0}}, "test_errors": 0}, 0),
        ({"usage": {"target": {"errors": 3}, "optimizer": {"errors": 0}}}, 1),
        ({"usage": {}, "metric_errors": 2}, 1),
    ],
)
def test_the_errors_step_fails_when_the_summary_reports_errors(
    tmp_path: Path, summary: dict[str, Any], expected: int
) -> None:
    run_dir = tmp_path / "runs" / "task-20261130-030000"
    run_dir.mkdir(parents=True)
    (run_dir / "summary.json").write_text(json.dumps(summary))
    done = subprocess.run(
        ["bash", "-e", "-c", step_script(name="Fail when the run reports errors")],
        cwd=tmp_path,
        env=shims(tmp_path, 0),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == expected, done.stdout + done.stderr
    if expected:
        assert "::error file=runs/task-20261130-030000/summary.json::" in done.stdout
