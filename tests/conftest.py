"""Shared fixtures: a fake provider that counts calls, and model clients around it."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from promptopt.errors import ExampleRejected, TransientProviderError
from promptopt.llm.budget import BudgetCaps, BudgetLedger
from promptopt.llm.cache import ResponseCache
from promptopt.llm.client import EndpointGate, ModelClient, RetryPolicy
from promptopt.llm.messages import ChatRequest, Completion, Usage
from promptopt.task.modelspec import ModelSpec, Price


@dataclass
class CountingProvider:
    """A provider whose answer is a function of the request; it counts attempts, tracks peak
    concurrency, and can fail the first attempts of chosen requests."""

    answer: Callable[[ChatRequest], str] = lambda r: r.messages[-1]["content"].upper()
    delay_s: float = 0.0
    failures: dict[str, int] = field(default_factory=dict)
    retry_after: float | None = None
    failure_kind: str | None = None
    rejects: set[str] = field(default_factory=set)
    """Inputs the endpoint refuses for their content (a 400 about that example)."""
    calls: int = 0
    in_flight: int = 0
    max_in_flight: int = 0
    seen: list[str] = field(default_factory=list)

    @property
    def endpoint(self) -> str:
        return "fake://counting"

    @property
    def model_id(self) -> str:
        return "scripted:counting"

    async def complete(self, request: ChatRequest) -> Completion:
        self.calls += 1
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if self.delay_s:
                await asyncio.sleep(self.delay_s)
            user = request.messages[-1]["content"]
            self.seen.append(user)
            if user in self.rejects:
                raise ExampleRejected("context length exceeded", status=400)
            left = self.failures.get(user, 0)
            if left:
                self.failures[user] = left - 1
                raise TransientProviderError(
                    "429 slow down", self.retry_after, status=429, kind=self.failure_kind
                )
            text = self.answer(request)
            return Completion(text, Usage(input=10, output=2), model="counting-v1", latency_s=0.01)
        finally:
            self.in_flight -= 1

    async def aclose(self) -> None:
        return None


class RecordingSleep:
    """An instant `sleep` that remembers the delays asked for."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)
        await asyncio.sleep(0)


def make_client(
    provider: CountingProvider,
    tmp_path: Path,
    *,
    caps: BudgetCaps | None = None,
    concurrency: int = 4,
    price: Price | None = None,
    sleep: RecordingSleep | None = None,
    max_retries: int = 3,
    role: str = "target",
) -> ModelClient:
    """A target-model client with an on-disk cache in tmp_path."""
    return ModelClient(
        role,
        ModelSpec(model="scripted:counting", temperature=0, max_tokens=8),
        provider,
        store=ResponseCache(tmp_path / "cache"),
        ledger=BudgetLedger(caps or BudgetCaps()),
        gate=EndpointGate(concurrency),
        price=price,
        retry=RetryPolicy(max_retries=max_retries, base_delay_s=0.01, max_delay_s=0.05),
        sleep=sleep or RecordingSleep(),
    )


@pytest.fixture
def provider() -> CountingProvider:
    return CountingProvider()
