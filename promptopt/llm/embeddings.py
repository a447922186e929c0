"""Embeds texts through an embedding model: cached per text, budgeted, retried, counted.

The embedding role's counterpart of `ModelClient`: the same response cache (keyed on the model
and the text, so a prompt is embedded once across runs), the run's journal (a resumed run does
not pay again), the budget ledger (dollars count; calls are counted under their own role
"embedding" but never capped), the endpoint's concurrency gate and the retry policy.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from promptopt.errors import TransientProviderError
from promptopt.llm.budget import EMBEDDING, BudgetLedger
from promptopt.llm.cache import CACHE_KEY_VERSION, ResponseStore
from promptopt.llm.client import EndpointGate, RequestFailed, RetryPolicy, RoleUsage, RunStopped
from promptopt.llm.journal import ResponseJournal
from promptopt.llm.pricing import cost_usd, max_cost_usd
from promptopt.llm.providers.base import Embedder, Embeddings
from promptopt.llm.providers.endpoints import is_openai_host, resolve_base_url
from promptopt.task.modelspec import ModelSpec, Price
from promptopt.util.hashing import content_hash

Vector = tuple[float, ...]

OPENAI_EMBEDDING_MODEL = "text-embedding-3-small"
"""What embeds for an optimizer on OpenAI's own API: its chat models have no embeddings."""

BATCH_SIZE = 64
"""Texts per embeddings request: far below every server's limit (OpenAI's is 2048 inputs)."""


def embedding_key(*, provider: str, endpoint: str, model: str, text: str) -> str:
    """The cache key of one text's embedding: what changes the vector, and nothing else."""
    return content_hash(
        {
            "v": CACHE_KEY_VERSION,
            "kind": "embedding",
            "provider": provider,
            "endpoint": endpoint,
            "model": model,
            "text": text,
        }
    )


def default_embedding_spec(optimizer: ModelSpec | None) -> ModelSpec | None:
    """The embedding model a task gets when it names none: the optimizer's own endpoint.

    On OpenAI's API that is text-embedding-3-small (same key); on an OpenAI-compatible server
    (Ollama, llama.cpp, vLLM) or an embedded `local:` model it is the optimizer's model itself,
    which such servers embed with. Anthropic has no embeddings endpoint, and a scripted chat
    script is no embedding function: None for both.
    """
    if optimizer is None or optimizer.provider not in ("openai", "ollama", "local"):
        return None
    # Sampling settings and the chat price mean nothing to an embeddings request.
    update: dict[str, Any] = {"temperature": None, "max_tokens": None, "price": None}
    if optimizer.provider == "openai" and is_openai_host(resolve_base_url(optimizer)):
        update["model"] = f"openai:{OPENAI_EMBEDDING_MODEL}"
        update["params"] = {}
    return optimizer.model_copy(update=update)


def _vector_of(value: dict[str, Any]) -> Vector | None:
    """The vector a cache or journal value holds, or None when it holds none (a damaged row)."""
    raw = value.get("vector")
    if not isinstance(raw, list) or not raw:
        return None
    try:
        return tuple(float(x) for x in raw)
    except (TypeError, ValueError):
        return None


class EmbeddingClient:
    """The embedding model of a run."""

    role = EMBEDDING

    def __init__(
        self,
        spec: ModelSpec,
        embedder: Embedder,
        *,
        store: ResponseStore,
        ledger: BudgetLedger,
        gate: EndpointGate,
        price: Price | None,
        retry: RetryPolicy | None = None,
        seed: int = 0,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        journal: ResponseJournal | None = None,
        stop: asyncio.Event | None = None,
        batch_size: int = BATCH_SIZE,
    ) -> None:
        self.spec = spec
        self.embedder = embedder
        self.store = store
        self.ledger = ledger
        self.gate = gate
        self.price = price
        self.retry = retry or RetryPolicy()
        self.journal = journal
        self.stop = stop
        self.batch_size = batch_size
        # An unpriced model's cost is unknown once it answered; one that never did (it has no
        # embeddings, say, and the search fell back) cost nothing, which is known.
        self.usage = RoleUsage()
        self.reported_models: set[str] = set()
        self._rng = random.Random(seed)
        self._sleep = sleep

    @property
    def model_id(self) -> str:
        """The "provider:name" of the embedding model."""
        return self.spec.model

    def key_for(self, text: str) -> str:
        """The cache key of `text`'s embedding."""
        return embedding_key(
            provider=self.spec.provider,
            endpoint=self.embedder.endpoint,
            model=self.spec.name,
            text=text,
        )

    async def embed(self, texts: Sequence[str]) -> list[Vector]:
        """One vector per text, in order: from the run's journal, the cache, or the model (the
        texts not known yet, in batches).

        Raises RunStopped after a stop was requested, BudgetExhausted when the cost cap would
        be passed, RequestFailed when retries are used up, and FatalProviderError when the
        endpoint refuses (no such model, no embeddings endpoint, a bad key).
        """
        found: dict[str, Vector] = {}
        missing: list[str] = []
        for text in dict.fromkeys(texts):
            vector = self._known(text)
            if vector is None:
                missing.append(text)
            else:
                found[text] = vector
        for start in range(0, len(missing), self.batch_size):
            batch = missing[start : start + self.batch_size]
            found.update(zip(batch, await self._send(batch), strict=True))
        return [found[text] for text in texts]

    def _known(self, text: str) -> Vector | None:
        key = self.key_for(text)
        if self.journal is not None and (entry := self.journal.take(key)) is not None:
            vector = _vector_of(entry.value)
            if vector is not None:
                # Accounted as the interrupted run did: what it paid still counts.
                self.ledger.settle(self.ledger.reserve(self.role, entry.cost_usd), entry.cost_usd)
                if entry.paid:
                    self.usage.cost_known = self.price is not None
                    self.usage.cost_usd += entry.cost_usd
                    self.usage.requests += int(bool(entry.value.get("first")))
                else:
                    self.usage.cache_hits += 1
                return vector
        cached = self.store.get(key)
        vector = None if cached is None else _vector_of(cached)
        if vector is not None:
            self.usage.cache_hits += 1
            if self.journal is not None:
                self.journal.record(key, {"vector": list(vector)}, paid=False, cost_usd=0.0)
        return vector

    async def _send(self, batch: list[str]) -> tuple[Vector, ...]:
        if self.stop is not None and self.stop.is_set():
            raise RunStopped("stopped on request")
        # Byte-level tokenizers never use more tokens than the text has UTF-8 bytes.
        worst = max_cost_usd(sum(len(t.encode("utf-8")) for t in batch), 0, self.price)
        reservation = self.ledger.reserve(self.role, worst)
        self.usage.requests += 1

        async def attempt() -> Embeddings:
            self.usage.attempts += 1
            return await self.embedder.embed(batch)

        retries = 0
        try:
            while True:
                try:
                    answer = await self.gate.run(attempt, self.stop)
                    break
                except TransientProviderError as exc:
                    retries += 1
                    if retries > self.retry.max_retries:
                        self.usage.errors += 1
                        raise RequestFailed(
                            f"{self.spec.model}: gave up after {retries} attempts: {exc}",
                            kind=exc.kind,
                        ) from exc
                    delay = self.retry.delay(retries, exc.retry_after, self._rng)
                    if exc.status == 429:
                        self.gate.cool_down(delay)
                    await self._sleep(delay)
        except (RunStopped, RequestFailed):
            self.ledger.release(reservation)
            raise
        except BaseException:
            self.ledger.release(reservation)
            self.usage.errors += 1
            raise
        cost = cost_usd(answer.usage, self.price)
        self.ledger.settle(reservation, cost)
        self.usage.cost_known = self.usage.cost_known and self.price is not None
        self.usage.tokens = self.usage.tokens + answer.usage
        self.usage.cost_usd += cost
        self.usage.latency_s += answer.latency_s
        if answer.model:
            self.reported_models.add(answer.model)
        for i, (text, vector) in enumerate(zip(batch, answer.vectors, strict=True)):
            key = self.key_for(text)
            value: dict[str, Any] = {"vector": list(vector), "model": answer.model}
            if self.journal is not None:
                # The batch's cost on its first text, so that a replay counts it once.
                paid = cost if i == 0 else 0.0
                self.journal.record(key, {**value, "first": i == 0}, paid=True, cost_usd=paid)
            self.store.set(key, value)
        return answer.vectors

    async def aclose(self) -> None:
        """Release the embedding model's connections (or its loaded weights)."""
        await self.embedder.aclose()
