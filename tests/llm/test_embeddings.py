"""EmbeddingClient: per-text cache, batching, retries, the uncapped "embedding" role, prices,
the run's journal; and the default embedding model of an optimizer."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from promptopt.errors import BudgetExhausted, FatalProviderError, TransientProviderError
from promptopt.llm.budget import BudgetCaps, BudgetLedger
from promptopt.llm.cache import NullCache, ResponseCache, ResponseStore
from promptopt.llm.client import EndpointGate, RequestFailed, RetryPolicy
from promptopt.llm.embeddings import EmbeddingClient, default_embedding_spec
from promptopt.llm.journal import ResponseJournal
from promptopt.llm.messages import Usage
from promptopt.llm.providers.base import Embeddings
from promptopt.task.modelspec import ModelSpec, Price
from tests.conftest import RecordingSleep


@dataclass
class FakeEmbedder:
    """Embeds a text as (its length, 1); can fail its first attempts."""

    failures: int = 0
    fatal: bool = False
    batches: list[list[str]] = field(default_factory=list)
    attempts: int = 0

    @property
    def endpoint(self) -> str:
        return "fake://embed"

    @property
    def model_id(self) -> str:
        return "scripted:embed"

    async def embed(self, texts: Sequence[str]) -> Embeddings:
        self.attempts += 1
        if self.fatal:
            raise FatalProviderError("no embeddings endpoint here")
        if self.failures:
            self.failures -= 1
            raise TransientProviderError("503 busy", status=503)
        self.batches.append(list(texts))
        return Embeddings(
            vectors=tuple((float(len(t)), 1.0) for t in texts),
            usage=Usage(input=1000 * len(texts)),
            model="embed-v1",
            latency_s=0.01,
        )

    async def aclose(self) -> None:
        return None


def client(
    embedder: FakeEmbedder,
    store: ResponseStore,
    *,
    ledger: BudgetLedger | None = None,
    price: Price | None = None,
    journal: ResponseJournal | None = None,
    batch_size: int = 64,
) -> EmbeddingClient:
    return EmbeddingClient(
        ModelSpec(model="scripted:embed"),
        embedder,
        store=store,
        ledger=ledger or BudgetLedger(),
        gate=EndpointGate(2),
        price=price,
        retry=RetryPolicy(max_retries=2, base_delay_s=0.01, max_delay_s=0.05),
        sleep=RecordingSleep(),
        journal=journal,
        batch_size=batch_size,
    )


def test_embeds_in_order_sending_each_new_text_once(tmp_path: Path) -> None:
    embedder = FakeEmbedder()
    c = client(embedder, ResponseCache(tmp_path / "cache"), batch_size=2)
    vectors = asyncio.run(c.embed(["aaa", "b", "aaa", "cc", "dddd"]))
    assert vectors == [(3.0, 1.0), (1.0, 1.0), (3.0, 1.0), (2.0, 1.0), (4.0, 1.0)]
    assert embedder.batches == [["aaa", "b"], ["cc", "dddd"]]
    assert c.usage.requests == 2 and c.usage.tokens.input == 4000
    assert c.reported_models == {"embed-v1"}


def test_a_second_run_on_the_same_cache_sends_nothing(tmp_path: Path) -> None:
    first = FakeEmbedder()
    cache = ResponseCache(tmp_path / "cache")
    asyncio.run(client(first, cache).embed(["one", "two"]))
    cache.close()
    second = FakeEmbedder()
    again = client(second, ResponseCache(tmp_path / "cache"))
    vectors = asyncio.run(again.embed(["two", "one", "three"]))
    assert vectors == [(3.0, 1.0), (3.0, 1.0), (5.0, 1.0)]
    assert second.batches == [["three"]]
    assert again.usage.cache_hits == 2 and again.usage.requests == 1


def test_embedding_calls_are_counted_on_their_own_role_without_a_cap() -> None:
    ledger = BudgetLedger(BudgetCaps(target_calls=1, optimizer_calls=1))
    c = client(FakeEmbedder(), NullCache(), ledger=ledger, batch_size=1)
    asyncio.run(c.embed(["a", "b", "c"]))
    assert ledger.calls == {"embedding": 3}
    assert ledger.remaining_calls("optimizer") == 1


def test_embedding_costs_count_against_the_cost_cap() -> None:
    price = Price(input=0.02, output=0.0)
    ledger = BudgetLedger(BudgetCaps(cost_usd=1.0))
    c = client(FakeEmbedder(), NullCache(), ledger=ledger, price=price)
    asyncio.run(c.embed(["a", "b"]))
    assert c.usage.cost_usd == pytest.approx(2000 * 0.02 / 1e6)
    assert ledger.spent_usd == pytest.approx(c.usage.cost_usd)
    assert c.usage.to_json()["cost_usd"] is not None
    tight = client(FakeEmbedder(), NullCache(), ledger=BudgetLedger(BudgetCaps(cost_usd=1e-9)))
    tight.price = Price(input=1000.0, output=0.0)
    with pytest.raises(BudgetExhausted):
        asyncio.run(tight.embed(["a long text that costs more than the cap"]))


def test_an_unknown_price_is_reported_as_unknown_once_the_model_answered() -> None:
    c = client(FakeEmbedder(), NullCache(), price=None)
    assert c.usage.to_json()["cost_usd"] == 0.0
    asyncio.run(c.embed(["a"]))
    assert c.usage.to_json()["cost_usd"] is None


def test_an_unpriced_model_that_never_answered_cost_nothing() -> None:
    c = client(FakeEmbedder(fatal=True), NullCache(), price=None)
    with pytest.raises(FatalProviderError):
        asyncio.run(c.embed(["a"]))
    assert c.usage.to_json()["cost_usd"] == 0.0


def test_transient_failures_are_retried_then_given_up() -> None:
    patient = FakeEmbedder(failures=2)
    c = client(patient, NullCache())
    assert asyncio.run(c.embed(["a"])) == [(1.0, 1.0)]
    assert patient.attempts == 3 and c.usage.attempts == 3 and c.usage.requests == 1
    hopeless = FakeEmbedder(failures=10)
    with pytest.raises(RequestFailed, match="gave up after 3 attempts"):
        asyncio.run(client(hopeless, NullCache()).embed(["a"]))


def test_a_fatal_failure_is_raised_at_once() -> None:
    embedder = FakeEmbedder(fatal=True)
    c = client(embedder, NullCache())
    with pytest.raises(FatalProviderError):
        asyncio.run(c.embed(["a"]))
    assert embedder.attempts == 1 and c.usage.errors == 1


def test_a_resumed_run_replays_its_journal_without_paying_again(tmp_path: Path) -> None:
    price = Price(input=0.02, output=0.0)
    path = tmp_path / "responses.jsonl"
    first = client(FakeEmbedder(), NullCache(), price=price, journal=ResponseJournal(path))
    asyncio.run(first.embed(["a", "b"]))
    assert first.journal is not None
    first.journal.close()
    embedder = FakeEmbedder()
    ledger = BudgetLedger()
    journal = ResponseJournal(path)
    resumed = client(embedder, NullCache(), ledger=ledger, price=price, journal=journal)
    try:
        assert asyncio.run(resumed.embed(["a", "b"])) == [(1.0, 1.0), (1.0, 1.0)]
    finally:
        journal.close()
    assert embedder.batches == []
    assert resumed.usage.requests == 1
    assert resumed.usage.cost_usd == pytest.approx(first.usage.cost_usd)
    assert ledger.spent_usd == pytest.approx(first.usage.cost_usd)


@pytest.mark.parametrize(
    ("optimizer", "expected"),
    [
        ({"model": "openai:gpt-4o", "temperature": 0.7}, "openai:text-embedding-3-small"),
        (
            {"model": "openai:qwen2.5", "base_url": "http://127.0.0.1:8080/v1"},
            "openai:qwen2.5",
        ),
        ({"model": "ollama:llama3", "max_tokens": 200}, "ollama:llama3"),
        ({"model": "local:optimizer", "params": {"n_ctx": 2048}}, "local:optimizer"),
        ({"model": "anthropic:claude-haiku-4-5"}, None),
        ({"model": "scripted:opt.py:reply"}, None),
    ],
)
def test_the_default_embedding_model_is_the_optimizers_endpoint(
    optimizer: dict[str, object], expected: str | None
) -> None:
    spec = default_embedding_spec(ModelSpec.model_validate(optimizer))
    if expected is None:
        assert spec is None
        return
    assert spec is not None
    assert spec.model == expected
    assert spec.temperature is None and spec.max_tokens is None and spec.price is None
    assert spec.base_url == optimizer.get("base_url")
    if expected.startswith("local:"):
        assert spec.params == {"n_ctx": 2048}  # how to load it still applies


def test_no_optimizer_means_no_default_embedding_model() -> None:
    assert default_embedding_spec(None) is None
