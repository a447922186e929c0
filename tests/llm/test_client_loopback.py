"""The scorer against a real OpenAI-compatible HTTP server on loopback, through the openai SDK."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from promptopt.cli.main import app
from promptopt.errors import BudgetExhausted
from promptopt.llm.budget import BudgetCaps
from promptopt.llm.cache import NullCache
from promptopt.llm.client import RetryPolicy
from promptopt.scoring.runtime import Runtime, RuntimeOptions
from promptopt.scoring.scorer import build_messages
from promptopt.task.loader import load_task
from promptopt.testing.fake_server import FakeOpenAIServer
from tests.support.search import WORDS_GOOD, write_task


def sentiment_reply(body: dict[str, Any]) -> str:
    review = body["messages"][-1]["content"]
    # Right on "good" words and on every third review otherwise: a score strictly inside (0, 1).
    number = int(review.split(":")[0].split()[-1])
    if any(w in review for w in WORDS_GOOD) or number % 3 == 0:
        return "positive" if any(w in review for w in WORDS_GOOD) else "negative"
    return "positive"


@pytest.fixture
def server() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer(reply=sentiment_reply, retry_after_s=0.01) as srv:
        yield srv


def task_for(tmp_path: Path, srv: FakeOpenAIServer) -> Path:
    path = write_task(tmp_path)
    spec = yaml.safe_load(path.read_text())
    spec["models"]["target"] = {
        "model": "openai:fake-model",
        "base_url": srv.base_url,
        "temperature": 0,
        "max_tokens": 8,
    }
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def runtime(tmp_path: Path, srv: FakeOpenAIServer, **options: Any) -> Runtime:
    task = load_task(task_for(tmp_path, srv))
    retry = RetryPolicy(max_retries=8, base_delay_s=0.005, max_delay_s=0.05)
    return Runtime(task, RuntimeOptions(retry=retry, **options), store=NullCache(), env={})


async def test_concurrency_cap_is_never_exceeded(tmp_path: Path, server: FakeOpenAIServer) -> None:
    server.latency_s = 0.03
    async with runtime(tmp_path, server, concurrency=5) as rt:
        train = rt.task.split("train")
        result = await rt.scorer.evaluate("Classify.", train, split="train")
    assert result.n == 40 and result.errors == 0
    assert server.max_in_flight == 5
    assert server.requests_total == 40


async def test_identical_concurrent_requests_reach_the_server_once(
    tmp_path: Path, server: FakeOpenAIServer
) -> None:
    server.latency_s = 0.05
    async with runtime(tmp_path, server, concurrency=16) as rt:
        client = rt.client("target")
        messages = build_messages("Classify.", "review 1: a dull film")
        results = await asyncio.gather(*(client.complete(messages) for _ in range(25)))
    assert server.requests_total == 1
    assert {r.text for r in results} == {"positive"}


def test_second_identical_eval_makes_zero_requests(
    tmp_path: Path, server: FakeOpenAIServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PROMPTOPT_CACHE_DIR", str(tmp_path / "cache"))
    task = task_for(tmp_path, server)
    args = ["eval", str(task), "--split", "test", "--json"]
    first = CliRunner().invoke(app, args)
    assert first.exit_code == 0, first.output
    sent = server.requests_total
    assert sent == 20
    second = CliRunner().invoke(app, args)
    assert server.requests_total == sent
    a, b = json.loads(first.stdout), json.loads(second.stdout)
    assert b["usage"]["requests"] == 0
    assert (a["score"], a["ci95"], a["examples"]) == (b["score"], b["ci95"], b["examples"])


async def test_faults_do_not_change_the_scores(tmp_path: Path, server: FakeOpenAIServer) -> None:
    async with runtime(tmp_path, server, concurrency=8) as rt:
        clean = await rt.scorer.evaluate("Classify.", rt.task.split("train"), split="train")
    assert server.faults_sent == 0

    server.reset_stats()
    server.fault_rate = 0.2
    server.fault_statuses = (429, 500)
    async with runtime(tmp_path, server, concurrency=8) as rt:
        faulty = await rt.scorer.evaluate("Classify.", rt.task.split("train"), split="train")
        attempts = rt.client("target").usage.attempts
    assert server.faults_sent > 0
    assert faulty.errors == 0
    assert faulty.scores == clean.scores
    assert 0 < clean.score < 1
    assert attempts == server.requests_total  # every attempt is counted, retries included


@pytest.mark.parametrize(("cap", "concurrency"), [(7, 16), (13, 4), (1, 8)])
async def test_budget_cap_is_never_exceeded_under_concurrency(
    tmp_path: Path, server: FakeOpenAIServer, cap: int, concurrency: int
) -> None:
    server.latency_s = 0.01
    async with runtime(
        tmp_path, server, concurrency=concurrency, caps=BudgetCaps(target_calls=cap)
    ) as rt:
        client = rt.client("target")

        async def one(i: int) -> bool:
            try:
                await client.complete(build_messages("Classify.", f"review {i}: a dull film"))
                return True
            except BudgetExhausted:
                return False

        answered = await asyncio.gather(*(one(i) for i in range(40)))
    assert sum(answered) == cap
    assert server.requests_total == cap
