"""The loopback server's batch services: OpenAI's Batch API and Anthropic's Message Batches, plus
Anthropic's one-request Messages endpoint, on the same port as the fake chat completions.

OpenAI: ``POST /v1/files`` (multipart, purpose "batch"), ``GET /v1/files/{id}/content``,
``POST /v1/batches``, ``GET /v1/batches/{id}``. Anthropic: ``POST /v1/messages``,
``POST /v1/messages/batches``, ``GET /v1/messages/batches/{id}`` and its ``results_url``.

A batch stays in progress for ``polls_to_end`` polls (forever while ``hold`` is set), then ends
at once: each request is answered like a chat completion, or fails as ``fate`` decides
(``"error"``: a server error for that request; ``"expire"``: no answer, and the batch ends as
expired). The server counts submissions and polls, so a test can show that a resumed run polled
the batch it had submitted instead of submitting again.

With ``prompt_caching`` set, Anthropic answers report prompt caching as the real API does: the
prefix up to a ``cache_control`` breakpoint is written to the cache the first time it is seen
(``cache_creation_input_tokens``) and read from it afterwards (``cache_read_input_tokens``), and
``input_tokens`` counts only the rest.
"""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from email.parser import BytesParser
from email.policy import HTTP
from typing import Any, Literal

from promptopt.testing.fake_server import (
    FakeOpenAIServer,
    _content_text,
    _count_tokens,
    _error,
    _json_response,
    _Response,
    body_hash,
)

Fate = Literal["ok", "error", "expire"]
FateFn = Callable[[dict[str, Any]], Fate]
"""Given one request's body (the chat completion body, or the Messages API params), its fate."""


def _always_ok(body: dict[str, Any]) -> Fate:
    return "ok"


@dataclass
class _Batch:
    id: str
    kind: Literal["openai", "anthropic"]
    requests: list[tuple[str, dict[str, Any]]]
    input_file_id: str = ""
    polls: int = 0
    created_at: float = field(default_factory=time.time)
    results: dict[str, tuple[Fate, dict[str, Any] | None]] | None = None
    output_file_id: str | None = None
    error_file_id: str | None = None


class FakeBatchServer(FakeOpenAIServer):
    """`FakeOpenAIServer` with both providers' batch services and Anthropic's Messages API."""

    def __init__(
        self,
        *,
        polls_to_end: int = 2,
        fate: FateFn = _always_ok,
        prompt_caching: bool = False,
        **options: Any,
    ) -> None:
        """``polls_to_end``: polls a batch answers "in progress" before it ends; ``fate``
        decides each batched request's outcome; ``prompt_caching``: Anthropic answers report
        cache writes and reads for ``cache_control`` prefixes. Other options are
        `FakeOpenAIServer`'s."""
        super().__init__(**options)
        self.polls_to_end = polls_to_end
        self.fate = fate
        self.prompt_caching = prompt_caching
        self._cached_prefixes: set[str] = set()
        self.hold = False
        self._ids = itertools.count(1)
        self._files: dict[str, bytes] = {}
        self._batches: dict[str, _Batch] = {}
        self._batch_submissions = 0
        self._batched_requests = 0
        self._batched_by_body: dict[str, int] = {}
        self._batch_polls = 0
        self._messages_total = 0

    def __enter__(self) -> FakeBatchServer:
        self.start()
        return self

    # -- statistics --------------------------------------------------------------------------

    @property
    def batch_submissions(self) -> int:
        """Batches created (both providers)."""
        with self._lock:
            return self._batch_submissions

    @property
    def batched_requests(self) -> int:
        """Requests received inside batches."""
        with self._lock:
            return self._batched_requests

    @property
    def batched_by_body(self) -> dict[str, int]:
        """How many times each request body (by ``body_hash``) was submitted in a batch."""
        with self._lock:
            return dict(self._batched_by_body)

    @property
    def batch_polls(self) -> int:
        """Batch status requests."""
        with self._lock:
            return self._batch_polls

    @property
    def messages_total(self) -> int:
        """One-request Anthropic Messages calls."""
        with self._lock:
            return self._messages_total

    @property
    def anthropic_base_url(self) -> str:
        """The URL to pass as ``base_url`` to an Anthropic client (no ``/v1``)."""
        return f"http://127.0.0.1:{self.port}"

    # -- routing -----------------------------------------------------------------------------

    async def _route(
        self, method: str, path: str, headers: Mapping[str, str], body: bytes
    ) -> _Response:
        route = path.split("?", 1)[0].rstrip("/")
        parts = route.split("/")
        if method == "POST" and route == "/v1/files":
            return self._upload(headers, body)
        if method == "GET" and route.startswith("/v1/files/") and route.endswith("/content"):
            return self._file_content(parts[3])
        if method == "POST" and route == "/v1/batches":
            return self._create_openai(body)
        if method == "GET" and route.startswith("/v1/batches/"):
            return self._openai_batch(parts[3])
        if method == "POST" and route == "/v1/messages":
            return self._message(body)
        if method == "POST" and route == "/v1/messages/batches":
            return self._create_anthropic(body)
        if method == "GET" and route.startswith("/v1/messages/batches/"):
            if route.endswith("/results"):
                return self._anthropic_results(parts[4])
            return self._anthropic_batch(parts[4])
        return await super()._route(method, path, headers, body)

    def _new_id(self, prefix: str) -> str:
        with self._lock:
            return f"{prefix}{next(self._ids)}"

    # -- answering ---------------------------------------------------------------------------

    def _chat_body(self, body: dict[str, Any]) -> tuple[str, int, int]:
        """The reply text, prompt tokens and completion tokens for a chat-style body."""
        text = self.reply(body)
        prompt = sum(
            _count_tokens(_content_text(m.get("content")))
            for m in body.get("messages", [])
            if isinstance(m, dict)
        ) + _count_tokens(_content_text(body.get("system", "")))
        return text, prompt, _count_tokens(text)

    def _openai_answer(self, body: dict[str, Any], n: int) -> dict[str, Any]:
        text, prompt, completion = self._chat_body(body)
        return {
            "id": f"chatcmpl-batch-{n}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model", "fake-model"),
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": text},
                    "finish_reason": "stop",
                    "logprobs": None,
                }
            ],
            "usage": {
                "prompt_tokens": prompt,
                "completion_tokens": completion,
                "total_tokens": prompt + completion,
            },
        }

    def _anthropic_answer(self, body: dict[str, Any], n: int) -> dict[str, Any]:
        text, prompt, completion = self._chat_body(body)
        cache: dict[str, int] = {}
        prefix = _cached_prefix(body) if self.prompt_caching else None
        if prefix is not None:
            key, tokens = prefix
            with self._lock:
                seen = key in self._cached_prefixes
                self._cached_prefixes.add(key)
            written, read = (0, tokens) if seen else (tokens, 0)
            cache = {"cache_creation_input_tokens": written, "cache_read_input_tokens": read}
            prompt = max(0, prompt - tokens)
        return {
            "id": f"msg_{n}",
            "type": "message",
            "role": "assistant",
            "model": body.get("model", "fake-model"),
            "content": [{"type": "text", "text": text}],
            "stop_reason": "end_turn",
            "stop_sequence": None,
            "usage": {"input_tokens": prompt, "output_tokens": completion, **cache},
        }

    def _message(self, raw: bytes) -> _Response:
        try:
            body = json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError):
            return _error(400, "request body is not valid JSON", "invalid_request_error")
        with self._lock:
            self._messages_total += 1
            n = self._messages_total
        return _json_response(200, self._anthropic_answer(body, n))

    def _finish(self, batch: _Batch) -> None:
        """Poll once; end the batch (deciding every request's outcome) when its time comes."""
        with self._lock:
            self._batch_polls += 1
            batch.polls += 1
            if batch.results is not None or self.hold or batch.polls < self.polls_to_end:
                return
        results: dict[str, tuple[Fate, dict[str, Any] | None]] = {}
        for i, (custom_id, body) in enumerate(batch.requests):
            fate = self.fate(body)
            if fate != "ok":
                results[custom_id] = (fate, None)
            elif batch.kind == "openai":
                results[custom_id] = (fate, self._openai_answer(body, i))
            else:
                results[custom_id] = (fate, self._anthropic_answer(body, i))
        with self._lock:
            batch.results = results

    # -- OpenAI ------------------------------------------------------------------------------

    def _upload(self, headers: Mapping[str, str], body: bytes) -> _Response:
        head = f"Content-Type: {headers.get('content-type', '')}\r\n\r\n".encode("latin-1")
        message = BytesParser(policy=HTTP).parsebytes(head + body)
        fields: dict[str, bytes] = {}
        for part in message.iter_parts():
            name = part.get_param("name", header="content-disposition")
            payload = part.get_payload(decode=True)
            if isinstance(name, str) and isinstance(payload, bytes):
                fields[name] = payload
        if fields.get("purpose") != b"batch" or "file" not in fields:
            return _error(400, "upload a file with purpose batch", "invalid_request_error")
        file_id = self._new_id("file-")
        with self._lock:
            self._files[file_id] = fields["file"]
        return _json_response(200, self._file_object(file_id, "batch"))

    def _file_object(self, file_id: str, purpose: str) -> dict[str, Any]:
        with self._lock:
            size = len(self._files[file_id])
        return {
            "id": file_id,
            "object": "file",
            "bytes": size,
            "created_at": int(time.time()),
            "filename": f"{file_id}.jsonl",
            "purpose": purpose,
            "status": "processed",
        }

    def _file_content(self, file_id: str) -> _Response:
        with self._lock:
            data = self._files.get(file_id)
        if data is None:
            return _error(404, f"no file {file_id}", "invalid_request_error")
        return _Response(200, data)

    def _create_openai(self, raw: bytes) -> _Response:
        body = json.loads(raw)
        with self._lock:
            data = self._files.get(str(body.get("input_file_id")))
        if data is None:
            return _error(400, "unknown input_file_id", "invalid_request_error")
        if body.get("endpoint") != "/v1/chat/completions" or body.get("completion_window") != "24h":
            return _error(400, "unsupported endpoint or window", "invalid_request_error")
        requests = []
        for line in data.decode("utf-8").splitlines():
            if line.strip():
                item = json.loads(line)
                if item.get("url") != "/v1/chat/completions" or item.get("method") != "POST":
                    return _error(400, "each line must POST /v1/chat/completions", "invalid")
                requests.append((str(item["custom_id"]), dict(item["body"])))
        batch = _Batch(self._new_id("batch_"), "openai", requests, str(body["input_file_id"]))
        with self._lock:
            self._batches[batch.id] = batch
            self._batch_submissions += 1
            self._batched_requests += len(requests)
            for _, request in requests:
                key = body_hash(request)
                self._batched_by_body[key] = self._batched_by_body.get(key, 0) + 1
        return _json_response(200, self._openai_object(batch))

    def _openai_object(self, batch: _Batch) -> dict[str, Any]:
        results = batch.results
        counts = {"total": len(batch.requests), "completed": 0, "failed": 0}
        status = "in_progress"
        if results is not None:
            ok = sum(1 for fate, _ in results.values() if fate == "ok")
            counts.update(completed=ok, failed=len(results) - ok)
            expired = any(fate == "expire" for fate, _ in results.values())
            status = "expired" if expired else "completed"
            if batch.output_file_id is None and batch.error_file_id is None:
                self._write_openai_files(batch, results)
        return {
            "id": batch.id,
            "object": "batch",
            "endpoint": "/v1/chat/completions",
            "errors": None,
            "input_file_id": batch.input_file_id,
            "completion_window": "24h",
            "status": status,
            "output_file_id": batch.output_file_id,
            "error_file_id": batch.error_file_id,
            "created_at": int(batch.created_at),
            "request_counts": counts,
        }

    def _write_openai_files(
        self, batch: _Batch, results: Mapping[str, tuple[Fate, dict[str, Any] | None]]
    ) -> None:
        output: list[str] = []
        errors: list[str] = []
        for n, (custom_id, (fate, answer)) in enumerate(results.items()):
            line: dict[str, Any] = {"id": f"batch_req_{n}", "custom_id": custom_id}
            if fate == "ok":
                line.update(response={"status_code": 200, "body": answer}, error=None)
                output.append(json.dumps(line))
            elif fate == "error":
                body = {"error": {"message": "injected batch fault", "type": "server_error"}}
                line.update(response={"status_code": 500, "body": body}, error=None)
                errors.append(json.dumps(line))
            else:
                message = "This request could not be executed before the completion window."
                line.update(response=None, error={"code": "batch_expired", "message": message})
                errors.append(json.dumps(line))
        for lines, attr in ((output, "output_file_id"), (errors, "error_file_id")):
            if lines:
                file_id = self._new_id("file-")
                with self._lock:
                    self._files[file_id] = ("\n".join(lines) + "\n").encode("utf-8")
                setattr(batch, attr, file_id)

    def _openai_batch(self, batch_id: str) -> _Response:
        with self._lock:
            batch = self._batches.get(batch_id)
        if batch is None or batch.kind != "openai":
            return _error(404, f"no batch {batch_id}", "invalid_request_error")
        self._finish(batch)
        return _json_response(200, self._openai_object(batch))

    # -- Anthropic ---------------------------------------------------------------------------

    def _create_anthropic(self, raw: bytes) -> _Response:
        body = json.loads(raw)
        requests = [(str(r["custom_id"]), dict(r["params"])) for r in body.get("requests", [])]
        if not requests:
            return _error(400, "requests: at least one request", "invalid_request_error")
        batch = _Batch(self._new_id("msgbatch_"), "anthropic", requests)
        with self._lock:
            self._batches[batch.id] = batch
            self._batch_submissions += 1
            self._batched_requests += len(requests)
            for _, request in requests:
                key = body_hash(request)
                self._batched_by_body[key] = self._batched_by_body.get(key, 0) + 1
        return _json_response(200, self._anthropic_object(batch))

    def _anthropic_object(self, batch: _Batch) -> dict[str, Any]:
        counts = {"processing": len(batch.requests), "succeeded": 0, "errored": 0}
        counts.update(canceled=0, expired=0)
        results = batch.results
        if results is not None:
            fates = [fate for fate, _ in results.values()]
            counts.update(
                processing=0,
                succeeded=fates.count("ok"),
                errored=fates.count("error"),
                expired=fates.count("expire"),
            )
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(batch.created_at))
        return {
            "id": batch.id,
            "type": "message_batch",
            "processing_status": "ended" if results is not None else "in_progress",
            "request_counts": counts,
            "created_at": stamp,
            "expires_at": stamp,
            "ended_at": stamp if results is not None else None,
            "archived_at": None,
            "cancel_initiated_at": None,
            "results_url": (
                f"{self.anthropic_base_url}/v1/messages/batches/{batch.id}/results"
                if results is not None
                else None
            ),
        }

    def _anthropic_batch(self, batch_id: str) -> _Response:
        with self._lock:
            batch = self._batches.get(batch_id)
        if batch is None or batch.kind != "anthropic":
            return _error(404, f"no batch {batch_id}", "not_found_error")
        self._finish(batch)
        return _json_response(200, self._anthropic_object(batch))

    def _anthropic_results(self, batch_id: str) -> _Response:
        with self._lock:
            batch = self._batches.get(batch_id)
        if batch is None or batch.results is None:
            return _error(404, f"no results for {batch_id}", "not_found_error")
        lines = []
        for custom_id, (fate, answer) in batch.results.items():
            result: dict[str, Any]
            if fate == "ok":
                result = {"type": "succeeded", "message": answer}
            elif fate == "error":
                error = {"type": "api_error", "message": "injected batch fault"}
                result = {"type": "errored", "error": {"type": "error", "error": error}}
            else:
                result = {"type": "expired"}
            lines.append(json.dumps({"custom_id": custom_id, "result": result}))
        return _Response(200, ("\n".join(lines) + "\n").encode("utf-8"))


def _cached_prefix(body: Mapping[str, Any]) -> tuple[str, int] | None:
    """The key and token count of a Messages body's prefix up to its last ``cache_control``
    breakpoint (system blocks, then message content blocks), or None when it has none."""
    blocks: list[Any] = []
    system = body.get("system")
    if isinstance(system, list):
        blocks += system
    elif isinstance(system, str):
        blocks.append({"type": "text", "text": system})
    for message in body.get("messages") or []:
        content = message.get("content") if isinstance(message, dict) else None
        blocks += content if isinstance(content, list) else [{"type": "text", "text": content}]
    marked = [i for i, b in enumerate(blocks) if isinstance(b, dict) and b.get("cache_control")]
    if not marked:
        return None
    prefix = blocks[: marked[-1] + 1]
    tokens = sum(_count_tokens(_content_text([b])) for b in prefix)
    return body_hash({"model": body.get("model"), "prefix": prefix}), tokens
