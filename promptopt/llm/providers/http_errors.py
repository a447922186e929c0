"""Classification of HTTP failures shared by the SDK-based providers, and safe endpoints.

Both SDKs raise status errors with the same shape (status, headers, a server message), but neither
tells a rate limit from an exhausted quota, so the decision of what is worth retrying lives here.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from datetime import datetime
from email.utils import parsedate_to_datetime
from urllib.parse import urlsplit, urlunsplit

from promptopt.errors import (
    ExampleRejected,
    FatalProviderError,
    ProviderError,
    TransientProviderError,
)
from promptopt.llm.messages import RateLimitState

# What servers say when one request's content is the problem rather than the request's shape:
# OpenAI (context_length_exceeded), Anthropic ("prompt is too long"), vLLM ("maximum context
# length"), llama.cpp ("exceeds the available context size"), Azure's content filter.
_EXAMPLE_CODES = frozenset({"context_length_exceeded", "string_above_max_length", "content_filter"})
_EXAMPLE_WORDS = re.compile(
    r"context (length|window|size)|maximum context|too long|too many tokens|too large"
    r"|reduce the length|content (management )?policy|content filter",
    re.IGNORECASE,
)


def safe_endpoint(url: str) -> str:
    """The URL without user info, query or fragment, where credentials sometimes hide."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path.rstrip("/"), "", ""))


def without_userinfo(url: str) -> str:
    """The URL with any `user:password@` removed (everything else kept).

    httpx turns a URL's userinfo into an `Authorization: Basic` header on every request,
    replacing the key, and servers echo that header in error bodies; it is sent only when a
    model asks for it (`url_credentials: true`).
    """
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))


def parse_retry_after(headers: Mapping[str, str], *, now: float | None = None) -> float | None:
    """Seconds to wait, from `retry-after-ms`, or `retry-after` as seconds or an HTTP-date."""
    lowered = {k.lower(): v for k, v in headers.items()}
    millis = lowered.get("retry-after-ms")
    if millis is not None:
        try:
            return max(0.0, float(millis) / 1000.0)
        except ValueError:
            pass
    value = lowered.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    current = time.time() if now is None else now
    return max(0.0, when.timestamp() - current)


_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(value: str) -> float | None:
    """Seconds in a reset header: OpenAI's "1s", "6m0s", "20ms", or a plain number of seconds."""
    text = value.strip()
    try:
        return max(0.0, float(text))
    except ValueError:
        pass
    parts = _DURATION_PART.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        return None
    return sum(float(number) * _DURATION_UNITS[unit] for number, unit in parts)


def parse_rate_limit(
    headers: Mapping[str, str], *, now: float | None = None
) -> RateLimitState | None:
    """What an answer's headers say about the rate limits, or None when they say nothing:
    `x-ratelimit-remaining-*` / `x-ratelimit-reset-*` (OpenAI, Groq, Together, gateways in front
    of vLLM ...) or Anthropic's `anthropic-ratelimit-*-remaining` / `-reset` (an RFC 3339 time).
    """
    lowered = {k.lower(): v for k, v in headers.items()}
    if not any("ratelimit" in name for name in lowered):
        return None  # most answers of a local server: nothing more to read

    def count(*names: str) -> int | None:
        for name in names:
            value = lowered.get(name)
            if value is None:
                continue
            try:
                return int(float(value))
            except ValueError:
                return None
        return None

    def seconds(openai_name: str, anthropic_name: str) -> float | None:
        value = lowered.get(openai_name)
        if value is not None:
            return parse_duration(value)
        value = lowered.get(anthropic_name)
        if value is None:
            return None
        try:
            when = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
        current = time.time() if now is None else now
        return max(0.0, when.timestamp() - current)

    state = RateLimitState(
        remaining_requests=count(
            "x-ratelimit-remaining-requests", "anthropic-ratelimit-requests-remaining"
        ),
        remaining_tokens=count(
            "x-ratelimit-remaining-tokens", "anthropic-ratelimit-tokens-remaining"
        ),
        reset_requests_s=seconds(
            "x-ratelimit-reset-requests", "anthropic-ratelimit-requests-reset"
        ),
        reset_tokens_s=seconds("x-ratelimit-reset-tokens", "anthropic-ratelimit-tokens-reset"),
    )
    return None if state == RateLimitState() else state


def classify_status(
    *,
    label: str,
    status: int,
    message: str,
    headers: Mapping[str, str],
    quota_exhausted: bool,
    key_env: str | None,
    code: str | None = None,
) -> ProviderError:
    """The provider error for an HTTP error status; `message` must already be redacted.

    `label` names the endpoint (e.g. "OpenAI (gpt-4o-mini)"); `key_env` is the variable that holds
    the key, named in authentication failures so the user knows what to fix; `code` is the error
    body's code, when the server gives one. A 400 about one request's content (too long, say) is
    ExampleRejected, recorded on that example; any other 400 is about every request alike (an
    unknown model, a bad parameter) and stops the command.
    """
    if quota_exhausted:
        return FatalProviderError(
            f"{label}: the account's quota or credit is exhausted (HTTP {status}): {message}. "
            "Add credit or raise the spending limit, or use another model."
        )
    # 501: the server does not implement the endpoint (llama.cpp's server without
    # --embeddings); asking again cannot help.
    if status in (408, 409, 429) or (status >= 500 and status != 501):
        retry_after = parse_retry_after(headers) if status in (429, 503, 529) else None
        kind = "rate limited" if status == 429 else "temporary server error"
        return TransientProviderError(
            f"{label}: {kind} (HTTP {status}): {message}", retry_after=retry_after, status=status
        )
    if status in (401, 403):
        fix = f"check {key_env}" if key_env else "check the endpoint's credentials"
        return FatalProviderError(
            f"{label}: the API key was rejected (HTTP {status}): {message}. Fix: {fix}."
        )
    if status == 413 or (
        status in (400, 422) and (code in _EXAMPLE_CODES or _EXAMPLE_WORDS.search(message))
    ):
        return ExampleRejected(
            f"{label}: the request was refused for this example (HTTP {status}): {message}",
            status=status,
        )
    if status == 404:
        return FatalProviderError(
            f"{label}: not found (HTTP 404): {message}. Check the model name and base_url."
        )
    return FatalProviderError(f"{label}: the request was refused (HTTP {status}): {message}")
