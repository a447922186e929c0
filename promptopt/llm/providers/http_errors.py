"""Classification of HTTP failures shared by the SDK-based providers, and safe endpoints.

Both SDKs raise status errors with the same shape (status, headers, a server message), but neither
tells a rate limit from an exhausted quota, so the decision of what is worth retrying lives here.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from email.utils import parsedate_to_datetime
from urllib.parse import urlsplit, urlunsplit

from promptopt.errors import (
    ExampleRejected,
    FatalProviderError,
    ProviderError,
    TransientProviderError,
)

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
