"""Sends a role's known-in-advance requests through the provider's batch service (OpenAI's Batch
API, Anthropic's Message Batches) at batch prices, and hands the answers to the client.

The scorer asks for every request of an evaluation before it scores; requests asked for at about
the same time (the candidates of one search round) share a batch. What the cache, the run's
journal or an earlier batch already answers is never submitted. Each batch id is recorded in a
`BatchBook` as soon as the provider returns it, before anything is awaited, so a killed command
polls the same batch when it is run again instead of paying for it twice. Requests a batch does
not answer (expired, failed) are left to the client, which sends them one by one within the
budget.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from promptopt.errors import BudgetExhausted, FatalProviderError, TransientProviderError
from promptopt.llm.budget import Reservation
from promptopt.llm.client import ModelClient, RunStopped
from promptopt.llm.messages import ChatRequest, Completion, Message
from promptopt.llm.pricing import cost_usd, request_max_cost_usd
from promptopt.llm.providers.batching import (
    BatchItemFailure,
    BatchProvider,
    BatchState,
    BatchUnsupported,
)
from promptopt.task.modelspec import Price
from promptopt.util.files import write_atomic
from promptopt.util.hashing import content_hash

# What the command line should know but need not stop for (an endpoint without batches) is
# reported through logging, as the response cache does; warnings reach stderr.
log = logging.getLogger("promptopt.batch")

BATCH_DISCOUNT = 0.5
"""Both OpenAI's Batch API and Anthropic's Message Batches bill half the standard price, cache
reads and writes included; the fallback when the price library has no batch price."""


@dataclass(frozen=True)
class BatchPolicy:
    """How batches are gathered, sized and polled."""

    poll_initial_s: float = 5.0
    """The first wait between polls; each later wait is `poll_factor` times longer."""
    poll_max_s: float = 120.0
    poll_factor: float = 1.5
    gather_s: float = 0.05
    """Requests asked for within this long of the first share its batch (a search round's
    candidates are asked for together, one task each)."""
    max_requests: int = 50_000
    """Requests per batch: OpenAI takes 50,000 per file, Anthropic 100,000."""
    submit_retries: int = 4


@dataclass(frozen=True)
class BatchProgress:
    """What the command line shows while batches run: request counts over every batch this
    command is waiting for."""

    model: str
    batches: int
    submitted: int
    in_progress: int
    completed: int
    failed: int
    elapsed_s: float

    def line(self) -> str:
        """One line for the terminal."""
        minutes, seconds = divmod(int(self.elapsed_s), 60)
        return (
            f"batch {self.model}: {self.batches} batch{'es' if self.batches != 1 else ''}, "
            f"{self.submitted} submitted, {self.in_progress} in progress, "
            f"{self.completed} completed, {self.failed} failed, {minutes}m{seconds:02d}s elapsed"
        )


ProgressFn = Callable[[BatchProgress], None]


@dataclass
class BatchRecord:
    """A submitted batch as its book keeps it: which request (by cache key) each custom id is."""

    batch_id: str
    model: str
    endpoint: str
    requests: dict[str, str]
    submitted_at: float
    done: bool = False

    @property
    def set_key(self) -> str:
        """The hash of the request set, which names the record's file."""
        return content_hash(sorted(self.requests.values()))[:32]


class BatchBook:
    """The batches a command submitted, one JSON file per request set, written atomically:
    in `shared` (the cache directory's `batches/`), where any later command with the same
    cache finds them (a CI job restarted from scratch, the same `eval` run again) and where a
    record is removed once its answers are taken; and in `kept` (a run folder's `batches/`),
    where it stays, marked done."""

    def __init__(self, shared: Path, kept: Path | None = None) -> None:
        self.shared = shared
        self.kept = kept

    def record(self, record: BatchRecord) -> None:
        """Write (or rewrite) a batch's record."""
        name = f"{record.set_key}.json"
        for directory in (self.kept, self.shared):
            if directory is None:
                continue
            if record.done and directory == self.shared:
                (directory / name).unlink(missing_ok=True)
                continue
            directory.mkdir(parents=True, exist_ok=True, mode=0o700)
            write_atomic(directory / name, json.dumps(asdict(record)))

    def open_batches(self, model: str, endpoint: str) -> list[BatchRecord]:
        """The batches of this model and endpoint whose answers were not all taken yet."""
        found: dict[str, BatchRecord] = {}
        done: set[str] = set()
        for directory in (self.kept, self.shared):
            if directory is None or not directory.is_dir():
                continue
            for path in sorted(directory.glob("*.json")):
                try:
                    record = BatchRecord(**json.loads(path.read_text(encoding="utf-8")))
                except (OSError, ValueError, TypeError):
                    continue  # a record cut short by a kill mid-write names no batch
                if record.model != model or record.endpoint != endpoint:
                    continue
                if record.done:
                    done.add(record.batch_id)
                else:
                    found.setdefault(record.batch_id, record)
        return [r for batch_id, r in found.items() if batch_id not in done]


@dataclass
class _Group:
    """Requests gathered for one submission, and the waiters for its end."""

    requests: dict[str, ChatRequest] = field(default_factory=dict)
    done: asyncio.Future[None] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


@dataclass
class _Waiting:
    record: BatchRecord
    reservations: dict[str, Reservation]
    state: BatchState | None = None


class Batcher:
    """One role's batches: gathers requests, submits them, polls, delivers the answers."""

    def __init__(
        self,
        client: ModelClient,
        provider: BatchProvider,
        book: BatchBook,
        *,
        price: Price | None,
        policy: BatchPolicy | None = None,
        on_progress: ProgressFn | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.client = client
        self.provider = provider
        self.book = book
        self.price = price
        self.policy = policy or BatchPolicy()
        self.on_progress = on_progress
        self._sleep = sleep
        self._clock = clock
        self._group: _Group | None = None
        self.unsupported: str | None = None
        """Why the endpoint turned out to have no batch service; requests go one by one then."""
        self.submitted = 0
        self.fell_back = 0

    async def prefetch(self, messages: Sequence[Sequence[Message]]) -> None:
        """Have the answers to these requests (at the model's own parameters) ready before
        they are asked for: from batches already submitted, or from new ones.

        Returns once every batch involved has ended; a request a batch left unanswered is then
        sent by the client as usual when it is asked for. Raises RunStopped on a stop request
        (the batches keep running and are polled again by the next command), and
        FatalProviderError when the endpoint refuses the batch for good.
        """
        if self.unsupported is not None:
            return
        params = self.client.spec.sampling_params()
        wanted: dict[str, ChatRequest] = {}
        for request in messages:
            key = self.client.key_for(request)
            if key not in wanted and not self.client.has_answer(key):
                wanted[key] = ChatRequest(messages=tuple(request), params=params)
        if not wanted:
            return
        group = self._group
        if group is not None:
            group.requests.update(wanted)
            try:
                await asyncio.shield(group.done)
            except asyncio.CancelledError:
                task = asyncio.current_task()
                if not group.done.cancelled() or (task is not None and task.cancelling()):
                    raise
                # The task gathering them was cancelled, not this one: these requests are
                # sent one by one when they are asked for.
            return
        group = self._group = _Group(dict(wanted))
        group.done.add_done_callback(_retrieve)
        try:
            try:
                await self._sleep(self.policy.gather_s)
            finally:
                self._group = None
            await self._process(group.requests)
        except asyncio.CancelledError:
            group.done.cancel()  # the requests that joined are not waited for either
            raise
        except BaseException as exc:
            group.done.set_exception(exc)
            raise
        group.done.set_result(None)

    async def _process(self, requests: Mapping[str, ChatRequest]) -> None:
        started = self._clock()
        todo = {k: r for k, r in requests.items() if not self.client.has_answer(k)}
        waiting = self._resumed(set(todo))
        for entry in waiting:
            for key in entry.record.requests.values():
                todo.pop(key, None)
        waiting.extend(await self._submit(todo))
        if waiting:
            await self._poll(waiting, started)

    def _resumed(self, wanted: set[str]) -> list[_Waiting]:
        """The recorded, unfinished batches holding any of `wanted`: polled, never resubmitted.

        Their requests reserve the budget again here: the command that submitted them was
        stopped before it could settle them."""
        waiting: list[_Waiting] = []
        for record in self.book.open_batches(self.client.spec.model, self.client.provider.endpoint):
            if not wanted & set(record.requests.values()):
                continue
            reservations: dict[str, Reservation] = {}
            for key in record.requests.values():
                if key not in reservations and not self.client.has_answer(key):
                    reservations[key] = self.client.ledger.reserve(self.client.role, 0.0)
            waiting.append(_Waiting(record, reservations))
        return waiting

    async def _submit(self, todo: Mapping[str, ChatRequest]) -> list[_Waiting]:
        """Reserve the budget for the requests and submit them in batches of at most
        `max_requests`; a request the budget cannot cover is left to the client."""
        reserved: dict[str, Reservation] = {}
        for key, request in todo.items():
            worst = request_max_cost_usd(request.messages, request.params, self.price)
            try:
                reserved[key] = self.client.ledger.reserve(self.client.role, worst)
            except BudgetExhausted:
                break  # the client raises it again when that request is asked for
        keys = list(reserved)
        waiting: list[_Waiting] = []
        size = max(1, self.policy.max_requests)
        for start in range(0, len(keys), size):
            chunk = keys[start : start + size]
            items = [(f"r{i}", todo[key]) for i, key in enumerate(chunk)]
            try:
                batch_id = await self._submit_one(items)
            except BatchUnsupported as exc:
                self.unsupported = str(exc)
                log.warning("%s; its requests are sent one by one", exc)
                for key in keys[start:]:
                    self._fall_back(key, reserved[key])
                break
            except BaseException:
                for key in keys[start:]:
                    self.client.ledger.release(reserved[key])
                raise
            record = BatchRecord(
                batch_id=batch_id,
                model=self.client.spec.model,
                endpoint=self.client.provider.endpoint,
                requests={custom_id: key for (custom_id, _), key in zip(items, chunk, strict=True)},
                submitted_at=time.time(),
            )
            # Recorded before anything else is awaited: from here on a killed command finds
            # this batch again instead of paying for its requests twice.
            self.book.record(record)
            self.submitted += len(chunk)
            waiting.append(_Waiting(record, {key: reserved[key] for key in chunk}))
        return waiting

    async def _submit_one(self, items: Sequence[tuple[str, ChatRequest]]) -> str:
        """Submit one batch, retrying transient failures."""
        attempt = 0
        while True:
            if self.client.stop is not None and self.client.stop.is_set():
                raise RunStopped("stopped on request")
            try:
                return await self.provider.submit_batch(items)
            except TransientProviderError as exc:
                attempt += 1
                if attempt > self.policy.submit_retries:
                    raise FatalProviderError(
                        f"{self.client.spec.model}: the batch could not be submitted: {exc}"
                    ) from exc
                await self._sleep(exc.retry_after or self.policy.poll_initial_s * attempt)

    async def _poll(self, waiting: list[_Waiting], started: float) -> None:
        """Poll every batch with exponential backoff until all have ended, delivering each
        one's answers as it ends."""
        delay = self.policy.poll_initial_s
        open_ = list(waiting)
        while True:
            for entry in list(open_):
                try:
                    entry.state = await self.provider.batch_state(entry.record.batch_id)
                except TransientProviderError:
                    continue  # polled again after the next wait
                except BatchUnsupported as exc:
                    # The provider no longer knows the batch (recorded under another key, or
                    # deleted): nothing will come of it.
                    log.warning("batch %s: %s", entry.record.batch_id, exc)
                    self._close(entry, {})
                    open_.remove(entry)
                    continue
                if entry.state.ended:
                    await self._deliver(entry)
                    open_.remove(entry)
            self._report(waiting, started)
            if not open_:
                return
            await self._wait(delay)
            delay = min(self.policy.poll_max_s, delay * self.policy.poll_factor)

    async def _wait(self, delay: float) -> None:
        """Sleep between polls; a stop request ends the wait at once."""
        stop = self.client.stop
        if stop is None:
            await self._sleep(delay)
            return
        if stop.is_set():
            raise RunStopped("stopped on request; the batches keep running and are polled again")
        sleeper = asyncio.ensure_future(self._sleep(delay))
        stopped = asyncio.ensure_future(stop.wait())
        try:
            await asyncio.wait({sleeper, stopped}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            sleeper.cancel()
            stopped.cancel()
        if stop.is_set():
            raise RunStopped("stopped on request; the batches keep running and are polled again")

    async def _deliver(self, entry: _Waiting) -> None:
        """Hand an ended batch's answers to the client; what it left unanswered falls back to
        one-by-one requests."""
        outcomes: Mapping[str, Completion | BatchItemFailure] = {}
        for attempt in range(self.policy.submit_retries + 1):
            try:
                outcomes = await self.provider.batch_results(entry.record.batch_id)
                break
            except BatchUnsupported:
                break  # the results are gone: every request falls back below
            except TransientProviderError:
                if attempt == self.policy.submit_retries:
                    break
                await self._sleep(self.policy.poll_initial_s)
        self._close(entry, outcomes)

    def _close(
        self, entry: _Waiting, outcomes: Mapping[str, Completion | BatchItemFailure]
    ) -> None:
        """Deliver what a finished batch answered, fall back for the rest, and mark it done."""
        for custom_id, key in entry.record.requests.items():
            reservation = entry.reservations.pop(key, None)
            if reservation is None:
                continue  # answered before this batch ended (a resumed command's journal)
            outcome = outcomes.get(custom_id)
            if isinstance(outcome, Completion):
                cost = cost_usd(outcome.usage, self.price)
                self.client.accept_batch_answer(key, outcome, reservation, cost)
            else:
                self._fall_back(key, reservation)
        entry.record.done = True
        self.book.record(entry.record)

    def _fall_back(self, key: str, reservation: Reservation) -> None:
        self.fell_back += 1
        self.client.ledger.release(reservation)
        self.client.expect_resend(key)

    def _report(self, waiting: Sequence[_Waiting], started: float) -> None:
        if self.on_progress is None:
            return
        states = [w.state for w in waiting if w.state is not None]
        total = sum(len(w.record.requests) for w in waiting)
        completed = sum(s.succeeded for s in states)
        failed = sum(s.failed for s in states)
        self.on_progress(
            BatchProgress(
                model=self.client.spec.model,
                batches=len(waiting),
                submitted=total,
                in_progress=max(0, total - completed - failed),
                completed=completed,
                failed=failed,
                elapsed_s=self._clock() - started,
            )
        )


def _retrieve(future: asyncio.Future[None]) -> None:
    # The leader re-raises the failure itself; waiters that were cancelled meanwhile must not
    # leave it unretrieved.
    if not future.cancelled():
        future.exception()


def batch_price(standard: Price | None, library: Price | None = None) -> Price | None:
    """The price of a request sent in a batch: the price library's batch price when it has
    one, else half the standard price (both providers' published discount)."""
    if library is not None:
        return library
    if standard is None:
        return None
    return Price(
        input=standard.input * BATCH_DISCOUNT,
        output=standard.output * BATCH_DISCOUNT,
        cache_read=None if standard.cache_read is None else standard.cache_read * BATCH_DISCOUNT,
        cache_write=(
            None if standard.cache_write is None else standard.cache_write * BATCH_DISCOUNT
        ),
    )


def as_batch_provider(provider: Any) -> BatchProvider | None:
    """The provider as a batch provider, or None when its endpoint type has no batches."""
    return provider if isinstance(provider, BatchProvider) else None
