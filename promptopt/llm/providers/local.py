"""The `local` provider: a GGUF model run inside this process by llama-cpp-python, no network.

The model's own chat template (from the GGUF metadata) formats the messages; llama-cpp-python's
default chat handler reads it. Generation is CPU-bound and not reentrant, so each loaded model
answers one request at a time, in a worker thread so the event loop stays responsive.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from promptopt.errors import FatalProviderError, MissingDependencyError
from promptopt.llm.local_models import INSTALL_COMMAND, resolve_model
from promptopt.llm.messages import ChatRequest, Completion, Usage, normalize_finish_reason
from promptopt.llm.providers.base import Embeddings
from promptopt.task.modelspec import ModelSpec

DEFAULT_N_CTX = 4096

# Parameters that configure loading, not generation: they are read once, never sent per request.
LOAD_PARAMS = frozenset({"n_ctx"})

# Request parameters passed to create_chat_completion under the same names.
GENERATION_PARAMS = frozenset(
    {
        "temperature",
        "max_tokens",
        "seed",
        "stop",
        "top_p",
        "top_k",
        "min_p",
        "presence_penalty",
        "frequency_penalty",
        "repeat_penalty",
    }
)


class ChatModel(Protocol):
    """The part of `llama_cpp.Llama` this provider uses."""

    def create_chat_completion(self, **kwargs: Any) -> Any:
        """Answer one chat request, OpenAI-style (`choices`, `usage`)."""
        ...


class EmbeddingModel(Protocol):
    """The part of a `llama_cpp.Llama` loaded with `embedding=True` this provider uses."""

    def embed(
        self,
        input: list[str],
        normalize: bool = ...,
        truncate: bool = ...,
        return_count: bool = ...,
    ) -> Any:
        """One pooled vector per input (and, with `return_count`, the tokens read)."""
        ...


LoadFn = Callable[[Path, int, int], ChatModel]
"""Loads a GGUF file: (path, n_ctx, n_threads) -> model."""
EmbedLoadFn = Callable[[Path, int, int], EmbeddingModel]
"""Loads a GGUF file in embedding mode: (path, n_ctx, n_threads) -> model."""


def require_llama_cpp() -> None:
    """Raise MissingDependencyError unless llama-cpp-python is importable."""
    if importlib.util.find_spec("llama_cpp") is None:
        raise MissingDependencyError(
            "The local provider needs llama-cpp-python, which is not installed: "
            f"run {INSTALL_COMMAND}"
        )


def load_llama(path: Path, n_ctx: int, n_threads: int) -> ChatModel:
    """Load a GGUF file with llama-cpp-python, quietly."""
    require_llama_cpp()
    # Imported by name so that type checking does not need the optional extra installed.
    llama_cpp = importlib.import_module("llama_cpp")
    model: ChatModel = llama_cpp.Llama(
        model_path=str(path), n_ctx=n_ctx, n_threads=n_threads, verbose=False
    )
    return model


def load_llama_embedder(path: Path, n_ctx: int, n_threads: int) -> EmbeddingModel:
    """Load a GGUF file with llama-cpp-python in embedding mode, quietly.

    A context made for generation cannot embed (llama.cpp decides at load time), so this is a
    second instance of the same weights (memory-mapped, so the file's pages are shared). The
    model's own pooling applies: an embedding model's (mean, CLS, last), or none for a chat
    model, whose per-token vectors `LocalProvider.embed` mean-pools.
    """
    require_llama_cpp()
    llama_cpp = importlib.import_module("llama_cpp")
    model: EmbeddingModel = llama_cpp.Llama(
        model_path=str(path), n_ctx=n_ctx, n_threads=n_threads, embedding=True, verbose=False
    )
    return model


def _embed_each(model: EmbeddingModel, texts: list[str]) -> tuple[list[Any], int]:
    """Each text's raw embedding and the tokens read, one text per call.

    One at a time because llama-cpp-python (0.3.36) reads the per-token vectors of every
    sequence after the first of a batch from the wrong offset when the model has no pooling,
    which is the case of chat models; a text longer than the batch (512 tokens) is cut there.
    """
    out: list[Any] = []
    tokens = 0
    for text in texts:
        raw, count = model.embed([text], normalize=False, truncate=True, return_count=True)
        out.append(raw[0])
        tokens += int(count)
    return out, tokens


def pooled(vectors: Any) -> tuple[float, ...]:
    """One text's embedding as llama.cpp returns it, as one L2-normalised vector: a pooled
    vector as it is, per-token vectors (a model without pooling) averaged first.

    Raises:
        ValueError: it is not one vector or a list of equally long ones.
    """
    array = np.asarray(vectors, dtype=np.float64)
    if array.ndim == 2:
        array = array.mean(axis=0)
    if array.ndim != 1 or array.size == 0 or not np.all(np.isfinite(array)):
        raise ValueError("not a vector of numbers")
    norm = float(np.linalg.norm(array))
    return tuple(float(x) for x in (array / norm if norm > 0 else array))


@dataclass
class LoadedModel:
    """A loaded model and the lock that keeps it to one request at a time."""

    model: Any
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


class ModelLoader:
    """Loads each GGUF file once and hands the same model to every provider sharing this loader.

    Pass one loader to several `LocalProvider`s (e.g. target and optimizer both `local:default`)
    so they share one copy of the weights and one lock.
    """

    def __init__(
        self,
        load: LoadFn | None = None,
        *,
        n_threads: int | None = None,
        load_embedder: EmbedLoadFn | None = None,
    ) -> None:
        if load is None:
            require_llama_cpp()
            load = load_llama
        self._load = load
        self._load_embedder = load_embedder or load_llama_embedder
        self._n_threads = n_threads or os.cpu_count() or 1
        self._models: dict[tuple[Path, int, bool], LoadedModel] = {}
        self._loading = asyncio.Lock()

    async def get(self, path: Path, n_ctx: int, *, embedding: bool = False) -> LoadedModel:
        """The loaded model for `path`, loading it in a worker thread on first use; with
        `embedding`, its embedding-mode instance (loaded separately, also once)."""
        key = (path.resolve(), n_ctx, embedding)
        load: Callable[[Path, int, int], Any] = self._load_embedder if embedding else self._load
        async with self._loading:
            loaded = self._models.get(key)
            if loaded is None:
                try:
                    model = await asyncio.to_thread(load, path, n_ctx, self._n_threads)
                except MissingDependencyError:
                    raise
                except Exception as exc:
                    raise FatalProviderError(
                        f"could not load the local model {path}: {exc}; "
                        "check that the file is a GGUF model llama-cpp-python supports"
                    ) from exc
                loaded = LoadedModel(model)
                self._models[key] = loaded
            return loaded

    def close(self) -> None:
        """Free every loaded model."""
        models, self._models = self._models, {}
        for loaded in models.values():
            close = getattr(loaded.model, "close", None)
            if callable(close):
                close()


class LocalProvider:
    """Runs `local:<name or path.gguf>` in-process (names: `promptopt.llm.local_models`)."""

    def __init__(
        self,
        spec: ModelSpec,
        *,
        base_dir: Path,
        loader: ModelLoader | None = None,
        cache_dir: Path | None = None,
    ) -> None:
        self._spec = spec
        generation_kwargs(spec.sampling_params())  # a misspelt parameter fails before any work
        self._owns_loader = loader is None
        # The loader comes first so a missing llama-cpp-python is reported before a
        # gigabyte of weights is assembled for nothing.
        self._loader = loader if loader is not None else ModelLoader()
        self._path = resolve_model(spec.name, base_dir=base_dir, cache_dir=cache_dir)
        self._n_ctx = _positive_int(spec.params.get("n_ctx", DEFAULT_N_CTX), "n_ctx")

    @property
    def endpoint(self) -> str:
        """`local:<file name>`: one endpoint per weights file."""
        return f"local:{self._path.name}"

    @property
    def model_id(self) -> str:
        """The id from the task file, e.g. `local:default`."""
        return self._spec.model

    @property
    def path(self) -> Path:
        """The GGUF file this provider runs."""
        return self._path

    async def complete(self, request: ChatRequest) -> Completion:
        """Generate one answer; any failure of the local model is fatal."""
        kwargs = generation_kwargs({**self._spec.sampling_params(), **request.params})
        loaded = await self._loader.get(self._path, self._n_ctx)
        messages = [{"role": m["role"], "content": m["content"]} for m in request.messages]
        async with loaded.lock:
            started = time.perf_counter()
            try:
                response = await asyncio.to_thread(
                    loaded.model.create_chat_completion, messages=messages, **kwargs
                )
            except Exception as exc:
                raise FatalProviderError(f"local model {self.model_id} failed: {exc}") from exc
            latency = time.perf_counter() - started
        return self._to_completion(response, latency)

    async def embed(self, texts: Sequence[str]) -> Embeddings:
        """Embed `texts` with the model in llama.cpp's embedding mode (loaded on first use,
        once); any failure of the local model is fatal."""
        loaded = await self._loader.get(self._path, self._n_ctx, embedding=True)
        model: EmbeddingModel = loaded.model
        async with loaded.lock:
            started = time.perf_counter()
            try:
                raw, tokens = await asyncio.to_thread(_embed_each, model, list(texts))
            except Exception as exc:
                raise FatalProviderError(
                    f"local model {self.model_id} could not embed: {exc}"
                ) from exc
            latency = time.perf_counter() - started
        try:
            vectors = tuple(pooled(vector) for vector in raw)
        except (TypeError, ValueError) as exc:
            raise FatalProviderError(
                f"local model {self.model_id} returned embeddings that are not one list of "
                f"numbers per text: {exc}"
            ) from exc
        if len(vectors) != len(texts):
            raise FatalProviderError(
                f"local model {self.model_id} returned {len(vectors)} embeddings for "
                f"{len(texts)} texts"
            )
        return Embeddings(
            vectors=vectors, usage=Usage(input=int(tokens)), model=self.model_id, latency_s=latency
        )

    async def aclose(self) -> None:
        """Free the model when this provider loaded it itself (a shared loader is its owner's)."""
        if self._owns_loader:
            self._loader.close()

    def _to_completion(self, response: Any, latency: float) -> Completion:
        try:
            choice = response["choices"][0]
            text = choice["message"]["content"] or ""
            finish_reason = normalize_finish_reason(choice.get("finish_reason"))
            usage = response.get("usage") or {}
            tokens = Usage(
                input=int(usage.get("prompt_tokens", 0)),
                output=int(usage.get("completion_tokens", 0)),
            )
        except (KeyError, IndexError, TypeError, AttributeError, ValueError) as exc:
            raise FatalProviderError(
                f"local model {self.model_id} returned an answer without "
                f"choices[0].message: {exc!r}"
            ) from exc
        return Completion(
            text=str(text),
            usage=tokens,
            model=self.model_id,
            latency_s=latency,
            finish_reason=finish_reason,
        )


def generation_kwargs(params: Mapping[str, Any]) -> dict[str, Any]:
    """Map request parameters onto create_chat_completion arguments; unknown names are fatal."""
    unknown = sorted(set(params) - GENERATION_PARAMS - LOAD_PARAMS)
    if unknown:
        valid = ", ".join(sorted(GENERATION_PARAMS | LOAD_PARAMS))
        raise FatalProviderError(
            f"the local provider does not know the parameter(s) {', '.join(unknown)}; "
            f"valid ones are: {valid}"
        )
    return {k: v for k, v in params.items() if k in GENERATION_PARAMS}


def _positive_int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise FatalProviderError(f"params.{name} must be a positive integer, not {value!r}")
    return value
