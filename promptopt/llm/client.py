"""Calls models fast and safely.

One `ModelClient` per role (target, optimizer, judge) owns, in this order: the response cache,
single-flight of identical in-flight requests, the budget reservation, the per-endpoint
concurrency gate and the retries. It is the only layer that retries, and it counts every attempt.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

from promptopt.errors import ExampleRejected, PromptoptError, TransientProviderError
from promptopt.llm.budget import BudgetLedger, Reservation
from promptopt.llm.cache import ResponseStore, request_key
from promptopt.llm.error_budget import ErrorBudget, ErrorLimits, TooManyErrors
from promptopt.llm.journal import JournalEntry, ResponseJournal
from promptopt.llm.messages import (
    FINISH_LENGTH,
    ChatRequest,
    Completion,
    Message,
    Usage,
    normalize_finish_reason,
)
from promptopt.llm.pricing import cost_usd, request_max_cost_usd
from promptopt.llm.providers.base import Provider
from promptopt.task.modelspec import ModelSpec, Price

_T = TypeVar("_T")


class RequestFailed(PromptoptError):
    """A request still failed after all of its retries, or was refused for its content
    (`permanent`); the example is scored 0 and counted."""

    def __init__(self, message: str, *, kind: str = "failed", permanent: bool = False) -> None:
        super().__init__(message)
        self.kind = kind
        self.permanent = permanent


class RunStopped(PromptoptError):
    """A stop was requested (Ctrl-C): no new request is sent; those in flight finish."""

    exit_code = 130


def _value_of(result: CallResult | Completion) -> dict[str, Any]:
    """The cache and journal value of an answer."""
    return {
        "text": result.text,
        "usage": result.usage.to_dict(),
        "model": result.model,
        "latency_s": result.latency_s,
        "finish_reason": result.finish_reason,
    }


def _result_of(value: dict[str, Any], *, cached: bool, cost: float) -> CallResult:
    return CallResult(
        text=str(value["text"]),
        usage=Usage.from_dict(value.get("usage", {})),
        model=str(value.get("model", "")),
        latency_s=float(value.get("latency_s", 0.0)),
        cached=cached,
        cost_usd=cost,
        # Entries written before finish_reason was recorded have none: unknown, not cut.
        finish_reason=normalize_finish_reason(value.get("finish_reason")),
    )


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with full jitter; a server's Retry-After wins when it gives one."""

    max_retries: int = 6
    base_delay_s: float = 0.5
    max_delay_s: float = 30.0

    def delay(self, retry: int, retry_after: float | None, rng: random.Random) -> float:
        """Seconds to wait before retry number `retry` (1-based)."""
        if retry_after is not None:
            return min(max(retry_after, 0.0), self.max_delay_s)
        return rng.uniform(0, min(self.max_delay_s, self.base_delay_s * 2 ** (retry - 1)))


@dataclass
class RoleUsage:
    """What one role's calls cost. `requests` counts requests sent (not retries), `attempts`
    every try including retries, `cache_hits` answers served from the cache or shared with an
    identical request already in flight."""

    requests: int = 0
    attempts: int = 0
    cache_hits: int = 0
    errors: int = 0
    tokens: Usage = field(default_factory=Usage)
    cost_usd: float = 0.0
    latency_s: float = 0.0
    cost_known: bool = True
    """False for a model whose price is unknown: its cost is then reported as null, not 0."""

    def to_json(self) -> dict[str, Any]:
        """The usage object of the `eval --json` and `run --json` contracts, plus a few fields;
        `cost_usd` is null when the model's price is unknown."""
        return {
            "requests": self.requests,
            "cache_hits": self.cache_hits,
            "input_tokens": self.tokens.input + self.tokens.cache_read + self.tokens.cache_write,
            "output_tokens": self.tokens.output,
            "cost_usd": round(self.cost_usd, 8) if self.cost_known else None,
            "attempts": self.attempts,
            "errors": self.errors,
            "cache_read_tokens": self.tokens.cache_read,
            "cache_write_tokens": self.tokens.cache_write,
            "latency_s": round(self.latency_s, 4),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RoleUsage:
        """Inverse of `to_json` (used when resuming a run)."""
        cache_read = int(data.get("cache_read_tokens", 0))
        cache_write = int(data.get("cache_write_tokens", 0))
        tokens = Usage(
            input=int(data.get("input_tokens", 0)) - cache_read - cache_write,
            cache_read=cache_read,
            cache_write=cache_write,
            output=int(data.get("output_tokens", 0)),
        )
        return cls(
            requests=int(data.get("requests", 0)),
            attempts=int(data.get("attempts", 0)),
            cache_hits=int(data.get("cache_hits", 0)),
            errors=int(data.get("errors", 0)),
            tokens=tokens,
            cost_usd=float(data.get("cost_usd") or 0.0),
            latency_s=float(data.get("latency_s", 0.0)),
            cost_known=data.get("cost_usd", 0.0) is not None,
        )

    def copy(self) -> RoleUsage:
        """A snapshot."""
        return replace(self, tokens=replace(self.tokens))

    def minus(self, earlier: RoleUsage) -> RoleUsage:
        """What was used since the snapshot `earlier`."""
        t, e = self.tokens, earlier.tokens
        return RoleUsage(
            requests=self.requests - earlier.requests,
            attempts=self.attempts - earlier.attempts,
            cache_hits=self.cache_hits - earlier.cache_hits,
            errors=self.errors - earlier.errors,
            tokens=Usage(
                t.input - e.input,
                t.cache_read - e.cache_read,
                t.cache_write - e.cache_write,
                t.output - e.output,
            ),
            cost_usd=self.cost_usd - earlier.cost_usd,
            latency_s=self.latency_s - earlier.latency_s,
            cost_known=self.cost_known,
        )

    def plus(self, other: RoleUsage) -> RoleUsage:
        """The sum of two usages."""
        return RoleUsage(
            requests=self.requests + other.requests,
            attempts=self.attempts + other.attempts,
            cache_hits=self.cache_hits + other.cache_hits,
            errors=self.errors + other.errors,
            tokens=self.tokens + other.tokens,
            cost_usd=self.cost_usd + other.cost_usd,
            latency_s=self.latency_s + other.latency_s,
            cost_known=self.cost_known and other.cost_known,
        )


class EndpointGate:
    """Per-endpoint concurrency limit plus a shared cool-down after a 429.

    When one request is told to back off, every request to that endpoint waits, instead of each
    discovering the rate limit on its own.
    """

    def __init__(self, concurrency: int, clock: Callable[[], float] = time.monotonic) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        self.concurrency = concurrency
        self._semaphore = asyncio.Semaphore(concurrency)
        self._resume_at = 0.0
        self._clock = clock
        self.in_flight = 0
        self.max_in_flight = 0

    def cool_down(self, seconds: float) -> None:
        """Hold back every request to this endpoint for `seconds`."""
        self._resume_at = max(self._resume_at, self._clock() + seconds)

    async def run(self, call: Callable[[], Awaitable[_T]], stop: asyncio.Event | None = None) -> _T:
        """Run one attempt inside the concurrency limit, after any cool-down.

        The cool-down and the stop request are checked once a slot is held, so requests that
        were queued behind the limit respect them too.
        """
        while True:
            async with self._semaphore:
                wait = self._resume_at - self._clock()
                if wait <= 0:
                    if stop is not None and stop.is_set():
                        raise RunStopped("stopped on request")
                    self.in_flight += 1
                    self.max_in_flight = max(self.max_in_flight, self.in_flight)
                    try:
                        return await call()
                    finally:
                        self.in_flight -= 1
            await asyncio.sleep(wait)


@dataclass(frozen=True)
class CallResult:
    """A model answer as the strategies and the scorer see it; `finish_reason` is "stop",
    "length" (cut at the token limit), another provider reason, or None when unknown."""

    text: str
    usage: Usage
    model: str
    latency_s: float
    cached: bool
    cost_usd: float
    finish_reason: str | None = None

    @property
    def truncated(self) -> bool:
        """True when the answer was cut off at the token limit."""
        return self.finish_reason == FINISH_LENGTH


class ModelClient:
    """One role's model: cache, single-flight, budget, concurrency gate and retries."""

    def __init__(
        self,
        role: str,
        spec: ModelSpec,
        provider: Provider,
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
        limits: ErrorLimits | None = None,
    ) -> None:
        self.role = role
        self.spec = spec
        self.provider = provider
        self.store = store
        self.ledger = ledger
        self.gate = gate
        self.price = price
        self.retry = retry or RetryPolicy()
        self.usage = RoleUsage(cost_known=price is not None)
        self.reported_models: set[str] = set()
        self._rng = random.Random(seed)
        self._sleep = sleep
        self._in_flight: dict[str, asyncio.Task[CallResult]] = {}
        self.journal = journal
        self.stop = stop
        self.errors = ErrorBudget(
            limits or ErrorLimits(), f"{role} model {spec.model} at {provider.endpoint}"
        )

    def key_for(
        self,
        messages: Sequence[Message],
        sample_index: int = 0,
        overrides: Mapping[str, Any] | None = None,
    ) -> str:
        """The cache key of a request."""
        return request_key(
            provider=self.spec.provider,
            endpoint=self.provider.endpoint,
            model=self.spec.name,
            messages=messages,
            params=self._params(overrides),
            sample_index=sample_index,
        )

    def _params(self, overrides: Mapping[str, Any] | None) -> dict[str, Any]:
        """The model's sampling parameters with a request's own overrides applied."""
        return {**self.spec.sampling_params(), **(overrides or {})}

    def is_cached(self, messages: Sequence[Message], sample_index: int = 0) -> bool:
        """Whether this request would be answered from the cache."""
        return self.store.get(self.key_for(messages, sample_index)) is not None

    async def complete(
        self,
        messages: Sequence[Message],
        *,
        sample_index: int = 0,
        overrides: Mapping[str, Any] | None = None,
    ) -> CallResult:
        """Answer one chat request: replayed from the run's journal, from the cache, from an
        identical in-flight request, or by sending it (within budget and concurrency, retrying
        transient failures). `overrides` replace the model's sampling parameters (temperature,
        say) for this request only, and are part of its cache key.

        Every answer counts as one call against the role's call budget, cached or not, so that a
        run's path does not depend on what the cache happens to hold; dollars count only what
        was paid. Raises BudgetExhausted before sending when a cap would be passed, RunStopped
        after a stop was requested, RequestFailed when retries are used up or the endpoint
        refused the request for its content, TooManyErrors when the role's requests keep
        failing, and FatalProviderError when the run must stop.
        """
        if self.stop is not None and self.stop.is_set():
            raise RunStopped("stopped on request")
        self.errors.check()
        key = self.key_for(messages, sample_index, overrides)
        if self.journal is not None and (entry := self.journal.take(key)) is not None:
            return self._replay(entry)
        cached = self.store.get(key)
        if cached is not None:
            self.ledger.settle(self.ledger.reserve(self.role, 0.0), 0.0)
            return self._hit(key, cached)
        task = self._in_flight.get(key)
        if task is not None:
            self.ledger.settle(self.ledger.reserve(self.role, 0.0), 0.0)
            try:
                result = await asyncio.shield(task)
            except RequestFailed as exc:
                self._journal_failure(key, exc, shared=True)
                raise
            return self._hit(key, _value_of(result))
        params = self._params(overrides)
        reservation = self.ledger.reserve(
            self.role, request_max_cost_usd(messages, params, self.price)
        )
        task = asyncio.ensure_future(
            self._send(key, tuple(messages), sample_index, params, reservation)
        )
        self._in_flight[key] = task
        task.add_done_callback(lambda t: self._forget(key, t))
        return await asyncio.shield(task)

    def _hit(self, key: str, value: dict[str, Any]) -> CallResult:
        self.usage.cache_hits += 1
        if self.journal is not None:
            self.journal.record(key, value, paid=False, cost_usd=0.0)
        return _result_of(value, cached=True, cost=0.0)

    def _journal_failure(self, key: str, exc: RequestFailed, *, shared: bool = False) -> None:
        # Only a permanent failure is a final outcome: a transient one (the endpoint was down)
        # is left out, so that a resumed run sends the request again instead of replaying it.
        # `shared`: the failure of an identical request in flight, counted there and not again.
        if self.journal is not None and exc.permanent:
            value: dict[str, Any] = {"error": str(exc), "kind": exc.kind, "permanent": True}
            if shared:
                value["shared"] = True
            self.journal.record(key, value, paid=False, cost_usd=0.0)

    def _replay(self, entry: JournalEntry) -> CallResult:
        """Account for an answer exactly as the interrupted run did, without sending it.

        A request that the endpoint refused for its content fails again here, so that a resumed
        run takes the path the interrupted one took instead of paying to be refused again."""
        reservation = self.ledger.reserve(self.role, entry.cost_usd)
        self.ledger.settle(reservation, entry.cost_usd)
        if "error" in entry.value:
            kind = str(entry.value.get("kind", "rejected"))
            if not entry.value.get("shared"):
                self.usage.errors += 1
                self.errors.failed_with(kind)
            raise RequestFailed(str(entry.value["error"]), kind=kind, permanent=True)
        if entry.paid:
            self.errors.succeeded()
        result = _result_of(entry.value, cached=not entry.paid, cost=entry.cost_usd)
        if entry.paid:
            self.usage.requests += 1
            self.usage.attempts += 1
            self.usage.tokens = self.usage.tokens + result.usage
            self.usage.cost_usd += entry.cost_usd
            self.usage.latency_s += result.latency_s
        else:
            self.usage.cache_hits += 1
        if result.model:
            self.reported_models.add(result.model)
        return result

    def _forget(self, key: str, task: asyncio.Task[CallResult]) -> None:
        self._in_flight.pop(key, None)
        if not task.cancelled():
            task.exception()  # marks it retrieved; the waiters re-raise it

    async def _send(
        self,
        key: str,
        messages: tuple[Message, ...],
        sample_index: int,
        params: Mapping[str, Any],
        reservation: Reservation,
    ) -> CallResult:
        self.usage.requests += 1
        request = ChatRequest(messages=messages, params=params, sample_index=sample_index)

        async def attempt() -> Completion:
            # Another request may have used up the error budget while this one waited for a
            # slot: then nothing more is sent to a failing endpoint. Counted here, once sent.
            self.errors.check()
            self.usage.attempts += 1
            return await self.provider.complete(request)

        retries = 0
        try:
            while True:
                self.errors.check()
                try:
                    completion = await self.gate.run(attempt, self.stop)
                    break
                except TransientProviderError as exc:
                    retries += 1
                    if retries > self.retry.max_retries:
                        message = f"{self.spec.model}: gave up after {retries} attempts: {exc}"
                        self.usage.errors += 1
                        self.errors.failed_with(exc.kind)
                        raise RequestFailed(message, kind=exc.kind) from exc
                    delay = self.retry.delay(retries, exc.retry_after, self._rng)
                    if exc.status == 429:
                        self.gate.cool_down(delay)
                    await self._backoff(delay)
                except ExampleRejected as exc:
                    failure = RequestFailed(str(exc), kind=exc.kind, permanent=True)
                    self._journal_failure(key, failure)
                    self.usage.errors += 1
                    self.errors.failed_with(exc.kind)
                    raise failure from exc
        except (RunStopped, RequestFailed, TooManyErrors):
            # A stop sends nothing more; a failure was counted where it was raised, once.
            self.ledger.release(reservation)
            raise
        except BaseException:
            self.ledger.release(reservation)
            self.usage.errors += 1
            raise
        cost = cost_usd(completion.usage, self.price)
        self.ledger.settle(reservation, cost)
        self.usage.tokens = self.usage.tokens + completion.usage
        self.usage.cost_usd += cost
        self.usage.latency_s += completion.latency_s
        if completion.model:
            self.reported_models.add(completion.model)
        self.errors.succeeded()
        value = _value_of(completion)
        # The journal first: if the cache write fails (a full disk), the paid answer is
        # already in the run folder, and a resume does not pay for it again.
        if self.journal is not None:
            self.journal.record(key, value, paid=True, cost_usd=cost)
        self.store.set(key, value)
        return _result_of(value, cached=False, cost=cost)

    async def _backoff(self, delay: float) -> None:
        """Wait `delay` before a retry, or less if the role's error budget trips meanwhile:
        then the retry would not be sent anyway, and the command should stop now."""
        sleeper = asyncio.ensure_future(self._sleep(delay))
        stopped = asyncio.ensure_future(self.errors.stopped.wait())
        try:
            await asyncio.wait({sleeper, stopped}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            sleeper.cancel()
            stopped.cancel()
        self.errors.check()

    async def aclose(self, grace_s: float = 30.0) -> None:
        """Let requests already sent finish (their answers are paid for and get cached and
        journaled), cancel what is still pending after `grace_s`, and close the provider."""
        pending = list(self._in_flight.values())
        if self.errors.tripped is not None:
            # The endpoint is failing: what is pending is waiting to retry, not an answer.
            grace_s = 0.0
        if pending:
            _, late = await asyncio.wait(pending, timeout=grace_s)
            for task in late:
                task.cancel()
        await self.provider.aclose()
