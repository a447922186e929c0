"""The error budget: a role whose requests keep failing stops the command, naming the endpoint,
the kind of failure and the count; and the journal keeps every paid answer."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from promptopt.llm.client import RequestFailed
from promptopt.llm.error_budget import ErrorBudget, ErrorLimits, TooManyErrors
from promptopt.llm.journal import ResponseJournal
from promptopt.llm.messages import Message
from promptopt.scoring.scorer import Scorer, build_messages
from promptopt.task.example import Example
from tests.conftest import CountingProvider, make_client


def msgs(text: str) -> tuple[Message, ...]:
    return build_messages("Uppercase it.", text)


def test_the_rate_counts_only_once_enough_requests_have_an_outcome() -> None:
    budget = ErrorBudget(ErrorLimits(max_rate=0.2, min_requests=20), "target model m at u")
    for _ in range(4):
        budget.failed_with("HTTP 500")  # 4 of 4, but too few to judge
    for _ in range(15):
        budget.succeeded()
    with pytest.raises(TooManyErrors) as info:
        budget.failed_with("HTTP 500")  # 5 of 20: 25%
    assert str(info.value) == (
        "target model m at u: 5 of 20 requests failed (HTTP 500: 5), more than the error "
        "budget of 20%"
    )
    with pytest.raises(TooManyErrors):
        budget.check()  # it stays tripped


def test_a_run_of_connection_failures_trips_it_and_a_success_resets_the_run() -> None:
    budget = ErrorBudget(ErrorLimits(max_consecutive=3, min_requests=1000), "target model m")
    budget.failed_with("connection failed")
    budget.failed_with("timed out")
    budget.succeeded()
    budget.failed_with("connection failed")
    budget.failed_with("connection failed")
    with pytest.raises(TooManyErrors, match=r"3 requests in a row failed \(connection failed\)"):
        budget.failed_with("connection failed")


def test_exceeded_at_the_end_of_an_evaluation_needs_no_minimum() -> None:
    limits = ErrorLimits(max_rate=0.2)
    assert limits.exceeded(2, 5) and not limits.exceeded(1, 5) and not limits.exceeded(0, 0)


async def test_a_failing_endpoint_stops_the_role_and_nothing_more_is_sent(tmp_path: Path) -> None:
    provider = CountingProvider(
        failures={f"w{i}": 99 for i in range(100)}, failure_kind="connection failed"
    )
    client = make_client(provider, tmp_path, max_retries=1, concurrency=2)
    client.errors = ErrorBudget(ErrorLimits(max_consecutive=5), client.errors.what)
    results = await asyncio.gather(
        *(client.complete(msgs(f"w{i}")) for i in range(100)), return_exceptions=True
    )
    stopped = [r for r in results if isinstance(r, TooManyErrors)]
    assert stopped, results
    assert str(stopped[0]).startswith(
        "target model scripted:counting at fake://counting: 5 requests in a row failed "
        "(connection failed)"
    )
    # Requests queued behind the concurrency limit are not sent once the budget is spent:
    # without the stop, 100 requests would make 200 attempts.
    assert provider.calls < 50
    calls = provider.calls
    with pytest.raises(TooManyErrors):
        await client.complete(msgs("another"))
    assert provider.calls == calls
    await client.aclose()


async def test_a_request_refused_for_its_content_is_recorded_and_others_go_on(
    tmp_path: Path,
) -> None:
    provider = CountingProvider(rejects={"w3"})
    client = make_client(provider, tmp_path)
    scorer = Scorer(client, lambda out, ex: float(out == ex.target), lambda e: e.fields["input"])
    examples = [Example(f"e{i}", {"input": f"w{i}"}, (f"W{i}",)) for i in range(6)]
    result = await scorer.evaluate("Uppercase it.", examples, split="dev")
    assert result.errors == 1 and result.examples[3].error is not None
    assert "context length" in result.examples[3].error
    assert [e.score for e in result.examples] == [1, 1, 1, 0, 1, 1]
    assert client.usage.errors == 1


async def test_the_journal_is_written_before_the_cache(tmp_path: Path) -> None:
    client = make_client(CountingProvider(), tmp_path)
    client.journal = ResponseJournal(tmp_path / "responses.jsonl")

    def disk_full(key: str, value: dict[str, Any]) -> None:
        raise OSError(28, "No space left on device")

    client.store.set = disk_full  # type: ignore[method-assign,assignment]
    with pytest.raises(OSError):
        await client.complete(msgs("paid"))
    client.journal.close()
    (line,) = (tmp_path / "responses.jsonl").read_text().splitlines()
    entry = json.loads(line)
    assert entry["paid"] is True and entry["value"]["text"] == "PAID"


def test_an_old_journal_s_transient_failures_are_not_replayed(tmp_path: Path) -> None:
    path = tmp_path / "responses.jsonl"
    rows = [
        {"key": "k", "paid": False, "cost_usd": 0.0, "value": {"error": "gave up: HTTP 500"}},
        {"key": "k", "paid": True, "cost_usd": 0.0, "value": {"text": "ok"}},
        {"key": "p", "paid": False, "cost_usd": 0.0, "value": {"error": "x", "permanent": True}},
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    journal = ResponseJournal(path)
    entry = journal.take("k")
    assert entry is not None and entry.value == {"text": "ok"}
    assert journal.take("k") is None
    permanent = journal.take("p")
    assert permanent is not None and permanent.value["permanent"] is True
    journal.close()


async def test_a_metric_that_keeps_raising_stops_the_evaluation(tmp_path: Path) -> None:
    def broken(output: str, example: Example) -> float:
        raise RequestFailed("never raised")  # a PromptoptError, as a checked metric raises

    client = make_client(CountingProvider(), tmp_path)
    scorer = Scorer(
        client,
        broken,
        lambda e: e.fields["input"],
        limits=ErrorLimits(min_requests=5),
        metric_name="metric python m.py:f",
    )
    examples = [Example(id=f"e{i}", fields={"input": f"w{i}"}, targets=("x",)) for i in range(9)]
    with pytest.raises(TooManyErrors, match=r"metric python m\.py:f: 5 of 5 examples failed"):
        await scorer.evaluate("p", examples, split="dev")


async def test_a_metric_value_outside_the_unit_interval_is_an_error_naming_the_metric(
    tmp_path: Path,
) -> None:
    client = make_client(CountingProvider(), tmp_path)
    scorer = Scorer(
        client, lambda out, ex: 1.5, lambda e: e.fields["input"], metric_name="metric custom"
    )
    example = Example(id="e1", fields={"input": "w"}, targets=("W",))
    result = await scorer.evaluate("p", [example], split="dev")
    assert result.examples[0].score == 0.0
    assert result.examples[0].error == "example e1: metric custom returned 1.5, outside [0, 1]"
    assert scorer.metric_errors.failed == 1


async def test_a_request_waiting_to_retry_stops_waiting_when_the_budget_trips(
    tmp_path: Path,
) -> None:
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        # The first request to fail waits a minute to retry; the other retries at once, fails
        # for good, and so spends the budget while the first is still waiting.
        waits.append(seconds)
        await asyncio.sleep(60 if len(waits) == 1 else 0)

    provider = CountingProvider(failures={"a": 99, "b": 99})
    client = make_client(provider, tmp_path, max_retries=1)
    client._sleep = sleep
    client.errors = ErrorBudget(ErrorLimits(max_rate=0.0, min_requests=1), client.errors.what)
    results = await asyncio.wait_for(
        asyncio.gather(
            client.complete(msgs("a")), client.complete(msgs("b")), return_exceptions=True
        ),
        timeout=10,
    )
    assert all(isinstance(r, TooManyErrors) for r in results), results
    assert len(waits) == 2


def test_the_task_file_s_errors_section_sets_the_budget_and_the_retries(tmp_path: Path) -> None:
    import yaml

    from promptopt.errors import TaskFileError
    from promptopt.scoring.runtime import error_limits, retry_policy
    from promptopt.task.loader import load_task
    from tests.support.search import write_task

    path = write_task(tmp_path)
    plain = load_task(path)
    assert error_limits(plain) == ErrorLimits()
    assert "errors" not in plain.spec.model_dump(mode="json")  # task hashes stay as they were
    spec = yaml.safe_load(path.read_text())
    spec["errors"] = {"max_rate": 0.5, "max_consecutive": 3, "max_retries": 1, "max_backoff_s": 2}
    path.write_text(yaml.safe_dump(spec))
    task = load_task(path)
    assert error_limits(task) == ErrorLimits(max_rate=0.5, min_requests=20, max_consecutive=3)
    retry = retry_policy(task)
    assert (retry.max_retries, retry.base_delay_s, retry.max_delay_s) == (1, 0.5, 2)
    assert task.task_hash != plain.task_hash
    spec["errors"] = {"max_rate": 2}
    path.write_text(yaml.safe_dump(spec))
    with pytest.raises(TaskFileError, match=r"errors\.max_rate"):
        load_task(path)
