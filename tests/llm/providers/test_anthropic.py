"""AnthropicProvider on a fake HTTP layer (httpx2.MockTransport); the real SDK builds and parses."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import httpx2
import pytest

from promptopt.errors import FatalProviderError, ProviderError, TransientProviderError
from promptopt.llm.messages import ChatRequest, Completion, Usage
from promptopt.llm.providers.anthropic import AnthropicProvider, cache_min_tokens
from promptopt.task.modelspec import ModelSpec
from tests.support.anthropic import message_body

KEY = "sk-ant-test-SECRET0123456789"
ENV = {"ANTHROPIC_API_KEY": KEY}
REQUEST = ChatRequest(
    messages=(
        {"role": "system", "content": "Answer with the label only."},
        {"role": "user", "content": "Is water wet?"},
    ),
)

Handler = Callable[[httpx2.Request], httpx2.Response]


class Recorder:
    """Answers every request with one handler and keeps what was sent."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.requests: list[httpx2.Request] = []

    def __call__(self, request: httpx2.Request) -> httpx2.Response:
        self.requests.append(request)
        return self.handler(request)


def run(
    handler: Handler,
    spec: ModelSpec | str = "anthropic:claude-haiku-4-5",
    env: dict[str, str] | None = None,
) -> tuple[Completion | ProviderError, Recorder]:
    """Build a provider on a mock transport, send REQUEST once, return the answer or error."""
    recorder = Recorder(handler)
    model = spec if isinstance(spec, ModelSpec) else ModelSpec(model=spec)

    async def go() -> Completion | ProviderError:
        async with httpx2.AsyncClient(transport=httpx2.MockTransport(recorder)) as client:
            provider = AnthropicProvider(model, http_client=client, env=ENV if env is None else env)
            try:
                return await provider.complete(REQUEST)
            except ProviderError as error:
                return error
            finally:
                await provider.aclose()

    return asyncio.run(go()), recorder


def error_response(
    status: int, kind: str, message: str, headers: dict[str, str] | None = None
) -> Handler:
    body = {"type": "error", "error": {"type": kind, "message": message}}
    return lambda request: httpx2.Response(status, json=body, headers=headers or {})


def test_success_normalizes_usage_and_puts_the_system_message_in_system() -> None:
    result, recorder = run(lambda r: httpx2.Response(200, json=message_body()))
    assert isinstance(result, Completion)
    assert result.text == "Yes"
    assert result.model == "claude-haiku-4-5-20251001"
    assert result.usage == Usage(input=40, cache_read=1500, cache_write=300, output=2)
    [sent] = recorder.requests
    assert str(sent.url) == "https://api.anthropic.com/v1/messages"
    assert sent.headers["authorization"] == f"Bearer {KEY}"
    body = json.loads(sent.content)
    assert body["model"] == "claude-haiku-4-5"
    assert body["system"] == "Answer with the label only."
    assert body["messages"] == [{"role": "user", "content": "Is water wet?"}]
    assert body["max_tokens"] == 1024


@pytest.mark.parametrize(
    ("stop_reason", "expected"),
    [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("max_tokens", "length"),
        ("refusal", "refusal"),
        (None, None),
    ],
)
def test_stop_reason_is_normalized(stop_reason: str | None, expected: str | None) -> None:
    body = message_body(stop_reason=stop_reason)
    result, _ = run(lambda r: httpx2.Response(200, json=body))
    assert isinstance(result, Completion)
    assert result.finish_reason == expected
    assert result.truncated is (expected == "length")


def test_spec_sampling_params_are_sent() -> None:
    spec = ModelSpec(
        model="anthropic:claude-haiku-4-5",
        max_tokens=16,
        temperature=0.5,
        params={"stop": "\n", "top_k": 5},
    )
    _, recorder = run(lambda r: httpx2.Response(200, json=message_body()), spec)
    body = json.loads(recorder.requests[0].content)
    assert body["max_tokens"] == 16
    assert body["temperature"] == 0.5  # not an SDK argument any more: sent through extra_body
    assert body["top_k"] == 5
    assert body["stop_sequences"] == ["\n"]


def test_non_text_blocks_are_skipped() -> None:
    content = [
        {"type": "thinking", "thinking": "hmm", "signature": "s"},
        {"type": "text", "text": "A"},
    ]
    result, _ = run(lambda r: httpx2.Response(200, json=message_body(content=content)))
    assert isinstance(result, Completion)
    assert result.text == "A"


@pytest.mark.parametrize(
    ("headers", "expected"),
    [({"retry-after": "12"}, 12.0), ({"retry-after-ms": "250"}, 0.25), ({}, None)],
)
def test_rate_limit_is_transient_with_retry_after_and_sent_once(
    headers: dict[str, str], expected: float | None
) -> None:
    result, recorder = run(error_response(429, "rate_limit_error", "Too many requests", headers))
    assert isinstance(result, TransientProviderError)
    assert result.retry_after == expected
    assert len(recorder.requests) == 1  # the SDK did not retry on its own


@pytest.mark.parametrize("status", [500, 503, 529])
def test_server_errors_and_overload_are_transient(status: int) -> None:
    result, recorder = run(error_response(status, "overloaded_error", "Overloaded"))
    assert isinstance(result, TransientProviderError)
    assert result.status == status
    assert len(recorder.requests) == 1


def test_timeout_is_transient() -> None:
    def handler(request: httpx2.Request) -> httpx2.Response:
        raise httpx2.ReadTimeout("slow", request=request)

    result, recorder = run(handler)
    assert isinstance(result, TransientProviderError)
    assert len(recorder.requests) == 1


@pytest.mark.parametrize(
    "response",
    [
        httpx2.Response(200, content=b"<html>", headers={"content-type": "application/json"}),
        httpx2.Response(200, json={"id": "msg_1", "type": "message"}),
        httpx2.Response(200, json=message_body(content=[{"type": "text"}])),
    ],
    ids=["invalid-json", "no-content", "text-block-without-text"],
)
def test_malformed_bodies_are_transient(response: httpx2.Response) -> None:
    result, _ = run(lambda r: response)
    assert isinstance(result, TransientProviderError)
    assert "malformed response" in str(result)


@pytest.mark.parametrize("status", [401, 403])
def test_auth_failures_are_fatal_and_name_the_variable(status: int) -> None:
    result, _ = run(error_response(status, "authentication_error", "invalid x-api-key"))
    assert isinstance(result, FatalProviderError)
    assert "ANTHROPIC_API_KEY" in str(result)


@pytest.mark.parametrize(
    ("status", "kind", "message"),
    [
        (400, "invalid_request_error", "Your credit balance is too low to access the API."),
        (429, "rate_limit_error", "You have exceeded your monthly usage quota."),
        (402, "billing_error", "Payment required."),
    ],
)
def test_exhausted_credit_is_fatal(status: int, kind: str, message: str) -> None:
    result, _ = run(error_response(status, kind, message))
    assert isinstance(result, FatalProviderError)
    assert "quota or credit is exhausted" in str(result)


@pytest.mark.parametrize("status", [400, 404])
def test_invalid_requests_are_fatal_with_the_server_message(status: int) -> None:
    result, _ = run(error_response(status, "not_found_error", "model: claude-9"))
    assert isinstance(result, FatalProviderError)
    assert "model: claude-9" in str(result)


def test_key_never_appears_in_endpoint_or_errors() -> None:
    for status in (400, 401, 429, 500):
        result, _ = run(error_response(status, "api_error", f"echo {KEY}"))
        assert isinstance(result, ProviderError)
        assert KEY not in str(result)
    provider = AnthropicProvider(ModelSpec(model="anthropic:claude-opus-4-1"), env=ENV)
    assert provider.endpoint == "https://api.anthropic.com"
    assert provider.model_id == "anthropic:claude-opus-4-1"


def test_missing_key_is_fatal_with_the_fix() -> None:
    with pytest.raises(FatalProviderError, match="set ANTHROPIC_API_KEY"):
        AnthropicProvider(ModelSpec(model="anthropic:claude-haiku-4-5"), env={})


def test_base_url_and_named_key_variable() -> None:
    spec = ModelSpec(
        model="anthropic:claude-haiku-4-5",
        base_url="http://127.0.0.1:9000",
        api_key_env="PROXY_KEY",
    )
    result, recorder = run(
        lambda r: httpx2.Response(200, json=message_body()), spec, {**ENV, "PROXY_KEY": "proxy-1"}
    )
    assert isinstance(result, Completion)
    [sent] = recorder.requests
    assert str(sent.url) == "http://127.0.0.1:9000/v1/messages"
    assert sent.headers["authorization"] == "Bearer proxy-1"
    with pytest.raises(FatalProviderError, match="PROXY_KEY"):
        AnthropicProvider(spec, env=ENV)


def sent_body(request: ChatRequest, spec: str = "anthropic:claude-haiku-4-5") -> dict[str, Any]:
    recorder = Recorder(lambda r: httpx2.Response(200, json=message_body()))

    async def go() -> None:
        async with httpx2.AsyncClient(transport=httpx2.MockTransport(recorder)) as client:
            provider = AnthropicProvider(ModelSpec(model=spec), http_client=client, env=ENV)
            await provider.complete(request)
            await provider.aclose()

    asyncio.run(go())
    body: dict[str, Any] = json.loads(recorder.requests[0].content)
    return body


SENTENCE = "Classify the question by the type of its answer. "
LONG_INSTRUCTION = SENTENCE * 300  # about 4,300 tokens: enough for every model


def test_a_system_block_long_enough_to_cache_gets_a_cache_breakpoint() -> None:
    request = ChatRequest(
        messages=(
            {"role": "system", "content": LONG_INSTRUCTION},
            {"role": "user", "content": "Who wrote Hamlet?"},
        )
    )
    body = sent_body(request)
    assert body["system"] == [
        {"type": "text", "text": LONG_INSTRUCTION, "cache_control": {"type": "ephemeral"}}
    ]
    assert body["messages"] == [{"role": "user", "content": "Who wrote Hamlet?"}]


def test_a_short_system_block_is_sent_as_plain_text() -> None:
    assert sent_body(REQUEST)["system"] == "Answer with the label only."


def test_the_minimum_is_the_models_own() -> None:
    # About 2,100 tokens: enough for Sonnet 4.6 (2,048), not for Haiku 4.5 (4,096).
    request = ChatRequest(
        messages=(
            {"role": "system", "content": SENTENCE * 150},
            {"role": "user", "content": "Who wrote Hamlet?"},
        )
    )
    assert isinstance(sent_body(request, "anthropic:claude-sonnet-4-6")["system"], list)
    assert isinstance(sent_body(request, "anthropic:claude-haiku-4-5-20251001")["system"], str)
    assert cache_min_tokens("claude-haiku-4-5-20251001") == 4096
    assert cache_min_tokens("claude-sonnet-4-5") == 1024
    assert cache_min_tokens("claude-some-future-model") == 1024


def test_with_demonstrations_the_breakpoint_follows_the_last_one() -> None:
    request = ChatRequest(
        messages=(
            {"role": "system", "content": LONG_INSTRUCTION},
            {"role": "user", "content": "Who wrote Hamlet?"},
            {"role": "assistant", "content": "HUM"},
            {"role": "user", "content": "How far is the moon?"},
        )
    )
    body = sent_body(request)
    assert body["system"] == LONG_INSTRUCTION
    assert body["messages"][1] == {
        "role": "assistant",
        "content": [{"type": "text", "text": "HUM", "cache_control": {"type": "ephemeral"}}],
    }
    assert body["messages"][0] == {"role": "user", "content": "Who wrote Hamlet?"}
    assert body["messages"][2] == {"role": "user", "content": "How far is the moon?"}


def test_anthropic_rate_limit_headers_reach_the_answer() -> None:
    headers = {
        "anthropic-ratelimit-requests-remaining": "0",
        "anthropic-ratelimit-requests-reset": "2999-01-01T00:00:00Z",
        "anthropic-ratelimit-tokens-remaining": "12000",
    }
    result, _ = run(lambda r: httpx2.Response(200, json=message_body(), headers=headers))
    assert isinstance(result, Completion)
    state = result.rate_limit
    assert state is not None
    assert state.remaining_requests == 0 and state.remaining_tokens == 12000
    assert state.reset_requests_s is not None and state.reset_requests_s > 0
