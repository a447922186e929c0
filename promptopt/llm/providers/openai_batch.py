"""OpenAI's Batch API for `OpenAIProvider`: a JSONL file of chat requests uploaded with purpose
"batch", one batch over it with a 24 h window, polled, and its output and error files read back
by custom id."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final, Literal, TypeVar

from promptopt.errors import ProviderError, TransientProviderError
from promptopt.llm.messages import ChatRequest, Completion
from promptopt.llm.providers.batching import (
    BatchItemFailure,
    BatchOutcome,
    BatchState,
    BatchUnsupported,
)
from promptopt.util.redact import redact

if TYPE_CHECKING:
    import openai

T = TypeVar("T")

CHAT_ENDPOINT: Final[Literal["/v1/chat/completions"]] = "/v1/chat/completions"
COMPLETION_WINDOW: Final[Literal["24h"]] = "24h"
# Statuses after which the batch's files no longer change.
_ENDED = frozenset({"completed", "expired", "failed", "cancelled"})


class OpenAIBatches:
    """The batch methods of `OpenAIProvider` (kept apart from the one-request path)."""

    if TYPE_CHECKING:

        @property
        def _client(self) -> openai.AsyncOpenAI: ...

        _label: str
        _key: str
        _secrets: list[str]

        def _wire_body(self, request: ChatRequest) -> dict[str, Any]: ...

        def _completion(self, response: Any, latency: float) -> Completion: ...

        def _status_error(self, error: openai.APIStatusError) -> ProviderError: ...

    async def _batch_call(self, what: str, call: Awaitable[T]) -> T:
        import openai

        try:
            return await call
        except openai.APIStatusError as error:
            if error.status_code in (404, 405):
                raise BatchUnsupported(
                    f"{self._label}: the server has no batch service ({what}: HTTP "
                    f"{error.status_code})"
                ) from None
            raise self._status_error(error) from None
        except (openai.APITimeoutError, openai.APIConnectionError) as error:
            detail = redact(str(error.__cause__ or error), self._secrets)
            raise TransientProviderError(
                f"{self._label}: {what} failed: {detail}", kind="connection failed"
            ) from None

    async def submit_batch(self, items: Sequence[tuple[str, ChatRequest]]) -> str:
        """Upload the requests as a batch input file and create the batch; its id."""
        lines = [
            json.dumps(
                {
                    "custom_id": custom_id,
                    "method": "POST",
                    "url": CHAT_ENDPOINT,
                    "body": self._wire_body(request),
                },
                ensure_ascii=False,
                separators=(",", ":"),
            )
            for custom_id, request in items
        ]
        data = ("\n".join(lines) + "\n").encode("utf-8")
        uploaded = await self._batch_call(
            "uploading the batch file",
            self._client.files.create(
                file=("promptopt-batch.jsonl", data, "application/jsonl"), purpose="batch"
            ),
        )
        batch = await self._batch_call(
            "creating the batch",
            self._client.batches.create(
                input_file_id=uploaded.id,
                endpoint=CHAT_ENDPOINT,
                completion_window=COMPLETION_WINDOW,
            ),
        )
        return batch.id

    async def batch_state(self, batch_id: str) -> BatchState:
        """The batch's status and request counts."""
        batch = await self._batch_call("polling the batch", self._client.batches.retrieve(batch_id))
        counts = batch.request_counts
        return BatchState(
            batch_id=batch.id,
            status=batch.status,
            ended=batch.status in _ENDED,
            total=counts.total if counts is not None else 0,
            succeeded=counts.completed if counts is not None else 0,
            failed=counts.failed if counts is not None else 0,
        )

    async def batch_results(self, batch_id: str) -> Mapping[str, BatchOutcome]:
        """The answers of the output file and the failures of the error file, by custom id."""
        batch = await self._batch_call("polling the batch", self._client.batches.retrieve(batch_id))
        outcomes: dict[str, BatchOutcome] = {}
        for file_id in (batch.error_file_id, batch.output_file_id):
            if not file_id:
                continue
            content = await self._batch_call(
                "downloading the batch results", self._client.files.content(file_id)
            )
            for line in content.text.splitlines():
                if line.strip():
                    custom_id, outcome = self._outcome(json.loads(line))
                    if custom_id is not None:
                        outcomes[custom_id] = outcome
        return outcomes

    def _outcome(self, line: Mapping[str, Any]) -> tuple[str | None, BatchOutcome]:
        """One line of an output or error file."""
        custom_id = line.get("custom_id")
        error = line.get("error")
        response = line.get("response") or {}
        status = int(response.get("status_code") or 0)
        body = response.get("body")
        if error:
            kind = str(error.get("code") or "failed")
            return custom_id, BatchItemFailure(kind, str(error.get("message") or kind))
        if status != 200 or not isinstance(body, dict):
            detail = body.get("error", {}) if isinstance(body, dict) else {}
            message = detail.get("message") if isinstance(detail, dict) else None
            return custom_id, BatchItemFailure(f"HTTP {status}", str(message or "no answer"))
        try:
            from openai.types.chat import ChatCompletion

            completion = self._completion(ChatCompletion.model_validate(body), 0.0)
        except (ValueError, TransientProviderError) as exc:
            return custom_id, BatchItemFailure("malformed response", str(exc))
        return custom_id, completion
