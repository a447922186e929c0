"""Provider names to builders; the one place a ModelSpec becomes a Provider."""

from __future__ import annotations

import importlib
import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from promptopt.errors import MissingDependencyError, UsageError
from promptopt.llm.providers.base import Embedder, Provider
from promptopt.task.modelspec import ModelSpec

if TYPE_CHECKING:
    import httpx2

# The SDK-backed providers are imported when a model of theirs is built, not before: importing
# the openai and anthropic SDKs costs about a second, which commands that call no model (and
# --version) should not pay.


class Builder(Protocol):
    """Builds a provider; `base_dir` is the task file's folder, for paths in the model name."""

    def __call__(
        self,
        spec: ModelSpec,
        *,
        base_dir: Path,
        http_client: httpx2.AsyncClient | None,
        env: Mapping[str, str],
    ) -> Provider:
        """The provider of `spec`."""
        ...


def _openai(
    spec: ModelSpec,
    *,
    base_dir: Path,
    http_client: httpx2.AsyncClient | None,
    env: Mapping[str, str],
) -> Provider:
    from promptopt.llm.providers.openai import OpenAIProvider

    return OpenAIProvider(spec, http_client=http_client, env=env)


def _anthropic(
    spec: ModelSpec,
    *,
    base_dir: Path,
    http_client: httpx2.AsyncClient | None,
    env: Mapping[str, str],
) -> Provider:
    from promptopt.llm.providers.anthropic import AnthropicProvider

    return AnthropicProvider(spec, http_client=http_client, env=env)


def _scripted(
    spec: ModelSpec,
    *,
    base_dir: Path,
    http_client: httpx2.AsyncClient | None,
    env: Mapping[str, str],
) -> Provider:
    from promptopt.llm.providers.scripted import ScriptedProvider

    return ScriptedProvider.from_spec(spec, base_dir=base_dir)


def _local(
    spec: ModelSpec,
    *,
    base_dir: Path,
    http_client: httpx2.AsyncClient | None,
    env: Mapping[str, str],
) -> Provider:
    # Imported on demand: the embedded model pulls in llama.cpp, an optional extra.
    try:
        module = importlib.import_module("promptopt.llm.providers.local")
    except ModuleNotFoundError as error:
        if error.name != "promptopt.llm.providers.local":
            raise
        raise MissingDependencyError(
            "the local provider is not part of this installation; use openai, anthropic or "
            "ollama models instead"
        ) from error
    provider: Provider = module.LocalProvider(spec, base_dir=base_dir)
    return provider


PROVIDERS: dict[str, Builder] = {
    "openai": _openai,
    "ollama": _openai,
    "anthropic": _anthropic,
    "scripted": _scripted,
    "local": _local,
}


def build_provider(
    spec: ModelSpec,
    *,
    base_dir: Path,
    http_client: httpx2.AsyncClient | None = None,
    env: Mapping[str, str] | None = None,
) -> Provider:
    """The provider for `spec`; UsageError listing the valid providers for an unknown prefix."""
    builder = PROVIDERS.get(spec.provider)
    if builder is None:
        raise UsageError(
            f"unknown model provider {spec.provider!r} in {spec.model!r}; "
            f"valid providers: {', '.join(sorted(PROVIDERS))}"
        )
    return builder(
        spec, base_dir=base_dir, http_client=http_client, env=os.environ if env is None else env
    )


def _scripted_embedder(
    spec: ModelSpec,
    *,
    base_dir: Path,
    http_client: httpx2.AsyncClient | None,
    env: Mapping[str, str],
) -> Provider:
    from promptopt.llm.providers.scripted import ScriptedProvider

    return ScriptedProvider.embedder_from_spec(spec, base_dir=base_dir)


# The providers with an embeddings endpoint. Anthropic has none; a scripted embedding model is
# a function from a text to its vector rather than a chat script.
EMBEDDERS: dict[str, Builder] = {
    "openai": _openai,
    "ollama": _openai,
    "local": _local,
    "scripted": _scripted_embedder,
}


def build_embedder(
    spec: ModelSpec,
    *,
    base_dir: Path,
    http_client: httpx2.AsyncClient | None = None,
    env: Mapping[str, str] | None = None,
) -> Embedder:
    """The embedding model of `spec`; UsageError listing the providers that can embed when
    its provider has no embeddings endpoint."""
    builder = EMBEDDERS.get(spec.provider)
    if builder is None:
        raise UsageError(
            f"model {spec.model!r} cannot embed: {spec.provider} has no embeddings endpoint; "
            f"providers that embed: {', '.join(sorted(EMBEDDERS))}"
        )
    provider = builder(
        spec, base_dir=base_dir, http_client=http_client, env=os.environ if env is None else env
    )
    if not isinstance(provider, Embedder):
        raise UsageError(f"model {spec.model!r} cannot embed")
    return provider
