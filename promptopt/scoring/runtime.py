"""Assembles what a command needs to call models: cache, budget, endpoint gates, one client per
role, the metric and the scorer; and closes them again."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING

from promptopt.errors import UsageError
from promptopt.llm.batch import (
    BatchBook,
    Batcher,
    BatchPolicy,
    ProgressFn,
    as_batch_provider,
    batch_price,
)
from promptopt.llm.budget import BudgetCaps, BudgetLedger
from promptopt.llm.cache import NullCache, ResponseCache, ResponseStore, default_cache_dir
from promptopt.llm.client import EndpointGate, ModelClient, RetryPolicy
from promptopt.llm.embeddings import EmbeddingClient, default_embedding_spec
from promptopt.llm.error_budget import ErrorLimits
from promptopt.llm.journal import ResponseJournal
from promptopt.llm.messages import Message
from promptopt.llm.pricing import (
    library_batch_price,
    price_for,
    unknown_cost_note,
    unknown_price_message,
)
from promptopt.llm.providers.base import Embedder, Provider
from promptopt.llm.providers.registry import build_embedder, build_provider
from promptopt.llm.ratelimit import MINUTE_S, RateLimiter, RateLimits
from promptopt.scoring.metrics import AsyncMetric, Metric, build_metric, checked_metric
from promptopt.scoring.scorer import Scorer
from promptopt.task.loader import LoadedTask
from promptopt.task.modelspec import ModelSpec, Price

if TYPE_CHECKING:
    import httpx2

ROLES = ("target", "optimizer", "judge")

log = logging.getLogger("promptopt.batch")


@dataclass(frozen=True)
class RuntimeOptions:
    """Options shared by every command that calls models."""

    concurrency: int = 8
    cache_dir: Path | None = None
    no_cache: bool = False
    seed: int = 0
    caps: BudgetCaps = field(default_factory=BudgetCaps)
    retry: RetryPolicy | None = None
    """None: the task's `errors` section decides (max_retries, max_backoff_s)."""
    errors: ErrorLimits | None = None
    """None: the task's `errors` section decides."""
    batch: bool = False
    """Score through the providers' batch services (--batch); a model's `batch: true` in the
    task file asks for it too."""
    batch_policy: BatchPolicy | None = None
    """How batches are gathered and polled; None: the defaults."""
    on_batch_progress: ProgressFn | None = None
    """Told the request counts of the batches being waited for, after every poll."""
    timeout_s: float | None = None
    """Seconds before one request times out, for every model (None: each model's timeout_s)."""
    max_retries: int | None = None
    """Retries of a request that failed for a transient reason (None: the retry policy's)."""
    rate_period_s: float = MINUTE_S
    """The period of the models' rpm and tpm: a minute (tests shrink it)."""

    @classmethod
    def for_task(
        cls,
        task: LoadedTask,
        *,
        concurrency: int = 8,
        cache_dir: Path | None = None,
        no_cache: bool = False,
        seed: int | None = None,
        max_cost: float | None = None,
        timeout_s: float | None = None,
        max_retries: int | None = None,
    ) -> RuntimeOptions:
        """The options of a command that scores on `task`: the seed defaults to the task's and
        `max_cost` is the only cap (a run sets its own caps)."""
        return cls(
            concurrency=concurrency,
            cache_dir=cache_dir,
            no_cache=no_cache,
            seed=task.spec.search.seed if seed is None else seed,
            caps=BudgetCaps(cost_usd=max_cost),
            timeout_s=timeout_s,
            max_retries=max_retries,
        )


def error_limits(task: LoadedTask) -> ErrorLimits:
    """The task's error budget (its `errors` section)."""
    spec = task.spec.errors
    return ErrorLimits(spec.max_rate, spec.min_requests, spec.max_consecutive)


def retry_policy(task: LoadedTask) -> RetryPolicy:
    """The task's retries (its `errors` section)."""
    spec = task.spec.errors
    return RetryPolicy(
        max_retries=spec.max_retries,
        base_delay_s=min(RetryPolicy.base_delay_s, spec.max_backoff_s),
        max_delay_s=spec.max_backoff_s,
    )


def model_for_role(task: LoadedTask, role: str) -> ModelSpec | None:
    """The model a role uses; the judge falls back to the optimizer."""
    models = task.spec.models
    if role == "judge":
        return models.judge or models.optimizer
    spec: ModelSpec | None = getattr(models, role)
    return spec


def embedding_model(task: LoadedTask) -> ModelSpec | None:
    """The model that embeds: models.embedding, else the optimizer's endpoint when it has
    embeddings (`default_embedding_spec`), else None."""
    return task.spec.models.embedding or default_embedding_spec(task.spec.models.optimizer)


def role_price(task: LoadedTask, role: str, spec: ModelSpec, caps: BudgetCaps) -> Price | None:
    """The price of a role's model (None: unknown); UsageError, with the task-file lines that
    price it, when it is unknown and a cost cap must be kept."""
    price = price_for(spec, task.spec.prices or {})
    if price is None and caps.cost_usd is not None:
        raise UsageError(unknown_price_message(task.path, role, spec, caps.cost_usd))
    return price


def priced_roles(task: LoadedTask, caps: BudgetCaps) -> dict[str, Price | None]:
    """The price of the target, the optimizer and (when the task names one) the judge model.

    Checked before a command writes or calls anything, so `run --dry-run` and `run` refuse an
    unpriced model under a cost cap alike.
    """
    roles = ("target", "optimizer", "judge") if task.spec.models.judge else ("target", "optimizer")
    prices: dict[str, Price | None] = {}
    for role in roles:
        spec = model_for_role(task, role)
        if spec is not None:
            prices[role] = role_price(task, role, spec, caps)
    return prices


def unknown_cost_notes(task: LoadedTask, prices: Mapping[str, Price | None]) -> tuple[str, ...]:
    """One note per model whose price is unknown (its cost is reported as unknown)."""
    notes: list[str] = []
    for role, price in prices.items():
        spec = model_for_role(task, role)
        if price is None and spec is not None:
            note = unknown_cost_note(spec)
            if note not in notes:
                notes.append(note)
    return tuple(notes)


class Runtime:
    """Everything needed to call models for one command. Use as an async context manager."""

    def __init__(
        self,
        task: LoadedTask,
        options: RuntimeOptions,
        *,
        http_client: httpx2.AsyncClient | None = None,
        env: Mapping[str, str] | None = None,
        store: ResponseStore | None = None,
        journal: ResponseJournal | None = None,
        stop: asyncio.Event | None = None,
        providers: Mapping[str, Provider] | None = None,
        batch_dir: Path | None = None,
        embedder: Embedder | None = None,
    ) -> None:
        """`batch_dir`: where submitted batches are recorded besides the response cache
        directory's `batches/` (a run folder's `batches/`)."""
        self.task = task
        self.batch_dir = batch_dir
        self.options = options
        self.env = dict(os.environ if env is None else env)
        self.http_client = http_client
        """A client lent to every provider (a test's fake transport); None: each provider keeps
        its own pool, the lean OpenAI-compatible path an aiohttp one."""
        self.journal = journal
        self.stop = stop
        self._providers = dict(providers or {})
        self.ledger = BudgetLedger(options.caps)
        if store is not None:
            self.store = store
        elif options.no_cache:
            self.store = NullCache()
        else:
            self.store = ResponseCache(options.cache_dir or default_cache_dir(self.env))
        self.limits = options.errors or error_limits(task)
        self.retry = options.retry or retry_policy(task)
        if options.max_retries is not None:
            self.retry = replace(self.retry, max_retries=options.max_retries)
        self.gates: dict[str, EndpointGate] = {}
        self.rate_limiters: dict[tuple[str, str], RateLimiter] = {}
        self.clients: dict[str, ModelClient] = {}
        self._scorer: Scorer | None = None
        self._embedder = embedder
        self.embedding: EmbeddingClient | None = None
        """The embedding model's client once `embedding_client` built it."""

    def client(self, role: str) -> ModelClient:
        """The client for a role, built on first use."""
        if role in self.clients:
            return self.clients[role]
        spec = model_for_role(self.task, role)
        if spec is None:
            raise UsageError(
                f"{self.task.path}: models.{role}: no model is set; add one to the task file "
                f"or pass --{role} provider:name"
            )
        price = role_price(self.task, role, spec, self.options.caps)
        if self.options.timeout_s is not None:
            # Not part of the cache key (only sampling parameters are): a longer wait does not
            # change the answer.
            spec = spec.model_copy(update={"timeout_s": self.options.timeout_s})
        provider = self._providers.get(role) or build_provider(
            spec, base_dir=self.task.path.parent, http_client=self.http_client, env=self.env
        )
        gate = self._gate(provider.endpoint)
        client = ModelClient(
            role,
            spec,
            provider,
            store=self.store,
            ledger=self.ledger,
            gate=gate,
            price=price,
            retry=self.retry,
            seed=self.options.seed,
            journal=self.journal,
            stop=self.stop,
            limits=self.limits,
            rate=self._rate_limiter(spec, provider),
        )
        self.clients[role] = client
        return client

    def _gate(self, endpoint: str) -> EndpointGate:
        """The concurrency gate of a server, shared by every model called there (chat and
        embeddings alike)."""
        gate = self.gates.get(endpoint)
        if gate is None:
            gate = self.gates[endpoint] = EndpointGate(self.options.concurrency)
        return gate

    def _rate_limiter(self, spec: ModelSpec, provider: Provider) -> RateLimiter | None:
        """The model's rpm/tpm buckets, shared by the roles that use the same model at the
        same endpoint (an account's limits are per model)."""
        if spec.rpm is None and spec.tpm is None:
            return None
        key = (provider.endpoint, spec.name)
        limiter = self.rate_limiters.get(key)
        if limiter is None:
            limits = RateLimits(rpm=spec.rpm, tpm=spec.tpm, period_s=self.options.rate_period_s)
            limiter = self.rate_limiters[key] = RateLimiter(limits)
        return limiter

    def embedding_client(self) -> EmbeddingClient | None:
        """The embedding model's client, built on first use; None when the task has no
        embedding model (`embedding_model`).

        Raises UsageError when the model cannot embed or is unpriced under a cost cap, and
        FatalProviderError when it cannot be reached as configured (a missing key).
        """
        if self.embedding is not None:
            return self.embedding
        spec = embedding_model(self.task)
        if spec is None:
            return None
        price = role_price(self.task, "embedding", spec, self.options.caps)
        embedder = self._embedder or build_embedder(
            spec, base_dir=self.task.path.parent, http_client=self.http_client, env=self.env
        )
        gate = self._gate(embedder.endpoint)
        self.embedding = EmbeddingClient(
            spec,
            embedder,
            store=self.store,
            ledger=self.ledger,
            gate=gate,
            price=price,
            retry=self.retry,
            seed=self.options.seed,
            journal=self.journal,
            stop=self.stop,
        )
        return self.embedding

    async def embed(self, texts: Sequence[str]) -> list[tuple[float, ...]] | None:
        """The embedding model's vectors of `texts`, or None when the task has none: the
        search's channel to embeddings."""
        client = self.embedding_client()
        return None if client is None else await client.embed(texts)

    async def judge(self, system: str, user: str) -> str:
        """Ask the judge model (system, user) and return its reply: the judge metric's and the
        pairwise judge's channel."""
        messages: tuple[Message, ...] = (
            {"role": "system", "content": system},
            {"role": "user", "content": user},
        )
        return (await self.client("judge").complete(messages)).text

    @property
    def scorer(self) -> Scorer:
        """The scorer of the task's target model and metric."""
        if self._scorer is None:
            spec = self.task.spec.metric
            metric: Metric | AsyncMetric | None = None
            if self.task.metric_function is not None:
                reference = spec.function if spec is not None else None
                metric = checked_metric(self.task.metric_function, reference or "")
            elif spec is not None:
                metric = build_metric(spec, base_dir=self.task.path.parent, judge=self.judge)
            self._scorer = Scorer(
                self.client("target"),
                metric,
                self.task.render_input,
                limits=self.limits,
                metric_name=self._metric_name(),
                batcher=self.batcher("target"),
            )
        return self._scorer

    def batcher(self, role: str) -> Batcher | None:
        """The batches of a role's requests, when --batch or the model's `batch: true` asks
        for them and its provider has a batch service; None otherwise."""
        client = self.client(role)
        if not (self.options.batch or client.spec.batch):
            return None
        provider = as_batch_provider(client.provider)
        if provider is None:
            log.warning(
                "%s has no batch service (only openai and anthropic models have one); its "
                "requests are sent one by one",
                client.spec.model,
            )
            return None
        shared = (self.options.cache_dir or default_cache_dir(self.env)) / "batches"
        price = None
        if client.price is not None:
            price = batch_price(
                client.price, library_batch_price(client.spec, self.task.spec.prices or {})
            )
        return Batcher(
            client,
            provider,
            BatchBook(shared, self.batch_dir),
            price=price,
            policy=self.options.batch_policy,
            on_progress=self.options.on_batch_progress,
        )

    def _metric_name(self) -> str:
        spec = self.task.spec.metric
        if spec is None:
            return "no metric"
        if spec.type == "python" and spec.function:
            return f"metric python {spec.function}"
        return f"metric {spec.type}"

    async def aclose(self) -> None:
        """Close providers and the cache (everything already answered stays cached); the
        first error any of them raised is raised once all are closed."""
        first: Exception | None = None
        try:
            closers: list[Callable[[], Awaitable[None]]] = [
                client.aclose for client in self.clients.values()
            ]
            if self.embedding is not None:
                closers.append(self.embedding.aclose)
            for close in closers:
                try:
                    await close()
                except Exception as exc:
                    first = first or exc
            if first is not None:
                raise first
        finally:
            self.store.close()
            if self.journal is not None:
                self.journal.close()

    async def __aenter__(self) -> Runtime:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()


async def check_models(task: LoadedTask, options: RuntimeOptions) -> None:
    """Build the target and optimizer providers once, so that a missing key, an unknown
    provider or an unpriced model under a cost cap is reported before anything is written."""
    runtime = Runtime(task, options, store=NullCache())
    try:
        for role in ("target", "optimizer"):
            runtime.client(role)
    finally:
        await runtime.aclose()
