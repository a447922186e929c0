"""The scorer's retries around the real SDK providers, on a fake HTTP layer."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import httpx2
import pytest

from promptopt.errors import FatalProviderError
from promptopt.llm.budget import BudgetLedger
from promptopt.llm.cache import NullCache
from promptopt.llm.client import EndpointGate, ModelClient, RetryPolicy
from promptopt.llm.providers.anthropic import AnthropicProvider
from promptopt.llm.providers.base import Provider
from promptopt.llm.providers.openai import OpenAIProvider
from promptopt.scoring.scorer import build_messages
from promptopt.task.modelspec import ModelSpec
from tests.conftest import RecordingSleep
from tests.support.anthropic import message_body

OPENAI_OK = {
    "id": "c1",
    "object": "chat.completion",
    "created": 0,
    "model": "gpt-4o-mini-2024-07-18",
    "choices": [
        {"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "ok"}}
    ],
    "usage": {"prompt_tokens": 12, "completion_tokens": 1, "total_tokens": 13},
}


def sequence(*responses: httpx2.Response) -> Callable[[httpx2.Request], httpx2.Response]:
    queue = list(responses)

    def handler(request: httpx2.Request) -> httpx2.Response:
        return queue.pop(0)

    return handler


def client_for(provider: Provider, spec: ModelSpec, sleep: RecordingSleep) -> ModelClient:
    return ModelClient(
        "target",
        spec,
        provider,
        store=NullCache(),
        ledger=BudgetLedger(),
        gate=EndpointGate(2),
        price=None,
        retry=RetryPolicy(max_retries=3),
        sleep=sleep,
    )


def limited(retry_after: str) -> httpx2.Response:
    body = {"error": {"message": "Rate limit reached", "type": "requests", "code": None}}
    return httpx2.Response(429, json=body, headers={"retry-after": retry_after})


@pytest.mark.parametrize("provider_name", ["openai", "anthropic"])
async def test_429_then_success_waits_what_retry_after_says(
    provider_name: str, tmp_path: Path
) -> None:
    ok = (
        httpx2.Response(200, json=OPENAI_OK)
        if provider_name == "openai"
        else httpx2.Response(200, json=message_body())
    )
    handler = sequence(limited("0.75"), limited("2"), ok)
    spec = ModelSpec(
        model="openai:gpt-4o-mini" if provider_name == "openai" else "anthropic:claude-haiku-4-5"
    )
    env = {"OPENAI_API_KEY": "sk-test-123456789", "ANTHROPIC_API_KEY": "sk-ant-test-123456789"}
    sleep = RecordingSleep()
    async with httpx2.AsyncClient(transport=httpx2.MockTransport(handler)) as http:
        provider: Provider = (
            OpenAIProvider(spec, http_client=http, env=env)
            if provider_name == "openai"
            else AnthropicProvider(spec, http_client=http, env=env)
        )
        client = client_for(provider, spec, sleep)
        result = await client.complete(build_messages("Be brief.", "hi"))
    assert result.text
    assert sleep.delays == [0.75, 2.0]
    assert client.usage.attempts == 3 and client.usage.requests == 1


async def test_insufficient_quota_stops_without_retrying(tmp_path: Path) -> None:
    quota = httpx2.Response(
        429,
        json={
            "error": {
                "message": "You exceeded your current quota",
                "type": "insufficient_quota",
                "code": "insufficient_quota",
            }
        },
        headers={"retry-after": "1"},
    )
    sleep = RecordingSleep()
    spec = ModelSpec(model="openai:gpt-4o-mini")
    async with httpx2.AsyncClient(transport=httpx2.MockTransport(sequence(quota))) as http:
        provider = OpenAIProvider(spec, http_client=http, env={"OPENAI_API_KEY": "sk-x-123456789"})
        client = client_for(provider, spec, sleep)
        with pytest.raises(FatalProviderError, match="quota"):
            await client.complete(build_messages("Be brief.", "hi"))
    assert sleep.delays == [] and client.usage.attempts == 1
