"""Anthropic's Message Batches for `AnthropicProvider`: requests as {custom_id, params}, polled
until processing ends, results read from the batch's results_url (JSONL)."""

from __future__ import annotations

from collections.abc import Awaitable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import anthropic

from promptopt.errors import ProviderError, TransientProviderError
from promptopt.llm.messages import ChatRequest, Completion
from promptopt.llm.providers.batching import (
    BatchItemFailure,
    BatchOutcome,
    BatchState,
    BatchUnsupported,
)
from promptopt.util.redact import redact

T = TypeVar("T")


class AnthropicBatches:
    """The batch methods of `AnthropicProvider` (kept apart from the one-request path)."""

    if TYPE_CHECKING:
        _client: anthropic.AsyncAnthropic
        _label: str
        _key: str
        _secrets: list[str]

        def _body(self, request: ChatRequest) -> dict[str, Any]: ...

        def _completion(self, response: Any, latency: float) -> Completion: ...

        def _status_error(self, error: anthropic.APIStatusError) -> ProviderError: ...

    async def _batch_call(self, what: str, call: Awaitable[T]) -> T:
        try:
            return await call
        except anthropic.APIStatusError as error:
            if error.status_code in (404, 405):
                raise BatchUnsupported(
                    f"{self._label}: the server has no batch service ({what}: HTTP "
                    f"{error.status_code})"
                ) from None
            raise self._status_error(error) from None
        except (anthropic.APITimeoutError, anthropic.APIConnectionError) as error:
            detail = redact(str(error.__cause__ or error), self._secrets)
            raise TransientProviderError(
                f"{self._label}: {what} failed: {detail}", kind="connection failed"
            ) from None

    def _params(self, request: ChatRequest) -> dict[str, Any]:
        # A batch request's params are the Messages API body itself: what the one-request path
        # hands the SDK as extra_body goes in beside the named arguments.
        body = self._body(request)
        return {**body, **body.pop("extra_body", {})}

    async def submit_batch(self, items: Sequence[tuple[str, ChatRequest]]) -> str:
        """Create a message batch of the requests; its id."""
        requests: list[Any] = [
            {"custom_id": custom_id, "params": self._params(request)}
            for custom_id, request in items
        ]
        batch = await self._batch_call(
            "creating the batch", self._client.messages.batches.create(requests=requests)
        )
        return batch.id

    async def batch_state(self, batch_id: str) -> BatchState:
        """The batch's processing status and request counts."""
        batch = await self._batch_call(
            "polling the batch", self._client.messages.batches.retrieve(batch_id)
        )
        counts = batch.request_counts
        failed = counts.errored + counts.canceled + counts.expired
        return BatchState(
            batch_id=batch.id,
            status=batch.processing_status,
            ended=batch.processing_status == "ended",
            total=counts.processing + counts.succeeded + failed,
            succeeded=counts.succeeded,
            failed=failed,
        )

    async def batch_results(self, batch_id: str) -> Mapping[str, BatchOutcome]:
        """Every request's result: its message, or why it has none."""
        decoder = await self._batch_call(
            "downloading the batch results", self._client.messages.batches.results(batch_id)
        )
        outcomes: dict[str, BatchOutcome] = {}
        async for item in decoder:
            result = item.result
            if result.type == "succeeded":
                try:
                    outcomes[item.custom_id] = self._completion(result.message, 0.0)
                except TransientProviderError as exc:
                    outcomes[item.custom_id] = BatchItemFailure("malformed response", str(exc))
            elif result.type == "errored":
                error = getattr(result.error, "error", None)
                kind = str(getattr(error, "type", None) or "errored")
                message = str(getattr(error, "message", None) or kind)
                outcomes[item.custom_id] = BatchItemFailure(kind, message)
            else:
                outcomes[item.custom_id] = BatchItemFailure(result.type, result.type)
        return outcomes
