"""Retry-After parsing, status classification and secret hygiene shared by the SDK providers."""

from __future__ import annotations

from datetime import UTC, datetime
from email.utils import format_datetime

import pytest

from promptopt.errors import ExampleRejected, FatalProviderError, TransientProviderError
from promptopt.llm.messages import RateLimitState
from promptopt.llm.providers.http_errors import (
    classify_status,
    parse_duration,
    parse_rate_limit,
    parse_retry_after,
    safe_endpoint,
)


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"Retry-After": "3"}, 3.0),
        ({"retry-after": "0.5"}, 0.5),
        ({"retry-after-ms": "2500", "retry-after": "9"}, 2.5),
        ({"retry-after-ms": "junk", "retry-after": "9"}, 9.0),
        ({"retry-after": "-4"}, 0.0),
        ({"retry-after": "soon"}, None),
        ({}, None),
    ],
)
def test_parse_retry_after(headers: dict[str, str], expected: float | None) -> None:
    assert parse_retry_after(headers) == expected


def test_parse_retry_after_http_date() -> None:
    now = datetime(2026, 11, 1, 12, 0, 0, tzinfo=UTC)
    later = datetime(2026, 11, 1, 12, 0, 30, tzinfo=UTC)
    headers = {"retry-after": format_datetime(later, usegmt=True)}
    assert parse_retry_after(headers, now=now.timestamp()) == pytest.approx(30.0)


def classify(
    status: int, quota: bool = False, message: str = "server says no", code: str | None = None
) -> Exception:
    return classify_status(
        label="openai:m at https://x",
        status=status,
        message=message,
        headers={"retry-after": "2"},
        quota_exhausted=quota,
        key_env="MY_KEY",
        code=code,
    )


@pytest.mark.parametrize("status", [408, 409, 429, 500, 502, 503, 504, 529])
def test_transient_statuses(status: int) -> None:
    assert isinstance(classify(status), TransientProviderError)


@pytest.mark.parametrize("status", [400, 401, 402, 403, 404, 422, 501])
def test_fatal_statuses(status: int) -> None:
    error = classify(status)
    assert isinstance(error, FatalProviderError)
    assert "server says no" in str(error)


@pytest.mark.parametrize(
    ("status", "message", "code"),
    [
        (
            400,
            "This model's maximum context length is 8192 tokens. However, your messages "
            "resulted in 9100 tokens.",
            "context_length_exceeded",
        ),
        (400, "prompt is too long: 210000 tokens > 200000 maximum", None),
        (400, "the request exceeds the available context size", None),
        (400, "The response was filtered", "content_filter"),
        (413, "payload too large", None),
    ],
)
def test_a_request_refused_for_its_content_concerns_that_example_only(
    status: int, message: str, code: str | None
) -> None:
    error = classify(status, message=message, code=code)
    assert isinstance(error, ExampleRejected)
    assert not isinstance(error, FatalProviderError)
    assert f"HTTP {status}" in str(error)


@pytest.mark.parametrize(
    ("message", "code"),
    [
        ("The model `gpt-9` does not exist", "model_not_found"),
        ("Unrecognized request argument supplied: temprature", None),
        ("temperature: must be at most 2", "invalid_value"),
    ],
)
def test_a_400_about_the_request_as_a_whole_stops_the_run(message: str, code: str | None) -> None:
    assert isinstance(classify(400, message=message, code=code), FatalProviderError)


def test_auth_failure_names_the_variable_and_quota_is_fatal() -> None:
    assert "MY_KEY" in str(classify(401))
    assert isinstance(classify(429, quota=True), FatalProviderError)


def test_safe_endpoint_drops_credentials() -> None:
    assert (
        safe_endpoint("https://u:p@h.example:8443/v1/?api_key=k#x") == "https://h.example:8443/v1"
    )
    assert safe_endpoint("http://localhost:11434/v1") == "http://localhost:11434/v1"


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("1s", 1.0), ("6m0s", 360.0), ("20ms", 0.02), ("1h2m3.5s", 3723.5), ("2.5", 2.5)],
)
def test_reset_durations_in_every_form_servers_send(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


def test_a_reset_that_is_not_a_duration_is_ignored() -> None:
    assert parse_duration("soon") is None
    assert parse_duration("5 s") is None


def test_rate_limit_headers_are_read_and_absent_ones_are_none() -> None:
    state = parse_rate_limit(
        {
            "X-RateLimit-Remaining-Requests": "0",
            "x-ratelimit-reset-requests": "1.5s",
            "x-ratelimit-remaining-tokens": "garbage",
        }
    )
    assert state == RateLimitState(remaining_requests=0, reset_requests_s=1.5)
    assert state.wait_s() == 1.5
    assert parse_rate_limit({"content-type": "application/json"}) is None
    assert RateLimitState(remaining_requests=3, reset_requests_s=9.0).wait_s() == 0.0


def test_anthropic_resets_are_times_of_day() -> None:
    now = datetime(2026, 11, 30, 12, 0, 0, tzinfo=UTC).timestamp()
    state = parse_rate_limit(
        {
            "anthropic-ratelimit-tokens-remaining": "0",
            "anthropic-ratelimit-tokens-reset": "2026-11-30T12:00:07Z",
            "anthropic-ratelimit-requests-reset": "not a time",
        },
        now=now,
    )
    assert state == RateLimitState(remaining_tokens=0, reset_tokens_s=7.0)
    assert state.wait_s() == 7.0
