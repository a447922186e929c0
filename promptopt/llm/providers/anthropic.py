"""Anthropic's Messages API."""

from __future__ import annotations

import inspect
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

import anthropic
import httpx2
from anthropic.resources.messages import AsyncMessages

from promptopt.errors import (
    FatalProviderError,
    ProviderError,
    TransientProviderError,
    UsageError,
)
from promptopt.llm.messages import (
    ChatRequest,
    Completion,
    Message,
    Usage,
    normalize_finish_reason,
)
from promptopt.llm.providers.anthropic_batch import AnthropicBatches
from promptopt.llm.providers.http_errors import (
    classify_status,
    parse_rate_limit,
    safe_endpoint,
    without_userinfo,
)
from promptopt.task.modelspec import ModelSpec
from promptopt.util.redact import redact, url_credentials

ANTHROPIC_BASE_URL = "https://api.anthropic.com"
# The Messages API requires max_tokens; this covers a classification answer or a critique.
DEFAULT_MAX_TOKENS = 1024
_QUOTA_WORDS = ("credit balance", "quota", "billing")
# The shortest prefix Anthropic caches, in tokens, by model family (its prompt-caching docs); a
# shorter one marked for caching is simply not cached. Unlisted models: the common minimum.
CACHE_MIN_TOKENS = {
    "claude-opus-4-5": 4096,
    "claude-opus-4-6": 4096,
    "claude-haiku-4-5": 4096,
    "claude-opus-4-7": 2048,
    "claude-sonnet-4-6": 2048,
    "claude-3-5-haiku": 2048,
    "claude-3-haiku": 2048,
}
DEFAULT_CACHE_MIN_TOKENS = 1024
# Claude's tokenizer averages about 3.5 characters of English a token; guessing short, more
# prefixes get marked, and marking one that turns out too short costs nothing.
_CHARS_PER_TOKEN = 3.5
# Parameters the SDK no longer names (temperature, top_p, top_k in this SDK generation) still
# reach the API through extra_body, so the server, not a TypeError, decides what it accepts.
_NOT_PARAMS = frozenset({"self", "stream", "timeout", "extra_body", "extra_headers", "extra_query"})
_SDK_PARAMS = frozenset(inspect.signature(AsyncMessages.create).parameters) - _NOT_PARAMS


def resolve_api_key(spec: ModelSpec, env: Mapping[str, str]) -> tuple[str, str]:
    """The key and the name of its variable; FatalProviderError naming the variable if unset."""
    name = spec.api_key_env or "ANTHROPIC_API_KEY"
    value = env.get(name)
    if not value:
        raise FatalProviderError(
            f"model {spec.model}: set {name}"
            + ("" if spec.api_key_env else ", or set api_key_env to the variable that holds it")
        )
    return value, name


def _is_quota_error(error: anthropic.APIStatusError) -> bool:
    # Anthropic reports an empty balance as a 400 or 429 whose message says so; 402 is billing.
    if error.status_code == 402:
        return True
    if error.status_code not in (400, 403, 429):
        return False
    words = f"{error.type or ''} {error.api_message or error.message}".lower()
    return any(w in words for w in _QUOTA_WORDS)


class AnthropicProvider(AnthropicBatches):
    """A Claude model behind the Messages API; one attempt per `complete` call."""

    def __init__(
        self,
        spec: ModelSpec,
        *,
        http_client: httpx2.AsyncClient | None = None,
        env: Mapping[str, str] = os.environ,
    ) -> None:
        if spec.n_sampling:
            raise UsageError(
                f"model {spec.model}: n_sampling: the Messages API answers one sample per "
                "request; remove n_sampling"
            )
        self._spec = spec
        written = spec.base_url or ANTHROPIC_BASE_URL
        self._base_url = written if spec.url_credentials else without_userinfo(written)
        self._key, self._key_env = resolve_api_key(spec, env)
        # Everything a server could echo back: the key, and the URL's credentials in any form.
        self._secrets = [self._key, *url_credentials(written)]
        self._owns_http = http_client is None
        self._label = f"{spec.model} at {safe_endpoint(self._base_url)}"
        self._client = anthropic.AsyncAnthropic(
            api_key=self._key,
            base_url=self._base_url,
            max_retries=0,  # the scorer owns retries and counts every attempt
            timeout=spec.timeout_s,
            http_client=http_client,
        )

    @property
    def endpoint(self) -> str:
        """The server's base URL, without credentials."""
        return safe_endpoint(self._base_url)

    @property
    def model_id(self) -> str:
        """The "provider:name" the user asked for."""
        return self._spec.model

    def _body(self, request: ChatRequest) -> dict[str, Any]:
        params: dict[str, Any] = {**self._spec.sampling_params(), **request.params}
        params.setdefault("max_tokens", DEFAULT_MAX_TOKENS)
        if "stop" in params and "stop_sequences" not in params:
            stop = params.pop("stop")
            params["stop_sequences"] = [stop] if isinstance(stop, str) else stop
        system = "\n\n".join(m["content"] for m in request.messages if m["role"] == "system")
        turns = [m for m in request.messages if m["role"] != "system"]
        messages: list[dict[str, Any]] = [
            {"role": m["role"], "content": m["content"]} for m in turns
        ]
        body: dict[str, Any] = {"model": self._spec.name, "messages": messages}
        if system:
            body["system"] = system
        self._mark_cacheable(body, system, turns)
        extra: dict[str, Any] = {}
        for name, value in params.items():
            (body if name in _SDK_PARAMS else extra)[name] = value
        if extra:
            body["extra_body"] = extra
        return body

    def _mark_cacheable(self, body: dict[str, Any], system: str, turns: Sequence[Message]) -> None:
        """Put a cache breakpoint at the end of the stable prefix (the system block, then the
        few-shot turns before the final input) when it is long enough for Anthropic to cache:
        every example scored with one prompt then reads that prefix at the cache price."""
        stable = turns[:-1]
        prefix_chars = len(system) + sum(len(m["content"]) for m in stable)
        if prefix_chars / _CHARS_PER_TOKEN < cache_min_tokens(self._spec.name):
            return
        breakpoint_ = {"type": "ephemeral"}
        if stable:
            last = body["messages"][len(stable) - 1]
            last["content"] = [
                {"type": "text", "text": last["content"], "cache_control": breakpoint_}
            ]
        elif system:
            body["system"] = [{"type": "text", "text": system, "cache_control": breakpoint_}]

    async def complete(self, request: ChatRequest) -> Completion:
        """Send one request; raise Transient/FatalProviderError on failure."""
        started = time.perf_counter()
        try:
            # With its headers, so that the rate-limit ones reach the adaptive concurrency.
            raw = await self._client.messages.with_raw_response.create(**self._body(request))
            headers = raw.headers
            response = await raw.parse()
        except anthropic.APIStatusError as error:
            raise self._status_error(error) from None
        except anthropic.APITimeoutError:
            raise TransientProviderError(
                f"{self._label}: the request timed out", kind="timed out"
            ) from None
        except anthropic.APIConnectionError as error:
            detail = redact(str(error.__cause__ or error), self._secrets)
            raise TransientProviderError(
                f"{self._label}: connection failed: {detail}", kind="connection failed"
            ) from None
        except (anthropic.APIResponseValidationError, ValueError) as error:
            raise self._malformed(type(error).__name__) from None
        latency = time.perf_counter() - started
        return replace(self._completion(response, latency), rate_limit=parse_rate_limit(headers))

    def _completion(self, response: Any, latency: float) -> Completion:
        blocks = getattr(response, "content", None)
        if not isinstance(blocks, list):
            raise self._malformed("no content")
        texts = [getattr(b, "text", None) for b in blocks if getattr(b, "type", None) == "text"]
        if not all(isinstance(t, str) for t in texts):
            raise self._malformed("a text block without text")
        return Completion(
            text="".join(str(t) for t in texts),
            usage=_usage(getattr(response, "usage", None)),
            model=getattr(response, "model", None) or self._spec.name,
            latency_s=latency,
            # "max_tokens" becomes "length"; "end_turn" and "stop_sequence" become "stop".
            finish_reason=normalize_finish_reason(getattr(response, "stop_reason", None)),
        )

    def _malformed(self, why: str) -> TransientProviderError:
        return TransientProviderError(
            f"{self._label}: malformed response ({why})", kind="malformed response"
        )

    def _status_error(self, error: anthropic.APIStatusError) -> ProviderError:
        return classify_status(
            label=self._label,
            status=error.status_code,
            message=redact(error.api_message or error.message, self._secrets),
            headers=error.response.headers,
            quota_exhausted=_is_quota_error(error),
            key_env=self._key_env,
        )

    async def aclose(self) -> None:
        """Close the connections, unless the caller lent the HTTP client."""
        if self._owns_http:
            await self._client.close()


def cache_min_tokens(name: str) -> int:
    """The shortest prefix (tokens) Anthropic caches for model `name` (dated ids included)."""
    for family, minimum in CACHE_MIN_TOKENS.items():
        if name == family or name.startswith(family + "-"):
            return minimum
    return DEFAULT_CACHE_MIN_TOKENS


def _usage(usage: Any) -> Usage:
    """Normalize Anthropic usage: input_tokens already exclude cache reads and writes."""
    if usage is None:
        return Usage()

    def count(name: str) -> int:
        return int(getattr(usage, name, 0) or 0)

    return Usage(
        input=count("input_tokens"),
        cache_read=count("cache_read_input_tokens"),
        cache_write=count("cache_creation_input_tokens"),
        output=count("output_tokens"),
    )
