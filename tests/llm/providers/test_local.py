"""LocalProvider: parameter mapping, sharing and serializing loaded models, errors; and, marked
`local`, real answers from the default embedded model."""

from __future__ import annotations

import asyncio
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from promptopt.errors import FatalProviderError, MissingDependencyError
from promptopt.llm.local_models import resolve_model
from promptopt.llm.messages import ChatRequest, Usage
from promptopt.llm.providers.local import (
    ChatModel,
    LocalProvider,
    ModelLoader,
    generation_kwargs,
    pooled,
)
from promptopt.task.modelspec import ModelSpec


def ask(text: str, system: str = "Answer briefly.", **params: Any) -> ChatRequest:
    return ChatRequest(
        messages=({"role": "system", "content": system}, {"role": "user", "content": text}),
        params=params,
    )


class FakeModel:
    """Answers with the upper-cased user message and records how it was called."""

    def __init__(
        self, delay: float = 0.0, fail: Exception | None = None, finish_reason: str | None = None
    ) -> None:
        self.finish_reason = finish_reason
        self.calls: list[dict[str, Any]] = []
        self.threads: set[int] = set()
        self.delay = delay
        self.fail = fail
        self.closed = False
        self._busy = 0
        self.max_busy = 0
        self._guard = threading.Lock()

    def create_chat_completion(self, **kwargs: Any) -> Any:
        with self._guard:
            self._busy += 1
            self.max_busy = max(self.max_busy, self._busy)
        try:
            self.calls.append(kwargs)
            self.threads.add(threading.get_ident())
            time.sleep(self.delay)
            if self.fail is not None:
                raise self.fail
            text = kwargs["messages"][-1]["content"].upper()
            choice: dict[str, Any] = {"message": {"role": "assistant", "content": text}}
            if self.finish_reason is not None:
                choice["finish_reason"] = self.finish_reason
            return {
                "model": "/some/path.gguf",
                "choices": [choice],
                "usage": {"prompt_tokens": 21, "completion_tokens": 3, "total_tokens": 24},
            }
        finally:
            with self._guard:
                self._busy -= 1

    def close(self) -> None:
        self.closed = True


class FakeLoad:
    def __init__(self, model: FakeModel | None = None) -> None:
        self.model = model or FakeModel()
        self.loads: list[tuple[Path, int, int]] = []

    def __call__(self, path: Path, n_ctx: int, n_threads: int) -> ChatModel:
        self.loads.append((path, n_ctx, n_threads))
        return self.model


@pytest.fixture
def gguf(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.gguf"
    path.write_bytes(b"GGUF")
    return path


def provider(
    model: str, base_dir: Path, load: FakeLoad, **spec: Any
) -> tuple[LocalProvider, ModelLoader]:
    loader = ModelLoader(load, n_threads=2)
    return LocalProvider(ModelSpec(model=model, **spec), base_dir=base_dir, loader=loader), loader


def test_answers_with_usage_and_ids(tmp_path: Path, gguf: Path) -> None:
    load = FakeLoad()
    local, _ = provider("local:tiny.gguf", tmp_path, load)
    result = asyncio.run(local.complete(ask("a gorgeous, witty film")))
    assert result.text == "A GORGEOUS, WITTY FILM"
    assert result.usage == Usage(input=21, output=3)
    assert result.model == "local:tiny.gguf"
    assert result.latency_s >= 0
    assert local.endpoint == "local:tiny.gguf"
    assert local.model_id == "local:tiny.gguf"
    assert load.loads == [(gguf, 4096, 2)]
    assert load.model.calls[0]["messages"] == [
        {"role": "system", "content": "Answer briefly."},
        {"role": "user", "content": "a gorgeous, witty film"},
    ]
    assert threading.get_ident() not in load.model.threads


@pytest.mark.parametrize(("reported", "expected"), [("length", "length"), ("stop", "stop")])
def test_reports_llama_cpp_finish_reason(
    tmp_path: Path, gguf: Path, reported: str, expected: str
) -> None:
    local, _ = provider("local:tiny.gguf", tmp_path, FakeLoad(FakeModel(finish_reason=reported)))
    result = asyncio.run(local.complete(ask("q", max_tokens=1)))
    assert result.finish_reason == expected


def test_an_answer_without_finish_reason_has_none(tmp_path: Path, gguf: Path) -> None:
    local, _ = provider("local:tiny.gguf", tmp_path, FakeLoad())
    assert asyncio.run(local.complete(ask("q"))).finish_reason is None


def test_maps_sampling_parameters(tmp_path: Path, gguf: Path) -> None:
    load = FakeLoad()
    local, _ = provider(
        "local:tiny.gguf",
        tmp_path,
        load,
        temperature=0,
        max_tokens=16,
        params={"n_ctx": 1024, "seed": 7, "stop": ["\n"]},
    )
    asyncio.run(local.complete(ask("q", temperature=0.5)))
    call = load.model.calls[0]
    del call["messages"]
    assert call == {"temperature": 0.5, "max_tokens": 16, "seed": 7, "stop": ["\n"]}
    assert load.loads[0][1] == 1024


def test_unknown_parameter_fails_before_loading(tmp_path: Path, gguf: Path) -> None:
    load = FakeLoad()
    with pytest.raises(FatalProviderError, match="logprobz") as caught:
        provider("local:tiny.gguf", tmp_path, load, params={"logprobz": True})
    assert "max_tokens" in str(caught.value)
    assert load.loads == []
    with pytest.raises(FatalProviderError, match="n_ctx"):
        provider("local:tiny.gguf", tmp_path, load, params={"n_ctx": "big"})


def test_generation_kwargs_drops_load_parameters() -> None:
    assert generation_kwargs({"n_ctx": 512, "top_k": 1}) == {"top_k": 1}


def test_one_request_at_a_time_per_model(tmp_path: Path, gguf: Path) -> None:
    load = FakeLoad(FakeModel(delay=0.02))
    local, _ = provider("local:tiny.gguf", tmp_path, load)

    async def many() -> list[str]:
        results = await asyncio.gather(*(local.complete(ask(f"q{i}")) for i in range(6)))
        return [r.text for r in results]

    assert asyncio.run(many()) == [f"Q{i}" for i in range(6)]
    assert load.model.max_busy == 1
    assert len(load.loads) == 1


def test_providers_sharing_a_loader_share_the_model(tmp_path: Path, gguf: Path) -> None:
    load = FakeLoad(FakeModel(delay=0.01))
    loader = ModelLoader(load, n_threads=1)
    a = LocalProvider(ModelSpec(model="local:tiny.gguf"), base_dir=tmp_path, loader=loader)
    b = LocalProvider(ModelSpec(model=f"local:{gguf}"), base_dir=Path("/"), loader=loader)

    async def both() -> None:
        await asyncio.gather(a.complete(ask("x")), b.complete(ask("y")), a.complete(ask("z")))
        await a.aclose()
        await b.aclose()

    asyncio.run(both())
    assert len(load.loads) == 1
    assert load.model.max_busy == 1
    # The loader was injected, so its owner, not a provider, frees the model.
    assert not load.model.closed
    loader.close()
    assert load.model.closed


def test_generation_failure_is_fatal(tmp_path: Path, gguf: Path) -> None:
    load = FakeLoad(FakeModel(fail=ValueError("Requested tokens (5000) exceed context window")))
    local, _ = provider("local:tiny.gguf", tmp_path, load)
    with pytest.raises(FatalProviderError, match=r"local:tiny\.gguf failed: Requested tokens"):
        asyncio.run(local.complete(ask("q")))


def test_load_failure_is_fatal(tmp_path: Path, gguf: Path) -> None:
    def broken(path: Path, n_ctx: int, n_threads: int) -> ChatModel:
        raise ValueError("Failed to load model from file")

    local = LocalProvider(
        ModelSpec(model="local:tiny.gguf"), base_dir=tmp_path, loader=ModelLoader(broken)
    )
    with pytest.raises(FatalProviderError, match=r"could not load the local model .*tiny\.gguf"):
        asyncio.run(local.complete(ask("q")))


def test_malformed_answer_is_fatal(tmp_path: Path, gguf: Path) -> None:
    class Empty(FakeModel):
        def create_chat_completion(self, **kwargs: Any) -> Any:
            return {"choices": []}

    local, _ = provider("local:tiny.gguf", tmp_path, FakeLoad(Empty()))
    with pytest.raises(FatalProviderError, match="without choices"):
        asyncio.run(local.complete(ask("q")))


def test_missing_llama_cpp_names_the_install_command(
    tmp_path: Path, gguf: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "llama_cpp", None)
    with pytest.raises(MissingDependencyError) as caught:
        LocalProvider(ModelSpec(model="local:tiny.gguf"), base_dir=tmp_path)
    assert str(caught.value) == (
        "The local provider needs llama-cpp-python, which is not installed: "
        "run pip install 'promptopt-cli[local]'"
    )


# --- the real default model -------------------------------------------------------------------

SST2 = "Classify the sentiment of the sentence as positive or negative. Answer with the label only."
TREC = (
    "Classify the question into one of: Description, Entity, Expression, Human, Location, "
    "Number. Answer with the label only."
)


@pytest.fixture(scope="module")
def real_model() -> Iterator[LocalProvider]:
    pytest.importorskip("llama_cpp", reason="llama-cpp-python is missing (promptopt-cli[local])")
    try:
        resolve_model("default")
    except MissingDependencyError as missing:
        pytest.skip(f"the default local model's weights are absent: {missing}")
    local = LocalProvider(
        ModelSpec(model="local:default", temperature=0, max_tokens=8), base_dir=Path.cwd()
    )
    yield local
    asyncio.run(local.aclose())


@pytest.mark.local
@pytest.mark.parametrize(
    ("system", "text", "label"),
    [
        (SST2, "a gorgeous, witty film", "positive"),
        (SST2, "a dull, lifeless and tedious mess", "negative"),
        (TREC, "How many feet are in a mile?", "number"),
        (TREC, "Who wrote Hamlet?", "human"),
    ],
)
def test_default_model_classifies(
    real_model: LocalProvider, system: str, text: str, label: str
) -> None:
    result = asyncio.run(real_model.complete(ask(text, system=system)))
    assert label in result.text.lower()
    assert result.usage.input > 10
    assert 0 < result.usage.output <= 8
    assert result.finish_reason in ("stop", "length")
    assert result.model == "local:default"
    assert real_model.endpoint == "local:qwen2.5-coder-0.5b-instruct.gguf"


@pytest.mark.local
def test_default_model_is_deterministic_at_temperature_zero(real_model: LocalProvider) -> None:
    request = ask("Where is the Eiffel Tower?", system=TREC)

    async def twice() -> tuple[str, str]:
        first, second = await asyncio.gather(
            real_model.complete(request), real_model.complete(request)
        )
        return first.text, second.text

    first, second = asyncio.run(twice())
    assert first == second


class FakeEmbeddingModel:
    """Embeds a text as (length, 1.0), like `Llama(..., embedding=True).embed`."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    def embed(
        self,
        input: list[str],
        normalize: bool = False,
        truncate: bool = True,
        return_count: bool = False,
    ) -> Any:
        self.calls.append({"input": input, "normalize": normalize, "return_count": return_count})
        vectors = [[float(len(text)), 1.0] for text in input]
        return (vectors, sum(len(text.split()) for text in input)) if return_count else vectors


def test_embeds_with_a_separate_embedding_mode_instance_loaded_once(
    tmp_path: Path, gguf: Path
) -> None:
    chat = FakeLoad()
    model = FakeEmbeddingModel()
    loads: list[tuple[Path, int, int]] = []

    def load_embedder(path: Path, n_ctx: int, n_threads: int) -> FakeEmbeddingModel:
        loads.append((path, n_ctx, n_threads))
        return model

    loader = ModelLoader(chat, n_threads=2, load_embedder=load_embedder)
    local = LocalProvider(ModelSpec(model="local:tiny.gguf"), base_dir=tmp_path, loader=loader)

    async def twice() -> tuple[Any, Any]:
        first = await local.embed(["ab", "three words here"])
        second = await local.embed(["c"])
        return first, second

    first, second = asyncio.run(twice())
    assert first.vectors == (unit(2.0, 1.0), unit(16.0, 1.0))
    assert first.usage == Usage(input=4)
    assert first.model == "local:tiny.gguf"
    assert second.vectors == (unit(1.0, 1.0),)
    assert loads == [(gguf, 4096, 2)]
    assert chat.loads == []  # the chat instance is not loaded to embed
    assert [c["input"] for c in model.calls] == [["ab"], ["three words here"], ["c"]]


def unit(*xs: float) -> tuple[float, ...]:
    norm = sum(x * x for x in xs) ** 0.5
    return tuple(x / norm for x in xs)


def test_per_token_vectors_of_a_model_without_pooling_are_averaged() -> None:
    assert pooled([[1.0, 0.0], [0.0, 1.0], [2.0, 2.0]]) == pytest.approx(unit(1.0, 1.0))
    assert pooled([3.0, 4.0]) == pytest.approx((0.6, 0.8))
    for bad in ([], [[1.0], [1.0, 2.0]], [float("nan")]):
        with pytest.raises(ValueError):
            pooled(bad)


def test_embedding_failure_is_fatal(tmp_path: Path, gguf: Path) -> None:
    def load_embedder(path: Path, n_ctx: int, n_threads: int) -> Any:
        raise RuntimeError("bad pooling")

    loader = ModelLoader(FakeLoad(), n_threads=2, load_embedder=load_embedder)
    local = LocalProvider(ModelSpec(model="local:tiny.gguf"), base_dir=tmp_path, loader=loader)
    with pytest.raises(FatalProviderError, match="could not load the local model"):
        asyncio.run(local.embed(["a"]))


@pytest.mark.local
def test_default_model_embeds_two_texts() -> None:
    pytest.importorskip("llama_cpp", reason="llama-cpp-python is missing (promptopt-cli[local])")
    try:
        resolve_model("default")
    except MissingDependencyError as missing:
        pytest.skip(f"the default local model's weights are absent: {missing}")
    local = LocalProvider(ModelSpec(model="local:default"), base_dir=Path.cwd())
    texts = ["Classify the review as positive or negative.", "Translate the sentence into French."]
    alike = "Say the sentiment: positive or negative."

    async def go() -> tuple[Any, Any]:
        try:
            return await local.embed(texts), await local.embed([alike])
        finally:
            await local.aclose()

    both, again = asyncio.run(go())
    assert len(both.vectors) == 2
    first, second = both.vectors
    assert len(first) == len(second) > 100
    assert abs(sum(x * x for x in first) - 1.0) < 1e-6  # L2-normalised
    assert first != second
    assert both.usage.input > 5

    def cosine(a: tuple[float, ...], b: tuple[float, ...]) -> float:
        return sum(x * y for x, y in zip(a, b, strict=True))

    # Mean-pooled hidden states put two instructions for one task closer together than an
    # unrelated one (0.86 against 0.70, measured with the 0.5B model).
    assert cosine(first, again.vectors[0]) > cosine(first, second) + 0.05
