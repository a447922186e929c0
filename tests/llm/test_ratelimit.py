"""Rate limits: rpm/tpm kept on the client side, and adaptive concurrency on 429s, against the
loopback server enforcing the limits the way hosted APIs do.

The server's window is one second instead of a minute (`rate_window_s`), and the client's
period likewise (`RuntimeOptions.rate_period_s`), so that the tests take seconds.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from promptopt.app.models import set_rate_limits
from promptopt.errors import TaskFileError, TransientProviderError, UsageError
from promptopt.llm.cache import NullCache
from promptopt.llm.client import MAX_HEADER_WAIT_S, EndpointGate, RequestFailed, RetryPolicy
from promptopt.llm.messages import Completion, RateLimitState, Usage
from promptopt.llm.ratelimit import REFILLS_PER_PERIOD, estimated_tokens
from promptopt.scoring.runtime import Runtime, RuntimeOptions
from promptopt.scoring.scorer import build_messages
from promptopt.task.loader import load_task
from promptopt.testing.fake_server import FakeOpenAIServer
from tests.support.search import write_task

WINDOW_S = 1.0


def task_file(tmp_path: Path, srv: FakeOpenAIServer, **model: Any) -> Path:
    path = write_task(tmp_path)
    spec = yaml.safe_load(path.read_text())
    spec["models"]["target"] = {
        "model": "openai:fake-model",
        "base_url": srv.base_url,
        "temperature": 0,
        "max_tokens": 8,
        **model,
    }
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def runtime(
    tmp_path: Path,
    srv: FakeOpenAIServer,
    *,
    concurrency: int = 8,
    retry: RetryPolicy | None = None,
    **model: Any,
) -> Runtime:
    task = load_task(task_file(tmp_path, srv, **model))
    options = RuntimeOptions(
        concurrency=concurrency,
        retry=retry or RetryPolicy(max_retries=6, base_delay_s=0.01, max_delay_s=2.0),
        rate_period_s=WINDOW_S,
    )
    return Runtime(task, options, store=NullCache(), env={})


@pytest.fixture
def server() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer(latency_s=0.005, rate_window_s=WINDOW_S) as srv:
        yield srv


async def test_rpm_is_kept_within_one_refill_interval(
    tmp_path: Path, server: FakeOpenAIServer
) -> None:
    server.rpm = 25
    async with runtime(tmp_path, server, concurrency=16, rpm=25) as rt:
        result = await rt.scorer.evaluate("Classify.", rt.task.split("train"), split="train")
    assert result.n == 40 and result.errors == 0
    # Counted on the server, every attempt included: the limit plus one refill's worth at most.
    assert server.max_window_requests <= 25 + max(1, 25 // REFILLS_PER_PERIOD)
    assert server.rate_limited == 0


async def test_tpm_is_kept_within_one_refill_interval(
    tmp_path: Path, server: FakeOpenAIServer
) -> None:
    server.tpm = 300
    async with runtime(tmp_path, server, concurrency=16, tpm=300) as rt:
        result = await rt.scorer.evaluate("Classify.", rt.task.split("train"), split="train")
    assert result.n == 40 and result.errors == 0
    assert server.max_window_tokens <= 300 + 300 / REFILLS_PER_PERIOD
    assert server.rate_limited == 0


async def test_a_server_limit_unknown_to_the_client_is_met_through_its_429s(
    tmp_path: Path, server: FakeOpenAIServer
) -> None:
    server.rpm = 20
    async with runtime(tmp_path, server, concurrency=16) as rt:
        result = await rt.scorer.evaluate("Classify.", rt.task.split("train"), split="train")
        gate = rt.gates[rt.client("target").provider.endpoint]
    assert result.n == 40 and result.errors == 0
    assert server.rate_limited > 0  # the server did refuse, and the client waited as told
    assert gate.min_limit < 16


async def test_a_429_storm_settles_without_failed_examples(tmp_path: Path) -> None:
    # A server that refuses whatever arrives while 4 requests are being answered, hit by a
    # client allowed 64: the client must find the server's capacity and stay near it.
    with FakeOpenAIServer(latency_s=0.01, max_concurrent=4, retry_after_s=0.02) as srv:
        retry = RetryPolicy(max_retries=6, base_delay_s=0.01, max_delay_s=0.5)
        async with runtime(tmp_path, srv, concurrency=64, retry=retry) as rt:
            client = rt.client("target")
            gate = rt.gates[client.provider.endpoint]
            texts = [f"question {i} about storms" for i in range(400)]

            async def ask(text: str) -> bool:
                try:
                    await client.complete(build_messages("Answer.", text))
                except RequestFailed:
                    return False
                return True

            first = await asyncio.gather(*(ask(t) for t in texts[:200]))
            refused_first = srv.rate_limited
            second = await asyncio.gather(*(ask(t) for t in texts[200:]))
            refused_second = srv.rate_limited - refused_first
    assert all(first) and all(second)
    assert client.usage.errors == 0
    assert gate.min_limit <= 4
    # Settled: once the limit is found, a 429 only marks each probe above it.
    assert refused_first + refused_second < 200
    assert refused_second <= refused_first


async def test_openai_answers_carry_the_rate_limit_headers(server: FakeOpenAIServer) -> None:
    from promptopt.llm.messages import ChatRequest
    from promptopt.llm.providers.openai import OpenAIProvider
    from promptopt.task.modelspec import ModelSpec

    server.rpm, server.tpm = 100, 10_000
    provider = OpenAIProvider(
        ModelSpec(model="openai:fake-model", base_url=server.base_url), env={}
    )
    try:
        completion = await provider.complete(
            ChatRequest(messages=({"role": "user", "content": "one two three"},))
        )
    finally:
        await provider.aclose()
    state = completion.rate_limit
    assert state is not None
    assert state.remaining_requests == 99
    assert state.remaining_tokens == 10_000 - 6  # three words in, the echo out
    assert state.reset_requests_s is not None and 0 < state.reset_requests_s <= WINDOW_S


# -- the adaptive gate on its own ------------------------------------------------------------


def answer(rate_limit: RateLimitState | None = None) -> Completion:
    return Completion(text="ok", usage=Usage(), rate_limit=rate_limit)


async def test_the_gate_halves_once_per_round_of_429s_and_grows_back_by_one() -> None:
    gate = EndpointGate(8)
    release = asyncio.Event()
    in_call = 0

    async def refused() -> Completion:
        nonlocal in_call
        in_call += 1
        await release.wait()
        raise TransientProviderError("rate limited", status=429)

    # Eight requests sent before any 429 came back: one cut, not eight.
    tasks = [asyncio.ensure_future(gate.run(refused)) for _ in range(8)]
    while in_call < 8:
        await asyncio.sleep(0)
    release.set()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert all(isinstance(r, TransientProviderError) for r in results)
    assert gate.limit == 4

    async def ok() -> Completion:
        return answer()

    for _ in range(4):
        await gate.run(ok)
    assert gate.limit == 5  # one more after a round of `limit` successes
    for _ in range(5 + 6 + 7):
        await gate.run(ok)
    assert gate.limit == 8  # and never above the configured concurrency
    for _ in range(20):
        await gate.run(ok)
    assert gate.limit == 8


async def test_the_gate_holds_back_while_the_server_says_nothing_is_left() -> None:
    now = [100.0]
    gate = EndpointGate(4, clock=lambda: now[0])

    async def exhausted() -> Completion:
        return answer(RateLimitState(remaining_requests=0, reset_requests_s=2.5))

    await gate.run(exhausted)
    assert gate._resume_at == pytest.approx(102.5)

    async def plenty() -> Completion:
        return answer(RateLimitState(remaining_requests=7, reset_requests_s=2.5))

    gate._resume_at = 0.0
    await gate.run(plenty)
    assert gate._resume_at == 0.0

    async def daily() -> Completion:  # a requests-per-day limit, reset hours away
        return answer(RateLimitState(remaining_requests=0, reset_requests_s=8 * 3600.0))

    await gate.run(daily)
    assert gate._resume_at == pytest.approx(100.0 + MAX_HEADER_WAIT_S)


async def test_a_cancelled_waiter_passes_its_slot_on() -> None:
    gate = EndpointGate(1)
    release = asyncio.Event()

    async def slow() -> Completion:
        await release.wait()
        return answer()

    first = asyncio.ensure_future(gate.run(slow))
    await asyncio.sleep(0)
    waiting = [asyncio.ensure_future(gate.run(slow)) for _ in range(2)]
    await asyncio.sleep(0)
    waiting[0].cancel()
    release.set()
    await first
    assert (await waiting[1]).text == "ok"


# -- configuration ---------------------------------------------------------------------------


def test_the_task_file_takes_rpm_and_tpm_and_refuses_nonsense(
    tmp_path: Path, server: FakeOpenAIServer
) -> None:
    task = load_task(task_file(tmp_path, server, rpm=500, tpm=200_000))
    assert task.spec.models.target is not None
    assert (task.spec.models.target.rpm, task.spec.models.target.tpm) == (500, 200_000)
    with pytest.raises(TaskFileError, match=r"rpm"):
        load_task(task_file(tmp_path, server, rpm=0))


def test_flags_set_a_roles_limits_and_keep_the_other(
    tmp_path: Path, server: FakeOpenAIServer
) -> None:
    task = load_task(task_file(tmp_path, server, rpm=500, tpm=200_000))
    changed = set_rate_limits(task, "target", rpm=60)
    target = changed.spec.models.target
    assert target is not None and (target.rpm, target.tpm) == (60, 200_000)
    assert set_rate_limits(task, "target") is task
    no_judge = set_rate_limits(task, "optimizer", tpm=1000)
    assert no_judge.spec.models.optimizer is not None
    assert no_judge.spec.models.optimizer.tpm == 1000
    (tmp_path / "bare").mkdir()
    bare = load_task(write_task(tmp_path / "bare"))
    assert bare.spec.models.judge is None
    with pytest.raises(UsageError, match="no judge model"):
        set_rate_limits(bare, "judge", rpm=1)


def test_the_token_estimate_counts_the_answer_it_may_get() -> None:
    messages = build_messages("Classify.", "review 1: a dull film")
    assert estimated_tokens(messages, {}) < estimated_tokens(messages, {"max_tokens": 8})
    assert estimated_tokens(messages, {"max_tokens": 8, "n": 3}) == (
        estimated_tokens(messages, {}) + 24
    )


async def test_a_freed_slot_goes_to_the_longest_waiting_request() -> None:
    gate = EndpointGate(1)
    release = asyncio.Event()
    order: list[str] = []

    def call(name: str, wait: bool = False) -> Callable[[], Awaitable[Completion]]:
        async def go() -> Completion:
            order.append(name)
            if wait:
                await release.wait()
            return answer()

        return go

    async def one_then_another() -> None:
        await gate.run(call("first", wait=True))
        # Asks again at once, while "queued" has been waiting: it must not jump the queue.
        await gate.run(call("again"))

    sequence = asyncio.ensure_future(one_then_another())
    await asyncio.sleep(0)
    queued = asyncio.ensure_future(gate.run(call("queued")))
    await asyncio.sleep(0)
    release.set()
    await asyncio.gather(sequence, queued)
    assert order == ["first", "queued", "again"]
