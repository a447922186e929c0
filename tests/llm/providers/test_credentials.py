"""Credentials written into a base_url: never sent as HTTP Basic auth unless the model asks,
and masked in every form (as written, decoded, base64) when a server echoes them back. On a real
loopback server, so that the SDK and httpx2 build the request as in a run."""

from __future__ import annotations

import asyncio
import base64
from typing import Any

import pytest

from promptopt.errors import ExampleRejected
from promptopt.llm.messages import ChatRequest
from promptopt.llm.providers.anthropic import AnthropicProvider
from promptopt.llm.providers.openai import OpenAIProvider
from promptopt.task.modelspec import ModelSpec
from tests.support.echo_server import HeaderEchoServer

USERINFO = "alice:s3cret%2Fpw"  # percent-encoded, as a URL must write a "/" in a password
DECODED = "alice:s3cret/pw"
BASIC = base64.b64encode(DECODED.encode()).decode()
KEY = "sk-test-KEY0123456789abcdef"
REQUEST = ChatRequest(messages=({"role": "user", "content": "hi"},))
FORMS = (USERINFO, DECODED, BASIC, BASIC.rstrip("="), "s3cret", KEY)


def refusal(provider: Any) -> str:
    async def send() -> None:
        try:
            await provider.complete(REQUEST)
        finally:
            await provider.aclose()

    with pytest.raises(ExampleRejected) as info:
        asyncio.run(send())
    return str(info.value)


def assert_clean(text: str) -> None:
    for form in FORMS:
        assert form not in text, (form, text)


@pytest.mark.parametrize("provider", [OpenAIProvider, AnthropicProvider])
def test_url_userinfo_is_not_sent_by_default(provider: Any) -> None:
    with HeaderEchoServer() as server:
        spec = ModelSpec(model="openai:m", base_url=server.url(USERINFO), api_key_env="K")
        message = refusal(provider(spec, env={"K": KEY}))
    (headers,) = server.received
    assert not headers.get("authorization", "").startswith("Basic")
    # The key still goes where each API expects it.
    assert headers.get("authorization") == f"Bearer {KEY}" or headers.get("x-api-key") == KEY
    assert "maximum context length exceeded" in message
    assert_clean(message)


@pytest.mark.parametrize("provider", [OpenAIProvider, AnthropicProvider])
def test_url_userinfo_is_sent_when_asked_and_masked_when_echoed(provider: Any) -> None:
    with HeaderEchoServer() as server:
        spec = ModelSpec(
            model="openai:m",
            base_url=server.url(USERINFO),
            api_key_env="K",
            url_credentials=True,
        )
        message = refusal(provider(spec, env={"K": KEY}))
    (headers,) = server.received
    assert headers["authorization"] == f"Basic {BASIC}"
    # Echoed as "Basic <token>" and as the bare token: both masked.
    assert "Authorization: Basic [redacted] (token [redacted])" in message
    assert_clean(message)
