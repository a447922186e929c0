"""Several samples of one prompt in one request (the API's `n`), where the model honours it:
input tokens paid once, the budget counting samples and requests truthfully, and the cache and
the journal working per sample as before."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from promptopt.errors import BudgetExhausted, UsageError
from promptopt.llm.budget import BudgetCaps, BudgetLedger
from promptopt.llm.cache import NullCache, ResponseCache, ResponseStore
from promptopt.llm.client import CallResult, EndpointGate, ModelClient, RetryPolicy
from promptopt.llm.journal import ResponseJournal
from promptopt.llm.messages import ChatRequest, Completion, Message, Usage
from promptopt.llm.providers.openai import OpenAIProvider
from promptopt.task.modelspec import ModelSpec, Price
from promptopt.testing.fake_server import FakeOpenAIServer

META: tuple[Message, ...] = (
    {"role": "system", "content": "You write instructions for a classifier of film reviews."},
    {"role": "user", "content": "Propose a better instruction than: Classify the review."},
)
HOT = {"temperature": 1.0}
PRICE = Price(input=1.0, output=2.0)


@pytest.fixture
def server() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer() as srv:
        yield srv


def client_for(
    srv: FakeOpenAIServer,
    *,
    n_sampling: bool | None = True,
    store: ResponseStore | None = None,
    ledger: BudgetLedger | None = None,
    journal: ResponseJournal | None = None,
) -> ModelClient:
    spec = ModelSpec(
        model="openai:fake-model", base_url=srv.base_url, max_tokens=32, n_sampling=n_sampling
    )
    return ModelClient(
        "optimizer",
        spec,
        OpenAIProvider(spec, env={}),
        store=store or NullCache(),
        ledger=ledger or BudgetLedger(),
        gate=EndpointGate(4),
        price=PRICE,
        retry=RetryPolicy(max_retries=2, base_delay_s=0.001, max_delay_s=0.01),
        journal=journal,
    )


def answers(outcomes: list[CallResult | BaseException]) -> list[CallResult]:
    assert all(isinstance(o, CallResult) for o in outcomes), outcomes
    return [o for o in outcomes if isinstance(o, CallResult)]


async def test_samples_are_one_request_paying_the_input_once(server: FakeOpenAIServer) -> None:
    ledger = BudgetLedger()
    client = client_for(server, ledger=ledger)
    results = answers(await client.complete_samples(META, 4, overrides=HOT))
    await client.aclose()
    assert len(results) == 4
    assert server.requests_total == 1
    assert server.last_body is not None and server.last_body["n"] == 4
    # The budget counts four samples, the usage one request with its input once.
    assert ledger.calls == {"optimizer": 4}
    assert client.usage.requests == 1 and client.usage.attempts == 1
    prompt = sum(len(m["content"].split()) for m in META)
    assert client.usage.tokens.input == prompt
    assert client.usage.tokens.output == 4 * len(META[-1]["content"].split())
    assert client.usage.cost_usd == pytest.approx(
        (prompt * PRICE.input + client.usage.tokens.output * PRICE.output) / 1e6
    )
    assert ledger.spent_usd == pytest.approx(client.usage.cost_usd)
    assert ledger.reserved_usd == pytest.approx(0.0)
    assert sum(r.cost_usd for r in results) == pytest.approx(client.usage.cost_usd)


async def test_servers_other_than_openai_get_one_request_per_sample_unless_told(
    server: FakeOpenAIServer,
) -> None:
    client = client_for(server, n_sampling=None)
    answers(await client.complete_samples(META, 3, overrides=HOT))
    await client.aclose()
    assert server.requests_total == 3
    assert "n" not in (server.last_body or {})
    assert client.usage.requests == 3


def test_openai_itself_honours_n_by_default() -> None:
    spec = ModelSpec(model="openai:gpt-4o-mini")
    assert OpenAIProvider(spec, env={"OPENAI_API_KEY": "sk-test"}).samples_per_request
    off = ModelSpec(model="openai:gpt-4o-mini", n_sampling=False)
    assert not OpenAIProvider(off, env={"OPENAI_API_KEY": "sk-test"}).samples_per_request


def test_anthropic_refuses_n_sampling_with_a_clear_message() -> None:
    from promptopt.llm.providers.anthropic import AnthropicProvider

    spec = ModelSpec(model="anthropic:claude-haiku-4-5", n_sampling=True)
    with pytest.raises(UsageError, match="n_sampling"):
        AnthropicProvider(spec, env={"ANTHROPIC_API_KEY": "k"})


async def test_the_cache_answers_every_sample_afterwards(
    server: FakeOpenAIServer, tmp_path: Path
) -> None:
    store = ResponseCache(tmp_path / "cache")
    first = client_for(server, store=store)
    sent = answers(await first.complete_samples(META, 3, overrides=HOT))
    await first.aclose()
    again = client_for(server, store=store)
    cached = answers(await again.complete_samples(META, 3, overrides=HOT))
    await again.aclose()
    store.close()
    assert server.requests_total == 1
    assert [r.text for r in cached] == [r.text for r in sent]
    assert all(r.cached for r in cached) and again.usage.cache_hits == 3
    assert again.usage.requests == 0


async def test_only_the_samples_not_yet_answered_are_asked_for(
    server: FakeOpenAIServer, tmp_path: Path
) -> None:
    store = ResponseCache(tmp_path / "cache")
    client = client_for(server, store=store)
    await client.complete(META, sample_index=0, overrides=HOT)
    results = answers(await client.complete_samples(META, 3, overrides=HOT))
    await client.aclose()
    store.close()
    assert server.requests_total == 2
    assert server.last_body is not None and server.last_body["n"] == 2
    assert [r.cached for r in results] == [True, False, False]


async def test_a_resumed_run_sends_nothing_again_and_counts_the_same(
    server: FakeOpenAIServer, tmp_path: Path
) -> None:
    path = tmp_path / "responses.jsonl"
    journal = ResponseJournal(path)
    live = client_for(server, journal=journal)
    sent = answers(await live.complete_samples(META, 4, overrides=HOT))
    await live.aclose()
    journal.close()

    replay_journal = ResponseJournal(path)
    replayed = client_for(server, journal=replay_journal)  # no cache: the journal alone
    again = answers(await replayed.complete_samples(META, 4, overrides=HOT))
    await replayed.aclose()
    replay_journal.close()
    assert server.requests_total == 1
    assert [r.text for r in again] == [r.text for r in sent]
    assert replayed.usage.to_json() == live.usage.to_json()


async def test_samples_beyond_the_call_budget_end_with_budget_exhausted(
    server: FakeOpenAIServer,
) -> None:
    ledger = BudgetLedger(BudgetCaps(optimizer_calls=3))
    client = client_for(server, ledger=ledger)
    outcomes = await client.complete_samples(META, 5, overrides=HOT)
    await client.aclose()
    assert [type(o) for o in outcomes] == [CallResult] * 3 + [BudgetExhausted] * 2
    assert server.requests_total == 1
    assert server.last_body is not None and server.last_body["n"] == 3
    assert ledger.calls == {"optimizer": 3}


@dataclass
class IgnoresN:
    """A server that claims n but answers one sample per request (as Ollama does)."""

    calls: int = 0
    samples_per_request: bool = True

    @property
    def endpoint(self) -> str:
        return "fake://ignores-n"

    @property
    def model_id(self) -> str:
        return "openai:ignores-n"

    async def complete(self, request: ChatRequest) -> Completion:
        self.calls += 1
        return Completion(f"answer {self.calls}", Usage(input=50, output=5))

    async def aclose(self) -> None:
        return None


async def test_a_server_that_ignores_n_gets_the_missing_samples_one_by_one() -> None:
    provider = IgnoresN()
    spec = ModelSpec(model="openai:ignores-n", n_sampling=True)
    ledger = BudgetLedger()
    client = ModelClient(
        "optimizer",
        spec,
        provider,
        store=NullCache(),
        ledger=ledger,
        gate=EndpointGate(4),
        price=PRICE,
    )
    results = answers(await client.complete_samples(META, 3, overrides=HOT))
    assert len({r.text for r in results}) == 3
    assert provider.calls == 3 and client.usage.requests == 3
    assert ledger.calls == {"optimizer": 3}
    assert client.usage.tokens.input == 150


async def test_a_failed_request_fails_each_of_its_samples_once_in_the_counts(
    server: FakeOpenAIServer,
) -> None:
    from promptopt.llm.client import RequestFailed

    server.fault_rate, server.fault_statuses, server.max_faults_per_body = 1.0, (500,), 99
    client = client_for(server)
    outcomes: list[Any] = await client.complete_samples(META, 3, overrides=HOT)
    await client.aclose()
    assert all(isinstance(o, RequestFailed) for o in outcomes)
    assert server.requests_total == 3  # one request, tried three times
    assert client.usage.errors == 1 and client.usage.requests == 1
