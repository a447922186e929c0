"""Scoring through the providers' batch services, against the loopback batch server, for both
OpenAI's Batch API and Anthropic's Message Batches: submit, poll, partial failure and fallback,
expiry, kill and resume, and cost at batch prices."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from promptopt.errors import BudgetExhausted
from promptopt.llm.batch import (
    BatchBook,
    BatchPolicy,
    BatchProgress,
    BatchRecord,
    batch_price,
)
from promptopt.llm.budget import BudgetCaps
from promptopt.llm.cache import NullCache, ResponseCache
from promptopt.llm.client import RetryPolicy, RunStopped
from promptopt.llm.journal import ResponseJournal
from promptopt.llm.pricing import cost_usd, library_batch_price, request_max_cost_usd
from promptopt.scoring.runtime import Runtime, RuntimeOptions
from promptopt.scoring.scorer import EvalResult, build_messages
from promptopt.task.loader import load_task
from promptopt.task.modelspec import ModelSpec, Price
from promptopt.testing.fake_batch import FakeBatchServer, Fate
from promptopt.testing.fake_server import FakeOpenAIServer
from tests.support.search import write_task

PROVIDERS = ["openai", "anthropic"]
PRICE = {"input": 2.0, "output": 8.0}
FAST = BatchPolicy(poll_initial_s=0.01, poll_max_s=0.05, gather_s=0.02)
ENV = {"ANTHROPIC_API_KEY": "sk-ant-test"}


def reply(body: dict[str, Any]) -> str:
    review = str(body["messages"][-1]["content"])
    return "negative" if any(w in review for w in ("dull", "awful", "tedious")) else "positive"


@pytest.fixture
def server() -> Iterator[FakeBatchServer]:
    with FakeBatchServer(reply=reply, polls_to_end=2) as srv:
        yield srv


def task_path(tmp_path: Path, srv: FakeOpenAIServer, provider: str, **model: Any) -> Path:
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = write_task(tmp_path)
    spec = yaml.safe_load(path.read_text())
    base_url = srv.base_url if provider == "openai" else f"http://127.0.0.1:{srv.port}"
    spec["models"]["target"] = {
        "model": f"{provider}:fake-model",
        "base_url": base_url,
        "temperature": 0,
        "max_tokens": 8,
        "price": PRICE,
        **model,
    }
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def runtime(
    tmp_path: Path,
    srv: FakeOpenAIServer,
    provider: str,
    *,
    batch: bool = True,
    store: Any = None,
    progress: list[BatchProgress] | None = None,
    journal: ResponseJournal | None = None,
    stop: asyncio.Event | None = None,
    batch_dir: Path | None = None,
    policy: BatchPolicy = FAST,
    **options: Any,
) -> Runtime:
    task = load_task(task_path(tmp_path, srv, provider))
    opts = RuntimeOptions(
        retry=RetryPolicy(max_retries=2, base_delay_s=0.001, max_delay_s=0.01),
        batch=batch,
        batch_policy=policy,
        cache_dir=tmp_path / "cache",
        on_batch_progress=None if progress is None else progress.append,
        **options,
    )
    return Runtime(
        task,
        opts,
        store=store or NullCache(),
        env=ENV,
        journal=journal,
        stop=stop,
        batch_dir=batch_dir,
    )


async def score_dev(rt: Runtime) -> EvalResult:
    return await rt.scorer.evaluate("Classify the review.", rt.task.split("dev"), split="dev")


def sync_requests(srv: FakeBatchServer) -> int:
    return srv.requests_total + srv.messages_total


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_an_evaluation_is_one_batch_polled_until_it_ends(
    tmp_path: Path, server: FakeBatchServer, provider: str
) -> None:
    progress: list[BatchProgress] = []
    async with runtime(tmp_path, server, provider, progress=progress) as rt:
        result = await score_dev(rt)
    assert result.n == 20 and result.errors == 0
    assert server.batch_submissions == 1
    assert server.batched_requests == 20
    assert server.batch_polls >= 2
    assert sync_requests(server) == 0
    assert result.usage.requests == 20 and result.usage.cache_hits == 0
    # The right answers came back to the right examples (matched by custom id).
    assert [e.output for e in result.examples] == [reply_for(rt, e.id) for e in result.examples]
    first, last = progress[0], progress[-1]
    assert first.submitted == 20 and first.in_progress == 20 and first.completed == 0
    assert last.completed == 20 and last.in_progress == 0 and last.failed == 0
    assert "20 submitted" in last.line() and "20 completed" in last.line()


def reply_for(rt: Runtime, example_id: str) -> str:
    example = next(e for e in rt.task.split("dev") if e.id == example_id)
    return reply({"messages": [{"content": rt.task.render_input(example)}]})


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_batch_answers_cost_half_the_price(
    tmp_path: Path, server: FakeBatchServer, provider: str
) -> None:
    async with runtime(tmp_path / "batch", server, provider) as rt:
        batched = await score_dev(rt)
    async with runtime(tmp_path / "plain", server, provider, batch=False) as rt:
        plain = await score_dev(rt)
    assert server.batch_submissions == 1 and sync_requests(server) == 20
    assert batched.usage.tokens == plain.usage.tokens
    assert plain.usage.cost_usd == pytest.approx(cost_usd(plain.usage.tokens, Price(**PRICE)))
    assert batched.usage.cost_usd == pytest.approx(plain.usage.cost_usd / 2)
    assert batched.usage.cost_usd > 0


def fate_by_word(failing: str, fate: Fate) -> Any:
    def decide(body: dict[str, Any]) -> Fate:
        return fate if failing in str(body["messages"][-1]["content"]) else "ok"

    return decide


@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize("fate", ["error", "expire"])
async def test_what_a_batch_leaves_unanswered_is_sent_one_by_one(
    tmp_path: Path, server: FakeBatchServer, provider: str, fate: Fate
) -> None:
    # The dev reviews that say "lovely" fail or expire inside the batch.
    server.fate = fate_by_word("lovely", fate)
    async with runtime(tmp_path, server, provider) as rt:
        result = await score_dev(rt)
        ledger = rt.ledger
    assert result.errors == 0 and result.n == 20
    failed = sum("lovely" in rt.task.render_input(e) for e in rt.task.split("dev"))
    assert failed > 0
    assert server.batch_submissions == 1
    assert sync_requests(server) == failed
    assert result.usage.requests == 20
    # Each request counts as one call, although the failed ones were sent twice.
    assert ledger.calls == {"target": 20}
    # Batch answers at half price, the fallbacks at the full price.
    half = batch_price(Price(**PRICE))
    assert half is not None
    assert result.usage.cost_usd > cost_usd(result.usage.tokens, half)
    assert result.usage.cost_usd < cost_usd(result.usage.tokens, Price(**PRICE))


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_a_killed_command_polls_its_batch_again_instead_of_resubmitting(
    tmp_path: Path, server: FakeBatchServer, provider: str
) -> None:
    server.hold = True  # the batch stays in progress until the first command is gone
    stop = asyncio.Event()

    async def first() -> None:
        async with runtime(tmp_path, server, provider, stop=stop) as rt:
            await score_dev(rt)

    task = asyncio.ensure_future(first())
    while server.batch_polls < 2:
        await asyncio.sleep(0.01)
    stop.set()
    with pytest.raises(RunStopped):
        await task
    assert server.batch_submissions == 1
    assert (
        len(
            BatchBook(tmp_path / "cache" / "batches").open_batches(
                f"{provider}:fake-model", _endpoint(server, provider)
            )
        )
        == 1
    )

    server.hold = False
    async with runtime(tmp_path, server, provider) as rt:
        result = await score_dev(rt)
    assert result.errors == 0 and result.n == 20
    assert server.batch_submissions == 1  # no second submission
    assert sync_requests(server) == 0
    assert result.usage.requests == 20
    assert result.usage.cost_usd == pytest.approx(
        cost_usd(result.usage.tokens, batch_price(Price(**PRICE)))
    )
    book = BatchBook(tmp_path / "cache" / "batches")
    assert book.open_batches(f"{provider}:fake-model", _endpoint(server, provider)) == []


def _endpoint(srv: FakeOpenAIServer, provider: str) -> str:
    return srv.base_url if provider == "openai" else f"http://127.0.0.1:{srv.port}"


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_a_killed_run_resumes_from_its_folder_and_journal(
    tmp_path: Path, server: FakeBatchServer, provider: str
) -> None:
    """A run's batches live in its folder; the resumed run polls them, and what the journal
    already holds is neither submitted nor paid again."""
    folder = tmp_path / "run"
    server.hold = True
    stop = asyncio.Event()

    async def first() -> None:
        journal = ResponseJournal(tmp_path / "responses.jsonl")
        async with runtime(
            tmp_path, server, provider, journal=journal, stop=stop, batch_dir=folder / "batches"
        ) as rt:
            await score_dev(rt)

    task = asyncio.ensure_future(first())
    while server.batch_polls < 1:
        await asyncio.sleep(0.01)
    stop.set()
    with pytest.raises(RunStopped):
        await task
    assert list((folder / "batches").glob("*.json"))

    server.hold = False
    for _ in range(2):
        journal = ResponseJournal(tmp_path / "responses.jsonl")
        async with runtime(
            tmp_path, server, provider, journal=journal, batch_dir=folder / "batches"
        ) as rt:
            result = await score_dev(rt)
        assert result.errors == 0
        assert result.usage.requests == 20  # the second time, replayed from the journal
    assert server.batch_submissions == 1
    assert sync_requests(server) == 0


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_cached_requests_are_never_submitted(
    tmp_path: Path, server: FakeBatchServer, provider: str
) -> None:
    store = ResponseCache(tmp_path / "responses")
    try:
        async with runtime(tmp_path, server, provider, batch=False, store=store) as rt:
            dev = rt.task.split("dev")
            await rt.scorer.evaluate("Classify the review.", dev[:5], split="dev")
        async with runtime(tmp_path, server, provider, store=store) as rt:
            result = await score_dev(rt)
        assert result.usage.cache_hits == 5 and result.usage.requests == 15
        assert server.batched_requests == 15
        async with runtime(tmp_path, server, provider, store=store) as rt:
            again = await score_dev(rt)
        assert again.usage.cache_hits == 20
        assert server.batch_submissions == 1
    finally:
        store.close()


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_a_round_of_candidates_shares_one_batch(
    tmp_path: Path, server: FakeBatchServer, provider: str
) -> None:
    async with runtime(tmp_path, server, provider) as rt:
        train = rt.task.split("train")[:10]
        results = await asyncio.gather(
            *(rt.scorer.evaluate(f"Prompt {i}.", train, split="train") for i in range(3))
        )
    assert all(r.errors == 0 for r in results)
    assert server.batch_submissions == 1 and server.batched_requests == 30


async def test_a_cost_cap_reserves_the_whole_batch_before_submitting(
    tmp_path: Path, server: FakeBatchServer
) -> None:
    one = 0.0
    async with runtime(tmp_path, server, "openai", batch=False) as rt:
        example = rt.task.split("dev")[0]
        messages = build_messages("Classify the review.", rt.task.render_input(example))
        half = batch_price(Price(**PRICE))
        one = request_max_cost_usd(messages, {"temperature": 0, "max_tokens": 8}, half)
    cap = one * 5.5
    async with runtime(tmp_path, server, "openai", caps=BudgetCaps(cost_usd=cap)) as rt:
        with pytest.raises(BudgetExhausted, match="cost budget"):
            await score_dev(rt)
    assert server.batch_submissions == 1
    assert 1 <= server.batched_requests <= 5


async def test_a_server_without_batches_gets_one_request_at_a_time(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with FakeOpenAIServer(reply=reply) as plain, caplog.at_level(logging.WARNING):
        async with runtime(tmp_path, plain, "openai") as rt:
            result = await score_dev(rt)
            batcher = rt.scorer.batcher
        assert result.errors == 0 and plain.requests_total == 20
        assert batcher is not None and batcher.unsupported is not None
        # Each request still counts as one call.
        assert rt.ledger.calls == {"target": 20}
    assert "has no batch service" in caplog.text and "sent one by one" in caplog.text


async def test_a_provider_without_batches_says_so(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = write_task(tmp_path)
    (tmp_path / "script.py").write_text("def reply(request):\n    return 'positive'\n")
    spec = yaml.safe_load(path.read_text())
    spec["models"]["target"] = {"model": "scripted:script.py:reply", "batch": True}
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    with caplog.at_level(logging.WARNING):
        async with Runtime(load_task(path), RuntimeOptions(), store=NullCache(), env={}) as rt:
            result = await score_dev(rt)
            assert rt.scorer.batcher is None
    assert result.errors == 0
    assert "scripted:script.py:reply has no batch service" in caplog.text


async def test_requests_gathered_by_a_cancelled_command_are_sent_one_by_one(
    tmp_path: Path, server: FakeBatchServer
) -> None:
    slow = BatchPolicy(poll_initial_s=0.01, poll_max_s=0.05, gather_s=0.5)
    async with runtime(tmp_path, server, "openai", policy=slow) as rt:
        dev = rt.task.split("dev")
        leader = asyncio.ensure_future(rt.scorer.evaluate("First.", dev, split="dev"))
        await asyncio.sleep(0.05)
        follower = asyncio.ensure_future(rt.scorer.evaluate("Second.", dev, split="dev"))
        await asyncio.sleep(0.05)
        leader.cancel()
        result = await follower
    with pytest.raises(asyncio.CancelledError):
        await leader
    assert result.errors == 0 and result.n == 20
    assert server.batch_submissions == 0 and server.requests_total == 20


def test_batch_prices_are_half_or_the_libraries_batch_price(tmp_path: Path) -> None:
    assert batch_price(Price(input=2.0, output=8.0, cache_read=0.5)) == Price(
        input=1.0, output=4.0, cache_read=0.25
    )
    assert batch_price(None) is None
    assert library_batch_price(ModelSpec(model="openai:gpt-4o-mini")) == Price(
        input=0.075, output=0.3, cache_read=0.075
    )
    assert library_batch_price(ModelSpec(model="anthropic:claude-haiku-4-5")) == Price(
        input=0.5, output=2.5, cache_read=0.05, cache_write=0.625
    )
    # A price the task file sets is the standard price: it is halved, not looked up.
    assert library_batch_price(ModelSpec(model="openai:gpt-4o-mini", price=Price(**PRICE))) is None


async def test_a_listed_model_is_priced_at_its_batch_price(tmp_path: Path) -> None:
    path = write_task(tmp_path)
    spec = yaml.safe_load(path.read_text())
    spec["models"]["target"] = {"model": "openai:gpt-4o-mini", "batch": True}
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    env = {"OPENAI_API_KEY": "k"}
    async with Runtime(load_task(path), RuntimeOptions(), store=NullCache(), env=env) as rt:
        batcher = rt.scorer.batcher
    assert batcher is not None
    assert batcher.price == Price(input=0.075, output=0.3, cache_read=0.075)


def test_the_progress_line_names_every_count() -> None:
    line = BatchProgress("openai:gpt-4o-mini", 2, 400, 120, 270, 10, 185.0).line()
    assert line == (
        "batch openai:gpt-4o-mini: 2 batches, 400 submitted, 120 in progress, 270 completed, "
        "10 failed, 3m05s elapsed"
    )


async def test_a_recorded_batch_the_provider_no_longer_knows_falls_back(
    tmp_path: Path, server: FakeBatchServer, caplog: pytest.LogCaptureFixture
) -> None:
    async with runtime(tmp_path, server, "openai", batch=False) as rt:
        client = rt.client("target")
        keys = [
            client.key_for(build_messages("Classify the review.", rt.task.render_input(e)))
            for e in rt.task.split("dev")
        ]
    book = BatchBook(tmp_path / "cache" / "batches")
    book.record(
        BatchRecord(
            batch_id="batch_gone",
            model="openai:fake-model",
            endpoint=server.base_url,
            requests={f"r{i}": key for i, key in enumerate(keys)},
            submitted_at=0.0,
        )
    )
    with caplog.at_level(logging.WARNING):
        async with runtime(tmp_path, server, "openai") as rt:
            result = await score_dev(rt)
            calls = dict(rt.ledger.calls)
    assert result.errors == 0 and result.n == 20
    assert server.batch_submissions == 0 and server.requests_total == 20
    assert calls == {"target": 20}
    assert "batch_gone" in caplog.text
    assert book.open_batches("openai:fake-model", server.base_url) == []
