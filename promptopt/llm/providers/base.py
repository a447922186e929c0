"""The provider plug points: chat completion, and embeddings for providers that have them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from promptopt.llm.messages import ChatRequest, Completion, Usage


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


@dataclass(frozen=True)
class Embeddings:
    """One embeddings request's answer: a vector per text, in order, and what it cost."""

    vectors: tuple[tuple[float, ...], ...]
    usage: Usage = field(default_factory=Usage)
    model: str = ""
    latency_s: float = 0.0


@runtime_checkable
class Embedder(Protocol):
    """A model that embeds texts: the capability of providers with an embeddings endpoint
    (OpenAI and compatible servers, the embedded llama.cpp model). Anthropic has none.

    Like `complete`, `embed` makes exactly one attempt and raises `TransientProviderError` or
    `FatalProviderError`.
    """

    @property
    def endpoint(self) -> str:
        """Identifies the server, for the concurrency gate and the cache key (no secrets)."""
        ...

    @property
    def model_id(self) -> str:
        """The "provider:name" id the user asked for."""
        ...

    async def embed(self, texts: Sequence[str]) -> Embeddings:
        """One vector per text, in the order given."""
        ...

    async def aclose(self) -> None:
        """Release connections or the loaded model."""
        ...
