"""Calls models fast and safely.

One `ModelClient` per role (target, optimizer, judge) owns, in this order: the response cache,
single-flight of identical in-flight requests, the budget reservation, the per-endpoint
concurrency gate and the retries. It is the only layer that retries, and it counts every attempt.
"""

from __future__ import annotations

import asyncio
import functools
import random
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextlib import suppress
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

from promptopt.errors import (
    BudgetExhausted,
    ExampleRejected,
    PromptoptError,
    TransientProviderError,
)
from promptopt.llm.budget import BudgetLedger, Reservation
from promptopt.llm.cache import RequestKeys, ResponseStore
from promptopt.llm.error_budget import ErrorBudget, ErrorLimits, TooManyErrors
from promptopt.llm.journal import JournalEntry, ResponseJournal
from promptopt.llm.messages import (
    FINISH_LENGTH,
    ChatRequest,
    Completion,
    Message,
    RateLimitState,
    Usage,
    normalize_finish_reason,
)
from promptopt.llm.pricing import cost_usd, request_max_cost_usd
from promptopt.llm.providers.base import Provider
from promptopt.llm.ratelimit import RateLimiter, estimated_tokens, used_tokens
from promptopt.task.modelspec import ModelSpec, Price

_T = TypeVar("_T")


async def _raise(exc: BaseException) -> CallResult:
    raise exc


async def _pick(batch: asyncio.Future[list[CallResult]], position: int) -> CallResult:
    return (await asyncio.shield(batch))[position]


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


MAX_HEADER_WAIT_S = 60.0
"""The longest an endpoint is held back on a rate-limit header saying nothing is left."""


class EndpointGate:
    """Per-endpoint concurrency limit, adaptive, plus a shared cool-down after a 429.

    When one request is told to back off, every request to that endpoint waits, instead of each
    discovering the rate limit on its own. The limit in force (`limit`) starts at `concurrency`,
    halves on a 429 (once per round of requests: the 429s of requests sent before the cut do
    not cut again), and grows back by one after each `limit` successes, up to `concurrency`.
    """

    def __init__(self, concurrency: int, clock: Callable[[], float] = time.monotonic) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        self.concurrency = concurrency
        self.limit = concurrency
        self.min_limit = concurrency
        self._held = 0
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._resume_at = 0.0
        self._clock = clock
        self._cuts = 0
        self._successes = 0
        self.in_flight = 0
        self.max_in_flight = 0

    def cool_down(self, seconds: float) -> None:
        """Hold back every request to this endpoint for `seconds`."""
        self._resume_at = max(self._resume_at, self._clock() + seconds)

    def rate_limited(self, cuts_when_sent: int) -> None:
        """A request sent when `cuts_when_sent` cuts had been made was refused with a 429."""
        if cuts_when_sent != self._cuts:
            return
        self._cuts += 1
        self._successes = 0
        self.limit = max(1, self.limit // 2)
        self.min_limit = min(self.min_limit, self.limit)

    def succeeded(self, rate_limit: RateLimitState | None) -> None:
        """A request was answered: grow the limit back, and heed what the server said about
        its remaining requests and tokens."""
        if rate_limit is not None and (wait := rate_limit.wait_s()) > 0:
            # Some servers count daily limits in these headers (Groq's requests per day): a
            # reset hours away must not stall the command silently; past a minute, the
            # server's 429s and the retries decide.
            self.cool_down(min(wait, MAX_HEADER_WAIT_S))
        if self.limit >= self.concurrency:
            return
        self._successes += 1
        if self._successes >= self.limit:
            self._successes = 0
            self.limit += 1
            self._wake()

    async def _take(self) -> None:
        """Hold a slot; first come, first served (a slot freed is handed to the longest
        waiting request, so that a burst of new ones cannot starve it)."""
        if self._held < self.limit and not self._waiters:
            self._held += 1
            return
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self._give()  # handed a slot it will not use: the next in line gets it
            else:
                with suppress(ValueError):
                    self._waiters.remove(waiter)
            raise

    def _give(self) -> None:
        self._held -= 1
        self._wake()

    def _wake(self) -> None:
        while self._waiters and self._held < self.limit:
            waiter = self._waiters.popleft()
            if not waiter.done():
                self._held += 1
                waiter.set_result(None)

    async def run(self, call: Callable[[], Awaitable[_T]], stop: asyncio.Event | None = None) -> _T:
        """Run one attempt inside the concurrency limit, after any cool-down.

        The cool-down and the stop request are checked once a slot is held, so requests that
        were queued behind the limit respect them too.
        """
        while True:
            await self._take()
            try:
                wait = self._resume_at - self._clock()
                if wait <= 0:
                    if stop is not None and stop.is_set():
                        raise RunStopped("stopped on request")
                    cuts = self._cuts
                    self.in_flight += 1
                    self.max_in_flight = max(self.max_in_flight, self.in_flight)
                    try:
                        completion = await call()
                    except TransientProviderError as exc:
                        if exc.status == 429:
                            self.rate_limited(cuts)
                        raise
                    finally:
                        self.in_flight -= 1
                    # Embeddings carry no rate-limit headers; completions may.
                    self.succeeded(getattr(completion, "rate_limit", None))
                    return completion
            finally:
                self._give()
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
        rate: RateLimiter | None = None,
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
        self._keys: RequestKeys | None = None
        self.journal = journal
        self.stop = stop
        self.errors = ErrorBudget(
            limits or ErrorLimits(), f"{role} model {spec.model} at {provider.endpoint}"
        )
        # Answers a provider batch delivered, kept until they are asked for; and requests a
        # batch left unanswered, whose call its reservation already counted.
        self._delivered: dict[str, CallResult] = {}
        self._resend: set[str] = set()
        self.rate = rate

    def key_for(
        self,
        messages: Sequence[Message],
        sample_index: int = 0,
        overrides: Mapping[str, Any] | None = None,
    ) -> str:
        """The cache key of a request (`promptopt.llm.cache.request_key`)."""
        keys = self._keys
        if keys is None:
            keys = self._keys = RequestKeys(
                provider=self.spec.provider, endpoint=self.provider.endpoint, model=self.spec.name
            )
        return keys.key(messages, self._params(overrides), sample_index)

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
        if (delivered := self._delivered.pop(key, None)) is not None:
            return delivered
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
        max_cost = request_max_cost_usd(messages, params, self.price)
        if self.ledger.waiting_helps(max_cost):
            # Requests in flight hold their worst case but mostly cost far less: a request is
            # refused only if it does not fit once they are settled. From the top again, as
            # an identical request may have been sent or cached meanwhile.
            await self.ledger.wait_for_settle()
            return await self.complete(messages, sample_index=sample_index, overrides=overrides)
        # A request a batch left unanswered was counted as a call when the batch was reserved.
        reserve = self.ledger.reserve_cost if key in self._resend else self.ledger.reserve
        self._resend.discard(key)
        reservation = reserve(self.role, max_cost)
        task = asyncio.ensure_future(
            self._send(key, tuple(messages), sample_index, params, reservation)
        )
        self._in_flight[key] = task
        task.add_done_callback(lambda t: self._forget(key, t))
        return await asyncio.shield(task)

    @property
    def samples_per_request(self) -> bool:
        """Whether one request can answer several samples (the provider honours `n`)."""
        return bool(getattr(self.provider, "samples_per_request", False))

    async def complete_samples(
        self,
        messages: Sequence[Message],
        n: int,
        *,
        overrides: Mapping[str, Any] | None = None,
    ) -> list[CallResult | BaseException]:
        """Samples 0 to n-1 of one request, in order, each a CallResult or the exception that
        sample ended with (RequestFailed, BudgetExhausted, ...), as `asyncio.gather` with
        `return_exceptions` gives them.

        Each sample is its own cache and journal entry and its own call against the budget, as
        with `complete(sample_index=i)`. Where the provider honours `n`, the samples not
        already answered (journal, cache, an identical request in flight) go out as one request,
        so that its input tokens are paid once; it counts as one request in the usage.
        """
        if n <= 1 or not self.samples_per_request:
            return await asyncio.gather(
                *(self.complete(messages, sample_index=i, overrides=overrides) for i in range(n)),
                return_exceptions=True,
            )
        if self.stop is not None and self.stop.is_set():
            raise RunStopped("stopped on request")
        self.errors.check()
        keys = [self.key_for(messages, i, overrides) for i in range(n)]
        unknown = [
            i
            for i, key in enumerate(keys)
            if key not in self._in_flight
            and not (self.journal is not None and self.journal.has(key))
            and self.store.get(key) is None
        ]
        outcomes: dict[int, Awaitable[CallResult]] = {}
        if len(unknown) > 1:
            outcomes.update(self._send_samples(messages, keys, unknown, overrides))
        for i in range(n):
            if i not in outcomes:
                outcomes[i] = self.complete(messages, sample_index=i, overrides=overrides)
        return await asyncio.gather(*(outcomes[i] for i in range(n)), return_exceptions=True)

    def _send_samples(
        self,
        messages: Sequence[Message],
        keys: Sequence[str],
        indices: Sequence[int],
        overrides: Mapping[str, Any] | None,
    ) -> dict[int, Awaitable[CallResult]]:
        """Start one request for the samples `indices` (each registered as in flight under its
        key) and return an awaitable per sample; a sample the budget has no room for ends
        with BudgetExhausted, as it would have alone."""
        params = self._params(overrides)
        single = request_max_cost_usd(messages, params, self.price)
        # The first sample carries the input; each further one adds only its output.
        extra = request_max_cost_usd(messages, {**params, "n": 2}, self.price) - single
        reservations: list[Reservation] = []
        refused: dict[int, Awaitable[CallResult]] = {}
        for i in indices:
            try:
                cost = single if not reservations else extra
                reservations.append(self.ledger.reserve(self.role, cost))
            except BudgetExhausted as exc:
                refused[i] = _raise(exc)
        sent = list(indices[: len(reservations)])
        if not sent:
            return refused
        request = ChatRequest(
            messages=tuple(messages), params=params, sample_index=sent[0], n=len(sent)
        )
        batch = asyncio.ensure_future(
            self._send_batch(request, [keys[i] for i in sent], sent, reservations)
        )
        out: dict[int, Awaitable[CallResult]] = dict(refused)
        for position, i in enumerate(sent):
            key = keys[i]
            task = asyncio.ensure_future(_pick(batch, position))
            self._in_flight[key] = task
            task.add_done_callback(functools.partial(self._forget, key))
            out[i] = asyncio.shield(task)
        return out

    async def _send_batch(
        self,
        request: ChatRequest,
        keys: Sequence[str],
        indices: Sequence[int],
        reservations: Sequence[Reservation],
    ) -> list[CallResult]:
        completion = await self._request(request, keys, reservations)
        answers = [(completion.text, completion.finish_reason), *completion.more]
        results = [self._paid(keys[0], replace(completion, more=()), reservations[0])]
        for position in range(1, len(keys)):
            if position < len(answers):
                text, finish_reason = answers[position]
                part = Completion(
                    text=text, usage=Usage(), model=completion.model, finish_reason=finish_reason
                )
                results.append(
                    self._paid(keys[position], part, reservations[position], shared_request=True)
                )
            else:
                # The server answered fewer samples than asked (it ignores n): the rest are
                # sent one by one, on the calls already counted for them.
                results.append(
                    await self._send(
                        keys[position],
                        request.messages,
                        indices[position],
                        request.params,
                        reservations[position],
                    )
                )
        return results

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
            if not entry.value.get("shared_request"):
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
        request = ChatRequest(messages=messages, params=params, sample_index=sample_index)
        completion = await self._request(request, (key,), (reservation,))
        return self._paid(key, completion, reservation)

    async def _request(
        self, request: ChatRequest, keys: Sequence[str], reservations: Sequence[Reservation]
    ) -> Completion:
        """Send one request (of `request.n` samples, one per key), retrying transient
        failures; on failure its reservations are released and a refusal is journaled for every
        sample it was to answer."""
        self.usage.requests += 1
        estimate = estimated_tokens(request.messages, {**request.params, "n": request.n})

        async def attempt() -> Completion:
            # Another request may have used up the error budget while this one waited for a
            # slot: then nothing more is sent to a failing endpoint. Counted here, once sent.
            self.errors.check()
            if self.rate is not None:
                # Every attempt counts against rpm and tpm: servers count refused ones too.
                await self.rate.acquire(estimate)
                self.errors.check()
            self.usage.attempts += 1
            completion = await self.provider.complete(request)
            if self.rate is not None:
                await self.rate.charge(used_tokens(completion.usage) - estimate)
            return completion

        retries = 0
        try:
            while True:
                self.errors.check()
                try:
                    return await self.gate.run(attempt, self.stop)
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
                    for position, key in enumerate(keys):
                        # Counted once, as the request failed once; the other samples share it.
                        self._journal_failure(key, failure, shared=position > 0)
                    self.usage.errors += 1
                    self.errors.failed_with(exc.kind)
                    raise failure from exc
        except (RunStopped, RequestFailed, TooManyErrors):
            # A stop sends nothing more; a failure was counted where it was raised, once.
            for reservation in reservations:
                self.ledger.release(reservation)
            raise
        except BaseException:
            for reservation in reservations:
                self.ledger.release(reservation)
            self.usage.errors += 1
            raise

    def _paid(
        self,
        key: str,
        completion: Completion,
        reservation: Reservation,
        *,
        shared_request: bool = False,
    ) -> CallResult:
        """Account for, journal and cache an answer that was paid for. `shared_request`: a
        further sample of a request already accounted for (its usage and cost are the first
        sample's), marked so that a resumed run counts the request once too."""
        cost = cost_usd(completion.usage, self.price)
        self.ledger.settle(reservation, cost)
        self.usage.tokens = self.usage.tokens + completion.usage
        self.usage.cost_usd += cost
        self.usage.latency_s += completion.latency_s
        if completion.model:
            self.reported_models.add(completion.model)
        self.errors.succeeded()
        value = _value_of(completion)
        if shared_request:
            value["shared_request"] = True
        # The journal first: if the cache write fails (a full disk), the paid answer is
        # already in the run folder, and a resume does not pay for it again.
        if self.journal is not None:
            self.journal.record(key, value, paid=True, cost_usd=cost)
        self.store.set(key, value)
        return _result_of(value, cached=False, cost=cost)

    def has_answer(self, key: str) -> bool:
        """Whether a request is answered without being sent: by the run's journal, a batch, the
        cache, or an identical request in flight."""
        return (
            key in self._delivered
            or key in self._in_flight
            or (self.journal is not None and self.journal.has(key))
            or self.store.get(key) is not None
        )

    def accept_batch_answer(
        self, key: str, completion: Completion, reservation: Reservation, cost: float
    ) -> None:
        """Account for an answer a provider batch delivered, as `_send` does for one it sent
        (journal first, then cache), and keep it for the `complete` call that asks for it."""
        self.ledger.settle(reservation, cost)
        self.usage.requests += 1
        self.usage.attempts += 1
        self.usage.tokens = self.usage.tokens + completion.usage
        self.usage.cost_usd += cost
        if completion.model:
            self.reported_models.add(completion.model)
        self.errors.succeeded()
        value = _value_of(completion)
        if self.journal is not None:
            self.journal.record(key, value, paid=True, cost_usd=cost)
        self.store.set(key, value)
        self._delivered[key] = _result_of(value, cached=False, cost=cost)

    def expect_resend(self, key: str) -> None:
        """A batch left this request unanswered: when it is asked for, it is sent on its own,
        reserving dollars but no second call (the batch's reservation counted it)."""
        self._resend.add(key)

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
