"""--timeout and --max-retries on run, eval and diff, against a real loopback server."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from promptopt.testing.fake_server import FakeOpenAIServer
from tests.cli.test_failing_endpoints import BOUND_S, make_task, one_sentence, sentiment
from tests.support.diff import run_cli


def flaky() -> FakeOpenAIServer:
    """Every request body fails twice with HTTP 500, then succeeds."""
    return FakeOpenAIServer(
        reply=sentiment, fault_rate=1.0, fault_statuses=(500,), max_faults_per_body=2
    )


def test_max_retries_replaces_the_tasks_retries(tmp_path: Path) -> None:
    with flaky() as server:
        task = make_task(tmp_path / "task", server.base_url)  # errors.max_retries: 1
        given_up = run_cli("eval", str(task), "--no-cache", "--json", "--limit", "3")
        assert given_up.exit_code == 1 and json.loads(given_up.stdout)["errors"] == 3
        server.reset_stats()
        result = run_cli(
            "eval", str(task), "--no-cache", "--json", "--limit", "3", "--max-retries", "2"
        )
        assert result.exit_code == 0, result.output
        assert json.loads(result.stdout)["errors"] == 0
        assert server.requests_total == 3 * 3


def test_max_retries_from_the_environment(tmp_path: Path) -> None:
    with flaky() as server:
        task = make_task(tmp_path / "task", server.base_url)
        result = run_cli(
            "eval",
            str(task),
            "--no-cache",
            "--json",
            "--limit",
            "2",
            env={"PROMPTOPT_EVAL_MAX_RETRIES": "2"},
        )
        assert result.exit_code == 0, result.output
        assert json.loads(result.stdout)["errors"] == 0


def test_timeout_replaces_every_models_timeout(tmp_path: Path) -> None:
    with FakeOpenAIServer(mode="hang", hang_s=60) as server:
        # The task waits 60 s for an answer; --timeout gives up after a fraction of a second.
        task = make_task(tmp_path / "task", server.base_url, timeout_s=60, max_consecutive=50)
        started = time.monotonic()
        result = run_cli(
            "eval", str(task), "--no-cache", "--limit", "2", "--timeout", "0.3", "-j", "2"
        )
        assert time.monotonic() - started < BOUND_S
        assert result.exit_code == 1, result.output
        assert "timed out: 2" in one_sentence(result.stderr)


def test_run_takes_timeout_and_max_retries(tmp_path: Path) -> None:
    with FakeOpenAIServer(mode="hang", hang_s=60) as server:
        task = make_task(tmp_path / "task", server.base_url, timeout_s=60)
        started = time.monotonic()
        result = run_cli(
            "run",
            str(task),
            "--out",
            str(tmp_path / "runs"),
            "--no-cache",
            "--timeout",
            "0.2",
            "--max-retries",
            "0",
        )
        assert time.monotonic() - started < BOUND_S
        assert result.exit_code == 1, result.output
        assert "timed out" in one_sentence(result.stderr)


def test_diff_takes_max_retries(tmp_path: Path) -> None:
    with flaky() as server:
        task = make_task(tmp_path / "task", server.base_url)
        (tmp_path / "old.txt").write_text("Classify the review.\n")
        (tmp_path / "new.txt").write_text("Classify the review; the label only.\n")
        result = run_cli(
            "diff",
            str(tmp_path / "old.txt"),
            str(tmp_path / "new.txt"),
            "--task",
            str(task),
            "--no-cache",
            "--format",
            "json",
            "--max-retries",
            "2",
        )
        assert result.exit_code == 0, result.output
        assert json.loads(result.stdout)["verdict"] == "improved"


@pytest.mark.parametrize(
    ("args", "env", "named"),
    [
        (["--timeout", "0"], {}, "--timeout"),
        (["--timeout", "-1"], {}, "--timeout"),
        (["--timeout", "nan"], {}, "--timeout"),
        (["--timeout", "soon"], {}, "--timeout"),
        (["--max-retries", "-1"], {}, "--max-retries"),
        ([], {"PROMPTOPT_EVAL_TIMEOUT": "0"}, "PROMPTOPT_EVAL_TIMEOUT"),
        ([], {"PROMPTOPT_RUN_MAX_RETRIES": "x"}, "PROMPTOPT_RUN_MAX_RETRIES"),
    ],
)
def test_bad_values_are_usage_errors_naming_the_flag(
    tmp_path: Path, args: list[str], env: dict[str, str], named: str
) -> None:
    task = make_task(tmp_path / "task", "http://127.0.0.1:9/v1")
    command = "run" if "RUN" in "".join(env) else "eval"
    result = run_cli(command, str(task), "--no-cache", *args, env=env)
    assert result.exit_code == 2, result.output
    assert named in result.output and "Traceback" not in result.output
