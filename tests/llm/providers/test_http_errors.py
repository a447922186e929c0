"""Retry-After parsing, status classification and secret hygiene shared by the SDK providers."""

from __future__ import annotations

from datetime import UTC, datetime
from email.utils import format_datetime

import pytest

from promptopt.errors import FatalProviderError, TransientProviderError
from promptopt.llm.providers.http_errors import classify_status, parse_retry_after, safe_endpoint


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


def classify(status: int, quota: bool = False) -> Exception:
    return classify_status(
        label="openai:m at https://x",
        status=status,
        message="server says no",
        headers={"retry-after": "2"},
        quota_exhausted=quota,
        key_env="MY_KEY",
    )


@pytest.mark.parametrize("status", [408, 409, 429, 500, 502, 503, 504, 529])
def test_transient_statuses(status: int) -> None:
    assert isinstance(classify(status), TransientProviderError)


@pytest.mark.parametrize("status", [400, 401, 402, 403, 404, 413, 422])
def test_fatal_statuses(status: int) -> None:
    error = classify(status)
    assert isinstance(error, FatalProviderError)
    assert "server says no" in str(error)


def test_auth_failure_names_the_variable_and_quota_is_fatal() -> None:
    assert "MY_KEY" in str(classify(401))
    assert isinstance(classify(429, quota=True), FatalProviderError)


def test_safe_endpoint_drops_credentials() -> None:
    assert (
        safe_endpoint("https://u:p@h.example:8443/v1/?api_key=k#x") == "https://h.example:8443/v1"
    )
    assert safe_endpoint("http://localhost:11434/v1") == "http://localhost:11434/v1"
