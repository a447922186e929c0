"""The provider plug point."""

from __future__ import annotations

from typing import Protocol

from promptopt.llm.messages import ChatRequest, Completion


class Provider(Protocol):
    """A chat model endpoint.

    `complete` makes exactly one attempt: it never retries (the scorer owns retries and counts
    every attempt). It raises `TransientProviderError` for failures worth retrying and
    `FatalProviderError` for failures that must stop the run.
    """

    @property
    def endpoint(self) -> str:
        """Identifies the server, for per-endpoint concurrency and the cache key (no secrets)."""
        ...

    @property
    def model_id(self) -> str:
        """The "provider:name" id the user asked for."""
        ...

    async def complete(self, request: ChatRequest) -> Completion:
        """Send one request and return the answer."""
        ...

    async def aclose(self) -> None:
        """Release connections."""
        ...
