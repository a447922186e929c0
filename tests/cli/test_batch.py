"""`--batch` on eval, diff and run against the loopback batch server."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from promptopt.cli.main import app
from promptopt.testing.fake_batch import FakeBatchServer
from tests.support.search import with_loadable_models, write_task

PRICE = {"input": 2.0, "output": 8.0}


def reply(body: dict[str, Any]) -> str:
    review = str(body["messages"][-1]["content"])
    return "negative" if any(w in review for w in ("dull", "awful", "tedious")) else "positive"


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[FakeBatchServer]:
    monkeypatch.setenv("PROMPTOPT_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test")
    # Ended at the first poll: a command waits for no backoff.
    with FakeBatchServer(reply=reply, polls_to_end=1) as srv:
        yield srv


def task_file(tmp_path: Path, srv: FakeBatchServer, provider: str = "openai", **extra: Any) -> Path:
    path = with_loadable_models(write_task(tmp_path, budget={"target_calls": 200}))
    spec = yaml.safe_load(path.read_text())
    base_url = srv.base_url if provider == "openai" else srv.anthropic_base_url
    spec["models"]["target"] = {
        "model": f"{provider}:fake-model",
        "base_url": base_url,
        "temperature": 0,
        "max_tokens": 8,
        "price": PRICE,
        **extra,
    }
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
def test_eval_batch_prints_progress_and_costs_half(
    tmp_path: Path, server: FakeBatchServer, provider: str
) -> None:
    task = task_file(tmp_path, server, provider)
    batched = CliRunner().invoke(app, ["eval", str(task), "--batch", "--json", "--no-cache"])
    assert batched.exit_code == 0, batched.output
    assert server.batch_submissions == 1 and server.batched_requests == 20
    assert "20 submitted" in batched.stderr and "20 completed" in batched.stderr
    plain = CliRunner().invoke(app, ["eval", str(task), "--json", "--no-cache"])
    assert server.batch_submissions == 1
    a, b = json.loads(batched.stdout), json.loads(plain.stdout)
    assert a["examples"] == b["examples"]
    assert a["usage"]["cost_usd"] == pytest.approx(b["usage"]["cost_usd"] / 2)


def test_batch_true_in_the_task_file_batches_without_the_flag(
    tmp_path: Path, server: FakeBatchServer
) -> None:
    task = task_file(tmp_path, server, batch=True)
    result = CliRunner().invoke(app, ["eval", str(task), "--json"])
    assert result.exit_code == 0, result.output
    assert server.batch_submissions == 1 and server.requests_total == 0


def test_diff_batch_scores_both_sides_in_one_batch(tmp_path: Path, server: FakeBatchServer) -> None:
    task = task_file(tmp_path, server)
    old, new = tmp_path / "old.txt", tmp_path / "new.txt"
    old.write_text("Classify the review.\n")
    new.write_text("Classify the review. Answer with the label only.\n")
    args = ["diff", str(old), str(new), "--task", str(task), "--batch", "--format", "json"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert server.batch_submissions == 1 and server.batched_requests == 40
    assert server.requests_total == 0


def test_run_batch_keeps_its_batches_in_the_run_folder(
    tmp_path: Path, server: FakeBatchServer
) -> None:
    task = task_file(tmp_path, server)
    out = tmp_path / "runs"
    args = ["run", str(task), "--batch", "--json", "--out", str(out), "--max-steps", "1"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    folder = Path(summary["run_dir"])
    records = [json.loads(p.read_text()) for p in (folder / "batches").glob("*.json")]
    assert records and all(r["done"] for r in records)
    assert server.batch_submissions == len(records)
    assert server.requests_total == 0  # every target request went through a batch
    assert summary["usage"]["target"]["requests"] == server.batched_requests
