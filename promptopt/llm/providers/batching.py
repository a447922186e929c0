"""The plug point of the providers' batch services (OpenAI's Batch API, Anthropic's Message
Batches): submit many chat requests at once, poll, fetch the answers by custom id."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from promptopt.errors import ProviderError
from promptopt.llm.messages import ChatRequest, Completion


class BatchUnsupported(ProviderError):
    """The endpoint has no batch service (an OpenAI-compatible server without /v1/batches):
    the requests are sent one by one instead."""


@dataclass(frozen=True)
class BatchState:
    """Where a submitted batch stands. `ended`: no more answers will come (completed,
    expired, failed or cancelled); `failed` counts requests that errored, expired or were
    cancelled."""

    batch_id: str
    status: str
    ended: bool
    total: int = 0
    succeeded: int = 0
    failed: int = 0

    @property
    def processing(self) -> int:
        """Requests not answered yet."""
        return max(0, self.total - self.succeeded - self.failed)


@dataclass(frozen=True)
class BatchItemFailure:
    """A request of a batch that got no answer; `kind` is a few words ("expired",
    "HTTP 500", "canceled")."""

    kind: str
    message: str


BatchOutcome = Completion | BatchItemFailure


@runtime_checkable
class BatchProvider(Protocol):
    """A provider whose endpoint runs batches. Every method makes one attempt and raises
    `TransientProviderError`, `FatalProviderError` or `BatchUnsupported` like `complete`."""

    async def submit_batch(self, items: Sequence[tuple[str, ChatRequest]]) -> str:
        """Submit (custom id, request) pairs as one batch; returns the batch id."""
        ...

    async def batch_state(self, batch_id: str) -> BatchState:
        """The batch's status and counts."""
        ...

    async def batch_results(self, batch_id: str) -> Mapping[str, BatchOutcome]:
        """The outcome of every request of an ended batch that has one, by custom id."""
        ...
