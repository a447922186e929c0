"""A real loopback OpenAI-compatible HTTP server for integration tests and benchmarks.

It speaks just enough HTTP/1.1 (keep-alive, Content-Length or chunked request bodies) to serve
``POST /v1/chat/completions``, ``POST /v1/embeddings`` and ``GET /v1/models`` to the openai
SDK. It runs on asyncio streams in its own thread with its own event loop, so thousands of
requests per second with overlapping latency cost little CPU, and the test's own event loop
stays free for the client side.

Faults are deterministic: whether a request fails depends only on ``seed``, a hash of its body and
how many times that body was seen before, so a run is reproducible and a retried body eventually
succeeds.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from contextlib import suppress
from dataclasses import dataclass, replace
from http import HTTPStatus
from types import TracebackType
from typing import Any, Literal

Mode = Literal["ok", "quota", "unauthorized", "malformed", "hang", "bad_request"]
"""What every chat completion request gets, before the random transient faults apply.

``ok``: a normal reply. ``quota``: 429 with an ``insufficient_quota`` error body (fatal for a
client, unlike a rate limit). ``unauthorized``: 401 ``invalid_api_key``. ``malformed``: 200 with a
body that is not JSON. ``hang``: sleep ``hang_s`` (longer than any client timeout) before replying.
``bad_request``: 400 about the request as a whole (an argument the server does not know).
"""

ReplyFn = Callable[[dict[str, Any]], str]
RejectFn = Callable[[dict[str, Any]], str | None]
"""Given a request body, the message of a 400 ``context_length_exceeded`` refusal, or None."""

EmbedFn = Callable[[str], Sequence[float]]
"""A text's embedding vector."""

_MAX_HEAD = 1 << 20
_MAX_BODY = 64 << 20
_SHUTDOWN_TIMEOUT_S = 10.0


def body_hash(body: Mapping[str, Any]) -> str:
    """Return the key the server uses for a request body in ``requests_by_body``.

    The body is canonicalized (sorted keys, compact separators) so that clients serializing the
    same request with different key orders count as the same body.
    """
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()[:24]


def _content_text(content: Any) -> str:
    """Flatten a message ``content`` (a string or a list of typed parts) to its text."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(str(part.get("text", "")) for part in content if isinstance(part, dict))
    return ""


def echo_reply(body: dict[str, Any]) -> str:
    """Default reply: the text of the last user message, unchanged."""
    for message in reversed(body.get("messages") or []):
        if isinstance(message, dict) and message.get("role") == "user":
            return _content_text(message.get("content"))
    return ""


def hash_embedding(text: str, dim: int = 16) -> list[float]:
    """Default embedding: ``dim`` deterministic numbers in [-1, 1) derived from the text."""
    return [2.0 * _unit_interval("embed", text, i) - 1.0 for i in range(dim)]


def _count_tokens(text: str) -> int:
    # Whitespace words stand in for tokens: deterministic, cheap, and close enough for accounting
    # tests, which only need stable, content-dependent numbers.
    return len(text.split())


def _prompt_tokens(body: Mapping[str, Any]) -> int:
    return sum(
        _count_tokens(_content_text(m.get("content")))
        for m in body.get("messages") or []
        if isinstance(m, dict)
    )


def _unit_interval(*parts: object) -> float:
    """A deterministic pseudo-random number in [0, 1) derived from ``parts``."""
    digest = hashlib.sha256(":".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


@dataclass(frozen=True)
class _Response:
    status: int
    body: bytes
    headers: tuple[tuple[str, str], ...] = ()


def _json_response(status: int, payload: Mapping[str, Any], **headers: str) -> _Response:
    return _Response(status, json.dumps(payload).encode(), tuple(headers.items()))


def _error(status: int, message: str, type_: str, code: str | None = None) -> _Response:
    return _json_response(
        status, {"error": {"message": message, "type": type_, "param": None, "code": code}}
    )


class _BadRequest(Exception):
    """The request cannot be parsed as HTTP; answer 400 and close the connection."""


class FakeOpenAIServer:
    """An OpenAI-compatible server on 127.0.0.1, started and stopped as a context manager.

    Configuration attributes (``latency_s``, ``reply``, ``mode``, ``fault_rate``,
    ``fault_statuses``, ``max_faults_per_body``, ``retry_after_s``, ``retry_after_ms``,
    ``hang_s``, ``seed``) may be reassigned from any thread between phases of a test; each
    request reads them once when it arrives. Statistics are read through properties that take a
    lock, so they are consistent from any thread.
    """

    def __init__(
        self,
        *,
        port: int = 0,
        latency_s: float = 0.0,
        reply: ReplyFn = echo_reply,
        mode: Mode = "ok",
        fault_rate: float = 0.0,
        fault_statuses: Sequence[int] = (429, 500),
        max_faults_per_body: int = 3,
        retry_after_s: float | None = 0.01,
        retry_after_ms: float | None = None,
        hang_s: float = 3600.0,
        seed: int = 0,
        models: Sequence[str] = ("fake-model",),
        reject: RejectFn | None = None,
        rpm: int | None = None,
        tpm: int | None = None,
        rate_window_s: float = 60.0,
        max_concurrent: int | None = None,
        embed: EmbedFn | None = hash_embedding,
    ) -> None:
        """Configure the server; nothing listens until ``start()`` or ``with``.

        ``fault_rate`` is the chance that an attempt at a body fails with one of
        ``fault_statuses``; once a body has failed ``max_faults_per_body`` times it always
        succeeds. ``retry_after_s`` / ``retry_after_ms`` set the ``retry-after`` /
        ``retry-after-ms`` headers of 429 responses (None omits the header). ``reject`` refuses
        chosen bodies for their content, as a server does with an input too long for the
        context: every attempt at such a body gets the same 400.

        ``rpm`` / ``tpm`` enforce a rate limit as hosted APIs do: at most that many requests /
        tokens (prompt plus completion, counted as the usage reports them) accepted in any
        ``rate_window_s``; a request over it gets a 429 with ``retry-after`` (until there is
        room) and ``x-ratelimit-*`` headers, which every answer carries too.
        ``max_concurrent`` refuses with a 429 (``retry_after_s``) any request arriving while
        that many are being answered, as an overloaded server does. ``embed`` answers
        ``/v1/embeddings`` (None: the server has no embeddings and answers 501, as llama.cpp's
        server does without ``--embeddings``).
        """
        if not 0.0 <= fault_rate <= 1.0:
            raise ValueError(f"fault_rate must be within [0, 1], got {fault_rate}")
        if fault_rate > 0 and not fault_statuses:
            raise ValueError("fault_statuses must name at least one status when fault_rate > 0")
        self._requested_port = port
        self.latency_s = latency_s
        self.reply = reply
        self.mode: Mode = mode
        self.fault_rate = fault_rate
        self.fault_statuses: Sequence[int] = tuple(fault_statuses)
        self.max_faults_per_body = max_faults_per_body
        self.retry_after_s = retry_after_s
        self.retry_after_ms = retry_after_ms
        self.hang_s = hang_s
        self.seed = seed
        self.models: Sequence[str] = tuple(models)
        self.reject = reject
        self.rpm = rpm
        self.tpm = tpm
        self.rate_window_s = rate_window_s
        self.max_concurrent = max_concurrent
        self.embed = embed

        self._lock = threading.Lock()
        self._requests_total = 0
        self._requests_by_body: dict[str, int] = {}
        self._faults_by_body: dict[str, int] = {}
        self._faults_sent = 0
        self._in_flight = 0
        self._max_in_flight = 0
        self._last_body: dict[str, Any] | None = None
        # (arrival time, tokens) of every attempt, and of the accepted ones, within the window.
        self._arrivals: deque[tuple[float, int]] = deque()
        self._arrival_tokens = 0
        self._accepted: deque[tuple[float, int]] = deque()
        self._accepted_tokens = 0
        self._max_window_requests = 0
        self._max_window_tokens = 0
        self._rate_limited = 0
        self._embedding_requests = 0
        self._embedded_texts: list[str] = []

        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop_event: asyncio.Event | None = None
        self._ready = threading.Event()
        self._startup_error: BaseException | None = None
        self._port: int | None = None
        self._connections: set[asyncio.Task[None]] = set()

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        """Start listening in a background thread; returns once the port is bound."""
        if self._thread is not None:
            raise RuntimeError("FakeOpenAIServer is already running")
        self._ready.clear()
        self._startup_error = None
        self._thread = threading.Thread(target=self._run, name="FakeOpenAIServer", daemon=True)
        self._thread.start()
        self._ready.wait()
        if self._startup_error is not None:
            self._thread.join()
            self._thread = None
            raise RuntimeError("FakeOpenAIServer failed to start") from self._startup_error

    def stop(self) -> None:
        """Close the listener and every connection, cancel pending handlers, join the thread."""
        thread, loop, stop_event = self._thread, self._loop, self._stop_event
        if thread is None:
            return
        if loop is not None and stop_event is not None:
            loop.call_soon_threadsafe(stop_event.set)
        thread.join(_SHUTDOWN_TIMEOUT_S)
        if thread.is_alive():
            raise RuntimeError("FakeOpenAIServer did not shut down in time")
        self._thread = None
        self._loop = None
        self._stop_event = None
        self._port = None

    def __enter__(self) -> FakeOpenAIServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def port(self) -> int:
        """The bound TCP port (only while running)."""
        if self._port is None:
            raise RuntimeError("FakeOpenAIServer is not running; use it as a context manager")
        return self._port

    @property
    def base_url(self) -> str:
        """The URL to pass as ``base_url`` to an OpenAI client, ending in ``/v1``."""
        return f"http://127.0.0.1:{self.port}/v1"

    # -- statistics --------------------------------------------------------------------------

    @property
    def requests_total(self) -> int:
        """Chat completion requests received (every attempt, faulted or not)."""
        with self._lock:
            return self._requests_total

    @property
    def requests_by_body(self) -> dict[str, int]:
        """A copy of the per-body request counts, keyed by ``body_hash``."""
        with self._lock:
            return dict(self._requests_by_body)

    @property
    def in_flight(self) -> int:
        """Chat completion requests being processed right now."""
        with self._lock:
            return self._in_flight

    @property
    def max_in_flight(self) -> int:
        """The peak of ``in_flight`` since start or the last ``reset_stats()``."""
        with self._lock:
            return self._max_in_flight

    @property
    def faults_sent(self) -> int:
        """Error or malformed responses sent, from injected faults and from the ``mode``."""
        with self._lock:
            return self._faults_sent

    @property
    def last_body(self) -> dict[str, Any] | None:
        """The parsed body of the most recent chat completion request."""
        with self._lock:
            return self._last_body

    @property
    def max_window_requests(self) -> int:
        """The most requests (every attempt, refused or not) that arrived within any
        ``rate_window_s``: what a client sent, measured where a provider measures it."""
        with self._lock:
            return self._max_window_requests

    @property
    def max_window_tokens(self) -> int:
        """The most tokens of requests (every attempt) that arrived within any window."""
        with self._lock:
            return self._max_window_tokens

    @property
    def rate_limited(self) -> int:
        """429s sent for ``rpm``, ``tpm`` or ``max_concurrent``."""
        with self._lock:
            return self._rate_limited

    @property
    def embedding_requests(self) -> int:
        """``/v1/embeddings`` requests received."""
        with self._lock:
            return self._embedding_requests

    @property
    def embedded_texts(self) -> list[str]:
        """Every text sent to ``/v1/embeddings``, in the order received."""
        with self._lock:
            return list(self._embedded_texts)

    def reset_stats(self) -> None:
        """Zero every counter, including the per-body attempt numbers that drive fault decisions.

        ``max_in_flight`` restarts from the requests still in flight.
        """
        with self._lock:
            self._requests_total = 0
            self._requests_by_body.clear()
            self._faults_by_body.clear()
            self._faults_sent = 0
            self._max_in_flight = self._in_flight
            self._last_body = None
            self._arrivals.clear()
            self._arrival_tokens = 0
            self._max_window_requests = 0
            self._max_window_tokens = 0
            self._rate_limited = 0
            self._embedding_requests = 0
            self._embedded_texts.clear()

    # -- event loop thread -------------------------------------------------------------------

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:  # reported to start() instead of dying silently in a thread
            self._startup_error = exc
            self._ready.set()

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop_event = asyncio.Event()
        server = await asyncio.start_server(
            self._serve_connection, "127.0.0.1", self._requested_port, limit=_MAX_HEAD
        )
        self._port = server.sockets[0].getsockname()[1]
        self._ready.set()
        try:
            await self._stop_event.wait()
        finally:
            current = asyncio.current_task()
            # Python 3.11 leaks the socket of a connection whose accept is still in progress when
            # the listener closes (transport creation asserts). So wait until no task but the
            # registered handlers is left, then close without yielding in between.
            while starting := asyncio.all_tasks() - self._connections - {current}:
                await asyncio.wait(starting, timeout=0.05)
            server.close()
            while handlers := asyncio.all_tasks() - {current}:
                for task in handlers & self._connections:
                    task.cancel()
                await asyncio.wait(handlers, timeout=0.05)
            await server.wait_closed()

    async def _serve_connection(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        task = asyncio.current_task()
        assert task is not None  # a stream callback always runs inside a task
        self._connections.add(task)
        try:
            keep_alive = True
            while keep_alive:
                keep_alive = await self._serve_one(reader, writer)
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            pass  # the client went away or sent garbage; nothing to answer
        except asyncio.CancelledError:
            pass  # server shutdown; the connection is closed below
        finally:
            self._connections.discard(task)
            writer.close()
            with suppress(ConnectionError, asyncio.CancelledError):
                await writer.wait_closed()

    async def _serve_one(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        """Answer one request; return whether the connection stays open."""
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError as exc:
            if exc.partial:
                raise
            return False  # clean close between requests
        try:
            method, path, version, headers = _parse_head(head)
            body = await _read_body(reader, headers)
        except _BadRequest as exc:
            await _write(writer, _error(400, str(exc), "invalid_request_error"), close=True)
            return False
        connection = headers.get("connection", "").lower()
        close = connection == "close" or (version == "HTTP/1.0" and connection != "keep-alive")

        route = path.split("?", 1)[0].rstrip("/")
        if route == "/v1/chat/completions":
            if method != "POST":
                response = _error(405, f"use POST for {route}", "invalid_request_error")
            else:
                response = await self._chat_completion(body)
        elif route == "/v1/embeddings":
            if method != "POST":
                response = _error(405, f"use POST for {route}", "invalid_request_error")
            else:
                response = self._embeddings(body)
        elif route == "/v1/models":
            if method != "GET":
                response = _error(405, f"use GET for {route}", "invalid_request_error")
            else:
                response = self._models()
        else:
            response = await self._route(method, path, headers, body)
        await _write(writer, response, close=close)
        return not close

    async def _route(
        self, method: str, path: str, headers: Mapping[str, str], body: bytes
    ) -> _Response:
        """The endpoints beyond chat completions and models: none here; a subclass adds its
        own (the batch services of `promptopt.testing.fake_batch`)."""
        return _error(404, f"no route {method} {path}", "invalid_request_error")

    # -- endpoints ---------------------------------------------------------------------------

    def _models(self) -> _Response:
        data = [
            {"id": name, "object": "model", "created": 0, "owned_by": "promptopt-fake"}
            for name in self.models
        ]
        return _json_response(200, {"object": "list", "data": data})

    def _embeddings(self, raw: bytes) -> _Response:
        try:
            body = json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError):
            return _error(400, "request body is not valid JSON", "invalid_request_error")
        texts = body.get("input") if isinstance(body, dict) else None
        if isinstance(texts, str):
            texts = [texts]
        if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
            return _error(
                400, "'input' must be a string or a list of strings", "invalid_request_error"
            )
        with self._lock:
            self._embedding_requests += 1
            self._embedded_texts.extend(texts)
        if self.embed is None:
            return _error(501, "This server does not support embeddings.", "not_supported_error")
        data = [
            {"object": "embedding", "index": i, "embedding": [float(x) for x in self.embed(t)]}
            for i, t in enumerate(texts)
        ]
        tokens = sum(_count_tokens(t) for t in texts)
        payload = {
            "object": "list",
            "data": data,
            "model": body.get("model", "fake-model"),
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }
        return _json_response(200, payload)

    async def _chat_completion(self, raw: bytes) -> _Response:
        try:
            body = json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError):
            return _error(400, "request body is not valid JSON", "invalid_request_error")
        if not isinstance(body, dict) or not isinstance(body.get("messages"), list):
            return _error(400, "'messages' must be a list", "invalid_request_error")
        if body.get("stream"):
            return _error(400, "the fake server does not stream", "invalid_request_error")

        key = body_hash(body)
        text = self.reply(body)
        tokens = _prompt_tokens(body) + _count_tokens(text) * (body.get("n") or 1)
        with self._lock:
            self._requests_total += 1
            attempt = self._requests_by_body.get(key, 0)
            self._requests_by_body[key] = attempt + 1
            self._last_body = body
            self._in_flight += 1
            self._max_in_flight = max(self._max_in_flight, self._in_flight)
            faults_so_far = self._faults_by_body.get(key, 0)
            overloaded = self.max_concurrent is not None and self._in_flight > self.max_concurrent
            limited = self._admit(time.monotonic(), tokens) if not overloaded else None
        try:
            if overloaded:
                return self._too_many("Server overloaded; retry later.", self.retry_after_s)
            if limited is not None and limited.status == 429:
                return limited
            refusal = self.reject(body) if self.reject is not None else None
            if refusal is not None:
                return _error(400, refusal, "invalid_request_error", "context_length_exceeded")
            fault = self._fault_for(key, attempt, faults_so_far)
            if fault is not None:
                with self._lock:
                    self._faults_sent += 1
                    self._faults_by_body[key] = self._faults_by_body.get(key, 0) + 1
                return fault
            if self.mode == "hang":
                await asyncio.sleep(self.hang_s)
            elif self.latency_s > 0:
                await asyncio.sleep(self.latency_s)
            answer = self._completion(body, key, attempt, text)
            if limited is not None:  # the rate-limit headers of an accepted request
                answer = replace(answer, headers=answer.headers + limited.headers)
            return answer
        finally:
            with self._lock:
                self._in_flight -= 1

    def _too_many(self, message: str, retry_after: float | None) -> _Response:
        with self._lock:
            self._rate_limited += 1
            self._faults_sent += 1
        response = _error(429, message, "requests", "rate_limit_exceeded")
        headers = () if retry_after is None else (("retry-after", f"{retry_after:g}"),)
        return replace(response, headers=headers)

    def _admit(self, now: float, tokens: int) -> _Response | None:
        """Count an arrival; with ``rpm``/``tpm`` set, a 429 when it is over a limit, else an
        empty 200 carrying the ``x-ratelimit-*`` headers. Called with the lock held."""
        window = self.rate_window_s
        arrivals = self._arrivals
        while arrivals and arrivals[0][0] <= now - window:
            self._arrival_tokens -= arrivals.popleft()[1]
        arrivals.append((now, tokens))
        self._arrival_tokens += tokens
        self._max_window_requests = max(self._max_window_requests, len(arrivals))
        self._max_window_tokens = max(self._max_window_tokens, self._arrival_tokens)
        if self.rpm is None and self.tpm is None:
            return None
        accepted = self._accepted
        while accepted and accepted[0][0] <= now - window:
            self._accepted_tokens -= accepted.popleft()[1]
        over_requests = self.rpm is not None and len(accepted) + 1 > self.rpm
        over_tokens = self.tpm is not None and self._accepted_tokens + tokens > self.tpm
        if not (over_requests or over_tokens):
            accepted.append((now, tokens))
            self._accepted_tokens += tokens
        reset = (accepted[0][0] + window - now) if accepted else 0.0
        headers: list[tuple[str, str]] = []
        if self.rpm is not None:
            headers += [
                ("x-ratelimit-limit-requests", str(self.rpm)),
                ("x-ratelimit-remaining-requests", str(max(0, self.rpm - len(accepted)))),
                ("x-ratelimit-reset-requests", f"{reset:.3f}s"),
            ]
        if self.tpm is not None:
            headers += [
                ("x-ratelimit-limit-tokens", str(self.tpm)),
                ("x-ratelimit-remaining-tokens", str(max(0, self.tpm - self._accepted_tokens))),
                ("x-ratelimit-reset-tokens", f"{reset:.3f}s"),
            ]
        if not (over_requests or over_tokens):
            return _Response(200, b"", tuple(headers))
        self._rate_limited += 1
        self._faults_sent += 1
        which = "requests" if over_requests else "tokens"
        response = _error(
            429,
            f"Rate limit reached for {which} per window; retry later.",
            which,
            "rate_limit_exceeded",
        )
        return replace(response, headers=(("retry-after", f"{reset:.3f}"), *headers))

    def _fault_for(self, key: str, attempt: int, faults_so_far: int) -> _Response | None:
        """The fault response this attempt gets, if any."""
        mode = self.mode
        if mode == "quota":
            return _error(
                429,
                "You exceeded your current quota, please check your plan and billing details.",
                "insufficient_quota",
                "insufficient_quota",
            )
        if mode == "unauthorized":
            return _error(
                401, "Incorrect API key provided.", "invalid_request_error", "invalid_api_key"
            )
        if mode == "bad_request":
            return _error(
                400, "Unrecognized request argument supplied: temprature", "invalid_request_error"
            )
        if mode == "malformed":
            return _Response(200, b'{"id": "chatcmpl-broken", "choices": [')
        rate, statuses = self.fault_rate, tuple(self.fault_statuses)
        if rate <= 0 or not statuses or faults_so_far >= self.max_faults_per_body:
            return None
        if _unit_interval(self.seed, key, attempt, "fault") >= rate:
            return None
        status = statuses[int(_unit_interval(self.seed, key, attempt, "status") * len(statuses))]
        if status == 429:
            response = _error(
                429, "Rate limit reached; retry later.", "requests", "rate_limit_exceeded"
            )
            extra: list[tuple[str, str]] = []
            if self.retry_after_s is not None:
                extra.append(("retry-after", f"{self.retry_after_s:g}"))
            if self.retry_after_ms is not None:
                extra.append(("retry-after-ms", f"{self.retry_after_ms:g}"))
            return _Response(response.status, response.body, tuple(extra))
        type_ = "server_error" if status >= 500 else "invalid_request_error"
        return _error(status, f"injected fault {status}", type_)

    def _completion(self, body: dict[str, Any], key: str, attempt: int, text: str) -> _Response:
        prompt_tokens = _prompt_tokens(body)
        n = body.get("n") or 1
        completion_tokens = _count_tokens(text) * n
        choices = [
            {
                "index": i,
                "message": {"role": "assistant", "content": text},
                "finish_reason": "stop",
                "logprobs": None,
            }
            for i in range(n)
        ]
        payload = {
            "id": f"chatcmpl-{key}-{attempt}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model", self.models[0] if self.models else "fake-model"),
            "choices": choices,
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
        }
        return _json_response(200, payload)


# -- HTTP/1.1 framing ------------------------------------------------------------------------


def _parse_head(head: bytes) -> tuple[str, str, str, dict[str, str]]:
    """Split a request head into method, target, version and lower-cased headers."""
    try:
        lines = head.decode("latin-1").split("\r\n")
        method, target, version = lines[0].split(" ", 2)
    except ValueError as exc:
        raise _BadRequest("malformed request line") from exc
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if not line:
            continue
        name, sep, value = line.partition(":")
        if not sep:
            raise _BadRequest(f"malformed header line {line!r}")
        headers[name.strip().lower()] = value.strip()
    return method, target, version, headers


async def _read_body(reader: asyncio.StreamReader, headers: Mapping[str, str]) -> bytes:
    if "chunked" in headers.get("transfer-encoding", "").lower():
        return await _read_chunked(reader)
    try:
        length = int(headers.get("content-length", "0"))
    except ValueError as exc:
        raise _BadRequest("Content-Length is not a number") from exc
    if not 0 <= length <= _MAX_BODY:
        raise _BadRequest(f"Content-Length {length} is out of range")
    return await reader.readexactly(length) if length else b""


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    parts: list[bytes] = []
    total = 0
    while True:
        size_line = await reader.readuntil(b"\r\n")
        try:
            size = int(size_line.split(b";", 1)[0].strip(), 16)
        except ValueError as exc:
            raise _BadRequest("malformed chunk size") from exc
        if size == 0:
            while await reader.readuntil(b"\r\n") != b"\r\n":
                pass  # trailers carry nothing the fake needs
            return b"".join(parts)
        total += size
        if total > _MAX_BODY:
            raise _BadRequest("chunked body too large")
        parts.append(await reader.readexactly(size))
        await reader.readexactly(2)


async def _write(writer: asyncio.StreamWriter, response: _Response, *, close: bool) -> None:
    reason = HTTPStatus(response.status).phrase
    lines = [
        f"HTTP/1.1 {response.status} {reason}",
        "content-type: application/json",
        f"content-length: {len(response.body)}",
        *(f"{name}: {value}" for name, value in response.headers),
    ]
    if close:
        lines.append("connection: close")
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + response.body)
    await writer.drain()
