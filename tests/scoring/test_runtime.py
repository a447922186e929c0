from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from promptopt.app.models import apply_default_models, override_models, override_models_from_config
from promptopt.errors import UsageError
from promptopt.llm.budget import BudgetCaps
from promptopt.llm.messages import ChatRequest
from promptopt.llm.providers.scripted import ScriptedProvider
from promptopt.llm.providers.wire import AiohttpWire
from promptopt.scoring.runtime import Runtime, RuntimeOptions
from promptopt.task.loader import load_task
from promptopt.testing.fake_server import FakeOpenAIServer
from tests.support.search import write_task


def task_without_models(tmp_path: Path) -> Path:
    path = write_task(tmp_path)
    spec = yaml.safe_load(path.read_text())
    del spec["models"]
    path.write_text(yaml.safe_dump(spec))
    return path


def test_no_models_and_no_key_means_the_embedded_local_models(tmp_path: Path) -> None:
    task, note = apply_default_models(load_task(task_without_models(tmp_path)), {})
    assert task.spec.models.target is not None and task.spec.models.optimizer is not None
    assert task.spec.models.target.model == "local:target"
    assert task.spec.models.optimizer.model == "local:optimizer"
    assert note is not None and "no API key" in note and "local:target" in note


def test_an_api_key_picks_that_provider(tmp_path: Path) -> None:
    task, note = apply_default_models(
        load_task(task_without_models(tmp_path)), {"OPENAI_API_KEY": "sk-test"}
    )
    assert task.spec.models.target is not None
    assert task.spec.models.target.model.startswith("openai:")
    assert note is not None and "OPENAI_API_KEY is set" in note and "sk-test" not in note


def test_named_models_are_kept(tmp_path: Path) -> None:
    original = load_task(write_task(tmp_path))
    task, note = apply_default_models(original, {})
    assert note is None and task is original


def test_flags_replace_the_model_and_keep_sampling_options(tmp_path: Path) -> None:
    task = override_models(
        load_task(write_task(tmp_path)), target="openai:gpt-4o-mini", base_url="http://x/v1"
    )
    target = task.spec.models.target
    assert target is not None and target.model == "openai:gpt-4o-mini"
    assert target.max_tokens == 8 and target.base_url == "http://x/v1"
    assert task.spec.models.optimizer is not None
    assert task.spec.models.optimizer.base_url == "http://x/v1"


def test_resume_uses_the_models_the_run_started_with(tmp_path: Path) -> None:
    task = load_task(write_task(tmp_path))
    models = {"target": {"model": "openai:gpt-4o-mini"}, "judge": None}
    resumed = override_models_from_config(task, models)
    assert resumed.spec.models.target is not None
    assert resumed.spec.models.target.model == "openai:gpt-4o-mini"


async def test_a_role_without_a_model_says_how_to_set_it(tmp_path: Path) -> None:
    task = load_task(task_without_models(tmp_path))
    async with Runtime(task, RuntimeOptions(no_cache=True), env={}) as runtime:
        with pytest.raises(UsageError, match="--target"):
            runtime.client("target")


async def test_openai_compatible_models_get_a_lean_pool_that_closes_with_the_command(
    tmp_path: Path,
) -> None:
    path = write_task(tmp_path)
    spec = yaml.safe_load(path.read_text())
    with FakeOpenAIServer() as server:
        endpoint = {"base_url": server.base_url}
        spec["models"]["target"] = {"model": "openai:small", **endpoint}
        spec["models"]["optimizer"] = {"model": "openai:large", **endpoint}
        path.write_text(yaml.safe_dump(spec))
        runtime = Runtime(load_task(path), RuntimeOptions(no_cache=True), env={})
        target, optimizer = runtime.client("target"), runtime.client("optimizer")
        wires = [getattr(c.provider, "_wire", None) for c in (target, optimizer)]
        assert all(isinstance(w, AiohttpWire) for w in wires)
        for client in (target, optimizer):
            await client.provider.complete(
                ChatRequest(messages=({"role": "user", "content": "hi"},))
            )
        sessions = [getattr(w, "_session", None) for w in wires]
        assert all(s is not None and not s.closed for s in sessions)
        await runtime.aclose()
    assert all(s is not None and s.closed for s in sessions)


def task_with_models(tmp_path: Path, **models: object) -> Path:
    path = write_task(tmp_path)
    spec = yaml.safe_load(path.read_text())
    spec["models"].update(models)
    path.write_text(yaml.safe_dump(spec))
    return path


async def test_embeddings_from_an_openai_compatible_optimizer_are_cached(tmp_path: Path) -> None:
    texts = ["Classify the review.", "Say positive or negative."]
    with FakeOpenAIServer() as server:
        optimizer = {"model": "openai:fake-model", "base_url": server.base_url}
        task = load_task(task_with_models(tmp_path, optimizer=optimizer))
        options = RuntimeOptions(cache_dir=tmp_path / "cache")
        async with Runtime(task, options, env={}) as first:
            vectors = await first.embed(texts)
            client = first.embedding
            assert client is not None
            assert client.spec.model == "openai:fake-model"  # the optimizer's own model
            assert client.usage.requests == 1 and client.usage.tokens.input == 7
            assert client.usage.to_json()["cost_usd"] == 0.0  # a server on this machine
            assert first.ledger.calls == {"embedding": 1}
        async with Runtime(task, options, env={}) as second:
            again = await second.embed(list(reversed(texts)))
            assert second.embedding is not None and second.embedding.usage.cache_hits == 2
        assert server.embedding_requests == 1
        assert server.embedded_texts == texts
    assert vectors is not None and again == list(reversed(vectors))
    assert len(vectors[0]) == 16


async def test_without_an_embedding_model_there_are_no_embeddings(tmp_path: Path) -> None:
    async with Runtime(load_task(write_task(tmp_path)), RuntimeOptions(no_cache=True)) as rt:
        assert await rt.embed(["a"]) is None
        assert rt.embedding is None


def test_a_model_without_embeddings_is_refused_by_name(tmp_path: Path) -> None:
    task = load_task(task_with_models(tmp_path, embedding="anthropic:claude-haiku-4-5"))
    runtime = Runtime(task, RuntimeOptions(no_cache=True), env={})
    with pytest.raises(UsageError, match="anthropic has no embeddings endpoint"):
        runtime.embedding_client()


def test_an_unpriced_embedding_model_under_a_cost_cap_is_refused(tmp_path: Path) -> None:
    embedding = {"model": "openai:my-embed", "base_url": "https://embed.example.com/v1"}
    task = load_task(task_with_models(tmp_path, embedding=embedding))
    options = RuntimeOptions(no_cache=True, caps=BudgetCaps(cost_usd=1.0))
    runtime = Runtime(task, options, env={})
    with pytest.raises(UsageError, match="embedding"):
        runtime.embedding_client()


class ClosingProvider(ScriptedProvider):
    """A scripted provider that records its closing, and may fail at it."""

    def __init__(self, fails: bool) -> None:
        super().__init__(["ok"])
        self.fails = fails
        self.closed = False

    async def aclose(self) -> None:
        self.closed = True
        if self.fails:
            raise OSError("the socket was already gone")


async def test_every_provider_is_closed_even_when_one_fails_to_close(tmp_path: Path) -> None:
    failing, other = ClosingProvider(fails=True), ClosingProvider(fails=False)
    runtime = Runtime(
        load_task(write_task(tmp_path)),
        RuntimeOptions(no_cache=True),
        env={},
        providers={"target": failing, "optimizer": other},
    )
    runtime.client("target"), runtime.client("optimizer")
    with pytest.raises(OSError, match="already gone"):
        await runtime.aclose()
    assert failing.closed and other.closed
