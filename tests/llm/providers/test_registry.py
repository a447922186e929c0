"""The provider registry: names to builders, unknown names listed."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import types
from pathlib import Path

import pytest

from promptopt.errors import MissingDependencyError, UsageError
from promptopt.llm.providers.anthropic import AnthropicProvider
from promptopt.llm.providers.base import Embedder
from promptopt.llm.providers.openai import OpenAIProvider
from promptopt.llm.providers.registry import EMBEDDERS, PROVIDERS, build_embedder, build_provider
from promptopt.llm.providers.scripted import ScriptedProvider
from promptopt.task.modelspec import ModelSpec


def test_builds_each_provider(tmp_path: Path) -> None:
    (tmp_path / "t.json").write_text('["ok"]')
    env = {"OPENAI_API_KEY": "sk-x-123456", "ANTHROPIC_API_KEY": "sk-ant-123456"}

    def build(model: str) -> object:
        return build_provider(ModelSpec(model=model), base_dir=tmp_path, env=env)

    assert isinstance(build("openai:gpt-4o-mini"), OpenAIProvider)
    ollama = build("ollama:llama3")
    assert isinstance(ollama, OpenAIProvider)
    assert ollama.endpoint == "http://localhost:11434/v1"
    assert isinstance(build("anthropic:claude-haiku-4-5"), AnthropicProvider)
    assert isinstance(build("scripted:t.json"), ScriptedProvider)


def test_unknown_provider_lists_valid_names(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="unknown model provider 'gemini'") as caught:
        build_provider(ModelSpec(model="gemini:pro"), base_dir=tmp_path, env={})
    for name in PROVIDERS:
        assert name in str(caught.value)


def test_registry_does_not_import_the_local_model() -> None:
    code = (
        "import sys, promptopt.llm.providers.registry; "
        "assert 'promptopt.llm.providers.local' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_local_builder_uses_the_local_module(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    built: list[tuple[ModelSpec, Path]] = []

    class FakeLocal:
        def __init__(self, spec: ModelSpec, *, base_dir: Path) -> None:
            built.append((spec, base_dir))

    fake = types.ModuleType("promptopt.llm.providers.local")
    fake.LocalProvider = FakeLocal  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "promptopt.llm.providers.local", fake)
    spec = ModelSpec(model="local:default")
    assert isinstance(build_provider(spec, base_dir=tmp_path, env={}), FakeLocal)
    assert built == [(spec, tmp_path)]


def test_local_without_its_module_is_a_missing_dependency(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # None in sys.modules makes the import fail as if the module were not installed.
    monkeypatch.setitem(sys.modules, "promptopt.llm.providers.local", None)
    with pytest.raises(MissingDependencyError, match="local provider"):
        build_provider(ModelSpec(model="local:default"), base_dir=tmp_path, env={})


def test_builds_embedders_for_providers_with_embeddings(tmp_path: Path) -> None:
    (tmp_path / "emb.py").write_text("def vector(text):\n    return [float(len(text)), 1.0]\n")
    env = {"OPENAI_API_KEY": "sk-x-123456"}

    def build(model: str) -> Embedder:
        return build_embedder(ModelSpec(model=model), base_dir=tmp_path, env=env)

    assert isinstance(build("openai:text-embedding-3-small"), OpenAIProvider)
    assert isinstance(build("ollama:nomic-embed-text"), OpenAIProvider)
    scripted = build("scripted:emb.py:vector")
    assert asyncio.run(scripted.embed(["abc"])).vectors == ((3.0, 1.0),)


def test_anthropic_cannot_embed(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="anthropic has no embeddings endpoint") as caught:
        build_embedder(ModelSpec(model="anthropic:claude-haiku-4-5"), base_dir=tmp_path, env={})
    for name in EMBEDDERS:
        assert name in str(caught.value)


def test_a_scripted_embedder_is_a_python_function(tmp_path: Path) -> None:
    (tmp_path / "t.json").write_text('["ok"]')
    with pytest.raises(UsageError, match=r"scripted:FILE\.py:FUNCTION"):
        build_embedder(ModelSpec(model="scripted:t.json"), base_dir=tmp_path, env={})
