"""`run` and `eval` against endpoints that keep failing, on a real loopback server: a garbage
endpoint, a dead port, an always-500 endpoint and a server killed mid-run each end the command
with exit 1 and one sentence, quickly; a run killed by the outage resumes once the server is
back and ends where an uninterrupted run ends."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from promptopt.testing.fake_server import FakeOpenAIServer
from tests.support.diff import run_cli
from tests.support.search import PROPERTY, WORDS_GOOD, write_task

SCRIPT = """
from tests.support.search import optimizer_answer


def optimizer(request):
    return optimizer_answer(request)
"""

# Retries and backoff small enough that a failing endpoint is detected in well under a second.
FAST = {"max_retries": 1, "max_backoff_s": 0.01}
BOUND_S = 30.0


def sentiment(body: dict[str, Any]) -> str:
    """The toy task's target: right on every review only when told to answer with the label."""
    system = body["messages"][0]["content"].lower()
    review = body["messages"][-1]["content"]
    if PROPERTY in system:
        return "positive" if any(w in review for w in WORDS_GOOD) else "negative"
    return "positive"


def make_task(folder: Path, base_url: str, timeout_s: float = 5, **errors: Any) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "script.py").write_text(SCRIPT)
    path = write_task(folder)
    spec = yaml.safe_load(path.read_text())
    spec["models"]["target"] = {
        "model": "openai:fake-model",
        "base_url": base_url,
        "temperature": 0,
        "max_tokens": 8,
        "timeout_s": timeout_s,
    }
    spec["models"]["optimizer"]["model"] = "scripted:script.py:optimizer"
    spec["errors"] = {**FAST, **errors}
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def one_sentence(stderr: str) -> str:
    """The single error line a failing command prints, checked to be alone and untraced."""
    assert "Traceback" not in stderr, stderr
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, stderr
    return errors[0]


def run(task: Path, out: Path, *extra: str) -> Any:
    return run_cli("run", str(task), "--out", str(out), "--no-cache", "--json", *extra)


def evaluate(task: Path, *extra: str) -> Any:
    return run_cli("eval", str(task), "--no-cache", "--json", *extra)


@pytest.fixture
def garbage() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer(mode="malformed") as srv:
        yield srv


@pytest.fixture
def always_500() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer(fault_rate=1.0, fault_statuses=(500,), max_faults_per_body=10**9) as srv:
        yield srv


def endpoint_cases(
    request: pytest.FixtureRequest,
) -> tuple[str, str]:
    """The base URL of the case's endpoint and the failure kind its message names."""
    case = request.param
    if case == "dead port":
        return f"http://127.0.0.1:{free_port()}/v1", "connection failed"
    server: FakeOpenAIServer = request.getfixturevalue(case)
    kind = "malformed response" if case == "garbage" else "HTTP 500"
    return server.base_url, kind


@pytest.fixture(params=["garbage", "dead port", "always_500"])
def failing(request: pytest.FixtureRequest) -> tuple[str, str]:
    return endpoint_cases(request)


def test_run_against_a_failing_endpoint_exits_1_with_one_sentence(
    failing: tuple[str, str], tmp_path: Path
) -> None:
    base_url, kind = failing
    task = make_task(tmp_path / "task", base_url)
    started = time.monotonic()
    result = run(task, tmp_path / "runs")
    assert time.monotonic() - started < BOUND_S
    assert result.exit_code == 1, result.output
    line = one_sentence(result.stderr)
    assert "target model openai:fake-model at http://127.0.0.1:" in line
    assert f"({kind}" in line and "promptopt run --resume" in line
    (run_dir,) = (tmp_path / "runs").iterdir()
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "failed" and summary["stop_reason"] == "errors"
    assert "test_comparison" not in summary  # no score that errors decided is a result
    assert "**errors**: target:" in (run_dir / "report.md").read_text()
    assert '<span id="errors">target: ' in (run_dir / "report.html").read_text()


def test_eval_against_a_failing_endpoint_exits_1_with_one_sentence(
    failing: tuple[str, str], tmp_path: Path
) -> None:
    base_url, kind = failing
    task = make_task(tmp_path / "task", base_url)
    started = time.monotonic()
    result = evaluate(task)
    assert time.monotonic() - started < BOUND_S
    assert result.exit_code == 1, result.output
    line = one_sentence(result.stderr)
    assert "target model openai:fake-model at http://127.0.0.1:" in line and kind in line


def test_eval_of_a_few_examples_that_all_fail_exits_1(tmp_path: Path) -> None:
    # Fewer requests than the budget's minimum: the rate is still checked at the end.
    task = make_task(tmp_path / "task", f"http://127.0.0.1:{free_port()}/v1", max_consecutive=50)
    result = evaluate(task, "--limit", "5")
    assert result.exit_code == 1, result.output
    line = one_sentence(result.stderr)
    assert "5 of 5 examples on dev failed (connection failed: 5)" in line
    assert json.loads(result.stdout)["errors"] == 5  # the result is still shown


def test_one_over_long_example_is_recorded_and_the_run_goes_on(tmp_path: Path) -> None:
    def too_long(body: dict[str, Any]) -> str | None:
        if "review 3:" in body["messages"][-1]["content"]:
            return "This model's maximum context length is 8 tokens."
        return None

    with FakeOpenAIServer(reply=sentiment, reject=too_long) as server:
        task = make_task(tmp_path / "task", server.base_url)
        result = run_cli("run", str(task), "--out", str(tmp_path / "runs"), "--no-cache")
        assert result.exit_code == 0, result.output
        assert "errors: target: " in result.stdout  # the terminal summary shows them
        (run_dir,) = (tmp_path / "runs").iterdir()
        summary = json.loads((run_dir / "summary.json").read_text())
        assert summary["status"] == "finished"
        assert summary["usage"]["target"]["errors"] >= 1
        assert "**errors**: target: " in (run_dir / "report.md").read_text()
        evaluated = evaluate(task, "--split", "train", "--limit", "10")
        assert evaluated.exit_code == 0, evaluated.output
        (example,) = [e for e in json.loads(evaluated.stdout)["examples"] if e["id"] == "r3"]
        assert "HTTP 400" in example["error"] and "maximum context length" in example["error"]


class KillAfter:
    """A reply function that stops its server (from another thread) at the n-th request."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.count = 0
        self.server: FakeOpenAIServer | None = None
        self.lock = threading.Lock()

    def __call__(self, body: dict[str, Any]) -> str:
        with self.lock:
            self.count += 1
            if self.count == self.n and self.server is not None:
                threading.Thread(target=self.server.stop).start()
        return sentiment(body)


def test_a_run_killed_by_an_outage_resumes_and_ends_where_an_uninterrupted_run_ends(
    tmp_path: Path,
) -> None:
    with FakeOpenAIServer(reply=sentiment) as server:
        reference = run(make_task(tmp_path / "ref", server.base_url), tmp_path / "ref-runs")
        assert reference.exit_code == 0, reference.output
        total = server.requests_total
    expected = json.loads(reference.stdout)

    port = free_port()
    killer = KillAfter(total // 2)
    server = FakeOpenAIServer(port=port, reply=killer)
    killer.server = server
    server.start()
    try:
        task = make_task(tmp_path / "task", server.base_url)
        started = time.monotonic()
        killed = run(task, tmp_path / "runs")
        assert time.monotonic() - started < BOUND_S
    finally:
        server.stop()
    assert killed.exit_code == 1, killed.output
    line = one_sentence(killed.stderr)
    assert "requests in a row failed (connection failed)" in line
    (run_dir,) = (tmp_path / "runs").iterdir()
    stopped = json.loads((run_dir / "summary.json").read_text())
    assert stopped["status"] == "failed"

    with FakeOpenAIServer(port=port, reply=sentiment) as back:
        resumed = run_cli("run", "--resume", str(run_dir), "--no-cache", "--json")
        assert resumed.exit_code == 0, resumed.output
        assert back.requests_total < total  # the answers from before the outage were kept
    final = json.loads(resumed.stdout)
    assert final["status"] == "finished"
    assert final["scores"] == expected["scores"]
    assert final["best_prompt"] == expected["best_prompt"]
    assert final["test_comparison"] == expected["test_comparison"]


def test_eval_against_a_server_killed_mid_run_exits_1(tmp_path: Path) -> None:
    killer = KillAfter(5)
    server = FakeOpenAIServer(reply=killer)
    killer.server = server
    server.start()
    try:
        task = make_task(tmp_path / "task", server.base_url)
        started = time.monotonic()
        result = evaluate(task, "--split", "train")
        assert time.monotonic() - started < BOUND_S
    finally:
        server.stop()
    assert result.exit_code == 1, result.output
    assert "failed (connection failed" in one_sentence(result.stderr)


def test_diff_against_a_failing_endpoint_exits_1_not_a_verdict(
    failing: tuple[str, str], tmp_path: Path
) -> None:
    base_url, kind = failing
    task = make_task(tmp_path / "task", base_url)
    old, new = tmp_path / "old.txt", tmp_path / "new.txt"
    old.write_text("Classify the review.\n")
    new.write_text("Classify the review. Answer with the label only.\n")
    result = run_cli(
        "diff", str(old), str(new), "--task", str(task), "--no-cache", "--fail-on-regression"
    )
    assert result.exit_code == 1, result.output
    assert kind in one_sentence(result.stderr)


def test_diff_whose_scores_errors_decided_exits_1(tmp_path: Path) -> None:
    def too_long(body: dict[str, Any]) -> str | None:
        number = int(body["messages"][-1]["content"].split(":")[0].split()[-1])
        return "maximum context length exceeded" if 200 <= number < 205 else None

    with FakeOpenAIServer(reply=sentiment, reject=too_long) as server:
        # No stop while scoring: the check at the end of each side is what is tested.
        task = make_task(tmp_path / "task", server.base_url, min_requests=1000)
        old, new = tmp_path / "old.txt", tmp_path / "new.txt"
        old.write_text("Classify the review.\n")
        new.write_text("Classify the review. Answer with the label only.\n")
        result = run_cli("diff", str(old), str(new), "--task", str(task), "--no-cache")
    assert result.exit_code == 1, result.output
    line = one_sentence(result.stderr)
    assert "5 of 20 examples on test failed (HTTP 400: 5)" in line and "old.txt" in line


def test_a_400_about_the_request_as_a_whole_stops_the_run_at_once(tmp_path: Path) -> None:
    with FakeOpenAIServer(mode="bad_request") as server:
        task = make_task(tmp_path / "task", server.base_url)
        result = run(task, tmp_path / "runs")
        sent = server.requests_total
    assert result.exit_code == 1, result.output
    line = one_sentence(result.stderr)
    assert "HTTP 400" in line and "Unrecognized request argument" in line
    assert sent <= 8  # the requests already in flight at -j 8, no retries, no more


def test_a_diff_report_says_how_many_examples_failed(tmp_path: Path) -> None:
    def too_long(body: dict[str, Any]) -> str | None:
        return "maximum context length exceeded" if "review 203:" in str(body) else None

    with FakeOpenAIServer(reply=sentiment, reject=too_long) as server:
        task = make_task(tmp_path / "task", server.base_url)
        old, new = tmp_path / "old.txt", tmp_path / "new.txt"
        old.write_text("Classify the review.\n")
        new.write_text("Classify the review. Answer with the label only.\n")
        result = run_cli(
            "diff", str(old), str(new), "--task", str(task), "--no-cache", "--format", "md"
        )
    assert result.exit_code == 0, result.output  # 1 of 20: within the error budget
    assert "errors (scored 0): 1 example(s) of the old prompt, 1 of the new" in result.stdout


def test_an_unreachable_optimizer_stops_the_run_naming_it(tmp_path: Path) -> None:
    with FakeOpenAIServer(reply=sentiment) as server:
        task = make_task(tmp_path / "task", server.base_url)
        spec = yaml.safe_load(task.read_text())
        dead = f"http://127.0.0.1:{free_port()}/v1"
        spec["models"]["optimizer"] = {"model": "openai:opt-model", "base_url": dead}
        task.write_text(yaml.safe_dump(spec, sort_keys=False))
        started = time.monotonic()
        result = run(task, tmp_path / "runs")
        assert time.monotonic() - started < BOUND_S
    assert result.exit_code == 1, result.output
    line = one_sentence(result.stderr)
    assert f"optimizer model openai:opt-model at {dead}: " in line
    assert "(connection failed)" in line


@pytest.mark.parametrize("command", ["run", "eval"])
def test_a_server_that_never_answers_stops_the_command(command: str, tmp_path: Path) -> None:
    with FakeOpenAIServer(mode="hang", hang_s=60) as server:
        task = make_task(tmp_path / "task", server.base_url, timeout_s=0.3)
        started = time.monotonic()
        result = run(task, tmp_path / "runs") if command == "run" else evaluate(task)
        assert time.monotonic() - started < BOUND_S
    assert result.exit_code == 1, result.output
    assert "requests in a row failed (timed out)" in one_sentence(result.stderr)


def test_the_sentence_names_the_endpoint_without_its_credentials(tmp_path: Path) -> None:
    port = free_port()
    task = make_task(tmp_path / "task", f"http://someone:s3cr3t-pw@127.0.0.1:{port}/v1")
    result = evaluate(task)
    assert result.exit_code == 1, result.output
    line = one_sentence(result.stderr)
    assert f"at http://127.0.0.1:{port}/v1:" in line
    assert "s3cr3t" not in result.output and "someone" not in result.output
