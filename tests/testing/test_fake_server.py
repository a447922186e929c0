"""The loopback fake server, driven through the real openai SDK."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import openai
import pytest

from promptopt.testing import FakeOpenAIServer, body_hash, echo_reply

T = TypeVar("T")


def run_with_client(
    srv: FakeOpenAIServer,
    fn: Callable[[openai.AsyncOpenAI], Awaitable[T]],
    **client_kwargs: Any,
) -> T:
    """Run ``fn`` with an SDK client that never retries unless told to, then close the client."""

    async def main() -> T:
        kwargs: dict[str, Any] = {"max_retries": 0, **client_kwargs}
        async with openai.AsyncOpenAI(base_url=srv.base_url, api_key="x", **kwargs) as client:
            return await fn(client)

    return asyncio.run(main())


def ask(client: openai.AsyncOpenAI, text: str) -> Awaitable[Any]:
    return client.chat.completions.create(
        model="fake-model",
        messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": text}],
    )


def raw_exchange(port: int, request: bytes) -> bytes:
    """Send raw bytes and read until the server closes the connection."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(request)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def test_completion_round_trips_with_usage() -> None:
    with FakeOpenAIServer() as srv:
        reply = run_with_client(srv, lambda c: ask(c, "what is two plus two"))
        assert srv.requests_total == 1
        assert srv.last_body is not None
        assert srv.last_body["model"] == "fake-model"
    assert reply.choices[0].message.content == "what is two plus two"
    assert reply.choices[0].finish_reason == "stop"
    assert reply.model == "fake-model"
    assert reply.object == "chat.completion"
    assert reply.id.startswith("chatcmpl-")
    assert reply.usage is not None
    assert reply.usage.prompt_tokens == 2 + 5  # words in the system and user messages
    assert reply.usage.completion_tokens == 5
    assert reply.usage.total_tokens == 12


def test_custom_reply_function_sees_the_request_body() -> None:
    def reply(body: dict[str, Any]) -> str:
        return f"{body['model']}|{body['temperature']}|{echo_reply(body).upper()}"

    async def call(client: openai.AsyncOpenAI) -> str | None:
        out = await client.chat.completions.create(
            model="m1", temperature=0.5, messages=[{"role": "user", "content": "hi"}]
        )
        return out.choices[0].message.content

    with FakeOpenAIServer(reply=reply) as srv:
        assert run_with_client(srv, call) == "m1|0.5|HI"


def test_models_endpoint_lists_configured_models() -> None:
    async def names(client: openai.AsyncOpenAI) -> list[str]:
        page = await client.models.list()
        return [m.id for m in page.data]

    with FakeOpenAIServer(models=("a", "b")) as srv:
        assert run_with_client(srv, names) == ["a", "b"]


def test_concurrent_requests_overlap() -> None:
    n, latency = 50, 0.2

    async def burst(client: openai.AsyncOpenAI) -> float:
        start = time.perf_counter()
        await asyncio.gather(*(ask(client, f"question {i}") for i in range(n)))
        return time.perf_counter() - start

    with FakeOpenAIServer(latency_s=latency) as srv:
        elapsed = run_with_client(srv, burst)
        assert srv.max_in_flight == n
        assert srv.in_flight == 0
        assert srv.requests_total == n
        assert len(srv.requests_by_body) == n
    assert elapsed < n * latency / 5


def test_faults_are_deterministic_and_retries_eventually_succeed() -> None:
    texts = [f"item {i}" for i in range(40)]

    async def first_attempts(client: openai.AsyncOpenAI) -> list[int]:
        async def status(text: str) -> int:
            try:
                await ask(client, text)
            except openai.APIStatusError as exc:
                return exc.status_code
            return 200

        return list(await asyncio.gather(*(status(t) for t in texts)))

    with FakeOpenAIServer(fault_rate=0.5, fault_statuses=(429, 500), seed=7) as srv:
        first = run_with_client(srv, first_attempts)
        faults = srv.faults_sent
        srv.reset_stats()
        again = run_with_client(srv, first_attempts)
        assert first == again
        assert faults == sum(s != 200 for s in first)
        assert {429, 500} <= set(first) and 200 in first

        srv.seed = 8
        srv.reset_stats()
        assert run_with_client(srv, first_attempts) != first

        # With the SDK retrying (and honouring the tiny Retry-After), every body gets through
        # after at most max_faults_per_body failures.
        srv.seed = 7
        srv.reset_stats()
        replies = run_with_client(
            srv,
            lambda c: asyncio.gather(*(ask(c, t) for t in texts)),
            max_retries=srv.max_faults_per_body,
        )
        assert [r.choices[0].message.content for r in replies] == texts
        counts = srv.requests_by_body
        assert max(counts.values()) >= 2
        assert sum(counts.values()) == len(texts) + srv.faults_sent


def test_max_faults_per_body_caps_failures_even_at_rate_one() -> None:
    async def attempts(client: openai.AsyncOpenAI) -> list[int]:
        statuses = []
        for _ in range(4):
            try:
                await ask(client, "same")
                statuses.append(200)
            except openai.APIStatusError as exc:
                statuses.append(exc.status_code)
        return statuses

    with FakeOpenAIServer(fault_rate=1.0, fault_statuses=(503,), max_faults_per_body=2) as srv:
        assert run_with_client(srv, attempts) == [503, 503, 200, 200]
        assert srv.faults_sent == 2


def test_rate_limit_carries_retry_after_headers() -> None:
    async def headers(client: openai.AsyncOpenAI) -> dict[str, str]:
        with pytest.raises(openai.RateLimitError) as caught:
            await ask(client, "x")
        assert caught.value.code == "rate_limit_exceeded"
        return dict(caught.value.response.headers)

    with FakeOpenAIServer(fault_rate=1.0, fault_statuses=(429,), retry_after_s=0.01) as srv:
        got = run_with_client(srv, headers)
        assert got["retry-after"] == "0.01"
        assert "retry-after-ms" not in got
        srv.retry_after_s = None
        srv.retry_after_ms = 15
        got = run_with_client(srv, headers)
        assert got["retry-after-ms"] == "15"
        assert "retry-after" not in got


def test_quota_mode_raises_insufficient_quota() -> None:
    async def call(client: openai.AsyncOpenAI) -> None:
        with pytest.raises(openai.RateLimitError) as caught:
            await ask(client, "x")
        assert caught.value.code == "insufficient_quota"
        assert caught.value.type == "insufficient_quota"

    with FakeOpenAIServer(mode="quota") as srv:
        run_with_client(srv, call)
        assert srv.faults_sent == 1


def test_unauthorized_mode_raises_authentication_error() -> None:
    async def call(client: openai.AsyncOpenAI) -> None:
        with pytest.raises(openai.AuthenticationError) as caught:
            await ask(client, "x")
        assert caught.value.status_code == 401
        assert caught.value.code == "invalid_api_key"

    with FakeOpenAIServer(mode="unauthorized") as srv:
        run_with_client(srv, call)


def test_malformed_mode_breaks_response_parsing() -> None:
    async def call(client: openai.AsyncOpenAI) -> None:
        # The SDK lets the JSON decoder's error escape; a provider must map it to a transient error.
        with pytest.raises(json.JSONDecodeError):
            await ask(client, "x")

    with FakeOpenAIServer(mode="malformed") as srv:
        run_with_client(srv, call)


def test_hang_mode_outlasts_the_client_timeout_and_still_shuts_down() -> None:
    async def call(client: openai.AsyncOpenAI) -> None:
        with pytest.raises(openai.APITimeoutError):
            await ask(client, "x")

    with FakeOpenAIServer(mode="hang") as srv:
        run_with_client(srv, call, timeout=0.2)
        assert srv.in_flight == 1  # still sleeping when the context manager closes it
        srv.mode = "ok"
        reply = run_with_client(srv, lambda c: ask(c, "after"))
        assert reply.choices[0].message.content == "after"


def test_reset_stats_zeroes_counters() -> None:
    with FakeOpenAIServer() as srv:
        run_with_client(srv, lambda c: ask(c, "x"))
        key = next(iter(srv.requests_by_body))
        assert srv.last_body is not None
        assert key == body_hash(srv.last_body)
        srv.reset_stats()
        assert (srv.requests_total, srv.faults_sent, srv.max_in_flight) == (0, 0, 0)
        assert srv.requests_by_body == {}
        assert srv.last_body is None


def test_body_hash_ignores_key_order() -> None:
    assert body_hash({"a": 1, "b": [1, 2]}) == body_hash({"b": [1, 2], "a": 1})
    assert body_hash({"a": 1}) != body_hash({"a": 2})


def test_keep_alive_serves_several_requests_on_one_connection() -> None:
    body = json.dumps({"model": "m", "messages": [{"role": "user", "content": "hi"}]}).encode()
    one = (
        b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-length: %d\r\n\r\n" % len(body)
        + body
    )
    last = (
        b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\nconnection: close\r\n"
        b"content-length: %d\r\n\r\n" % len(body) + body
    )
    with FakeOpenAIServer() as srv:
        raw = raw_exchange(srv.port, one + one + last)
        assert srv.requests_total == 3
    assert raw.count(b"HTTP/1.1 200 OK") == 3
    assert raw.count(b"connection: close") == 1


def test_chunked_request_body_is_accepted() -> None:
    body = json.dumps({"model": "m", "messages": [{"role": "user", "content": "chunky"}]})
    half = len(body) // 2
    chunks = "".join(f"{len(p):x}\r\n{p}\r\n" for p in (body[:half], body[half:])) + "0\r\n\r\n"
    request = (
        "POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n"
        "connection: close\r\n\r\n" + chunks
    ).encode()
    with FakeOpenAIServer() as srv:
        raw = raw_exchange(srv.port, request)
    head, _, payload = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200")
    assert json.loads(payload)["choices"][0]["message"]["content"] == "chunky"


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (b"GET /v1/nowhere HTTP/1.1\r\nconnection: close\r\n\r\n", b"404"),
        (b"GET /v1/chat/completions HTTP/1.1\r\nconnection: close\r\n\r\n", b"405"),
        (
            b"POST /v1/chat/completions HTTP/1.1\r\nconnection: close\r\n"
            b"content-length: 3\r\n\r\n{x}",
            b"400",
        ),
        (b"garbage\r\n\r\n", b"400"),
    ],
)
def test_bad_requests_get_error_statuses(request_bytes: bytes, status: bytes) -> None:
    with FakeOpenAIServer() as srv:
        raw = raw_exchange(srv.port, request_bytes)
        assert srv.requests_total == 0
    assert raw.startswith(b"HTTP/1.1 " + status)


def test_stop_closes_the_port_and_the_thread() -> None:
    before = {t.name for t in threading.enumerate()}
    body = json.dumps({"model": "m", "messages": [{"role": "user", "content": "hi"}]}).encode()
    request = b"POST /v1/chat/completions HTTP/1.1\r\ncontent-length: %d\r\n\r\n" % len(body)
    with FakeOpenAIServer() as srv:
        port = srv.port
        # A keep-alive connection left idle by its client must not block shutdown.
        idle = socket.create_connection(("127.0.0.1", port), timeout=5)
        idle.sendall(request + body)
        assert idle.recv(65536).startswith(b"HTTP/1.1 200")
        # Nor may one that was just opened and never used.
        fresh = socket.create_connection(("127.0.0.1", port), timeout=5)
    try:
        assert idle.recv(1) == b""  # the server closed its end
        # Reset when it was still in the listen backlog; closed when it was already accepted.
        with contextlib.suppress(ConnectionResetError):
            assert fresh.recv(1) == b""
    finally:
        idle.close()
        fresh.close()
    assert "FakeOpenAIServer" not in {t.name for t in threading.enumerate()} - before
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    with pytest.raises(RuntimeError, match="not running"):
        _ = srv.base_url


def test_invalid_configuration_is_rejected() -> None:
    with pytest.raises(ValueError, match="fault_rate"):
        FakeOpenAIServer(fault_rate=1.5)
    with pytest.raises(ValueError, match="fault_statuses"):
        FakeOpenAIServer(fault_rate=0.5, fault_statuses=())


def test_embeddings_endpoint_answers_each_input_in_order() -> None:
    with FakeOpenAIServer() as srv:
        reply = run_with_client(
            srv,
            lambda c: c.embeddings.create(
                model="fake-embed", input=["one two", "three"], encoding_format="float"
            ),
        )
        assert srv.embedding_requests == 1
        assert srv.embedded_texts == ["one two", "three"]
        assert srv.requests_total == 0  # chat completions only
    assert [d.index for d in reply.data] == [0, 1]
    assert len(reply.data[0].embedding) == 16
    assert reply.data[0].embedding != reply.data[1].embedding
    assert reply.model == "fake-embed"
    assert reply.usage.prompt_tokens == 3


def test_a_server_without_embeddings_answers_501() -> None:
    with FakeOpenAIServer(embed=None) as srv:
        with pytest.raises(openai.APIStatusError) as caught:
            run_with_client(srv, lambda c: c.embeddings.create(model="m", input=["a"]))
        assert srv.embedding_requests == 1
    assert caught.value.status_code == 501
