"""APOHF's embeddings: the run's embedding model end to end, the hashed fallback with its note,
and `embedding: provider | hashed`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from promptopt.errors import UsageError
from promptopt.llm.providers.scripted import ScriptedProvider
from promptopt.run.folder import RunFolder
from tests.search.strategies.test_apohf import Killed, pool_optimizer, settings_for, with_judge
from tests.support.engine import folder_events, run_engine
from tests.support.search import PROPERTY, Counter, providers, target_answer, write_task


class PropertyEmbedding:
    """An embedding model that sees the hidden property: prompts with it point one way, the
    others another (with a little of each prompt's length, so that no two are equal)."""

    def __init__(self) -> None:
        self.texts: list[str] = []

    def __call__(self, text: str) -> list[float]:
        self.texts.append(text)
        has = PROPERTY in text.lower()
        return [1.0 if has else 0.0, 0.0 if has else 1.0, len(text) / 1000.0]


def task_file(tmp: Path, embedding: str | dict[str, str] | None) -> Path:
    path = write_task(tmp, strategy="apohf")
    if embedding is not None:
        spec = yaml.safe_load(path.read_text())
        spec["models"]["embedding"] = embedding
        path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


async def run(
    tmp: Path,
    folder: RunFolder,
    *,
    embedding: str | dict[str, str] | None = "scripted:emb",
    embedder: ScriptedProvider | None = None,
    embedding_mode: str = "auto",
    target: Counter | None = None,
    resume: bool = False,
) -> dict[str, Any]:
    """An APOHF run whose task names `embedding` as its embedding model (served by `embedder`),
    with search.params.embedding `embedding_mode`."""
    scripted = with_judge(providers(target or Counter(target_answer), Counter(pool_optimizer)))
    settings = settings_for(embedding=embedding_mode)
    return await run_engine(
        task_file(tmp, embedding), folder, settings, scripted, embedder=embedder, resume=resume
    )


async def test_apohf_uses_the_embedding_model_end_to_end(tmp_path: Path) -> None:
    model = PropertyEmbedding()
    embedder = ScriptedProvider((), name="emb", embedder=model)
    folder = RunFolder.create(tmp_path / "runs", "toy")
    summary = await run(tmp_path, folder, embedder=embedder)
    assert PROPERTY in summary["best_prompt"].lower()
    assert summary["test_comparison"]["verdict"] == "improved"
    (plan,) = folder_events(folder, "apohf_plan")
    assert plan["embedding"] == "provider" and plan["embedding_model"] == "scripted:emb"
    (note,) = folder_events(folder, "embedding")
    assert note["source"] == "provider"
    assert note["note"] == "candidate prompts embedded by scripted:emb"
    # Every prompt of the pool was embedded, once, in one request.
    assert len(model.texts) == len(plan["pool"]) == len(set(model.texts))
    usage = summary["usage"]["embedding"]
    assert usage["requests"] == 1 and usage["input_tokens"] > 0
    assert usage["cost_usd"] == 0.0
    assert summary["models"]["embedding"]["model"] == "scripted:emb"
    # Embedding calls are not optimizer calls.
    step = folder_events(folder, "step")[-1]
    assert step["calls"]["embedding"] == 1


async def test_without_an_embedding_model_auto_falls_back_to_hashed_and_says_so(
    tmp_path: Path,
) -> None:
    folder = RunFolder.create(tmp_path / "runs", "toy")
    summary = await run(tmp_path, folder, embedding=None)
    (plan,) = folder_events(folder, "apohf_plan")
    assert plan["embedding"] == "hashed" and plan["embedding_model"] is None
    (note,) = folder_events(folder, "embedding")
    assert note["source"] == "hashed"
    assert note["note"].startswith(
        "candidate prompts embedded by the built-in hashed embedding, the fallback, since the "
        "prompts could not be embedded: no embedding model"
    )
    assert "embedding" not in summary["usage"]


async def test_an_embedding_model_that_fails_falls_back_under_auto(tmp_path: Path) -> None:
    broken = ScriptedProvider((), name="emb")  # no embedding function: it cannot embed
    folder = RunFolder.create(tmp_path / "runs", "toy")
    summary = await run(tmp_path, folder, embedder=broken)
    (note,) = folder_events(folder, "embedding")
    assert note["source"] == "hashed"
    assert "scripted model emb has no embedding function" in note["note"]
    assert PROPERTY in summary["best_prompt"].lower()  # the search still ran
    assert summary["usage"]["embedding"]["errors"] == 1


async def test_embedding_provider_without_a_model_stops_with_what_to_do(tmp_path: Path) -> None:
    folder = RunFolder.create(tmp_path / "runs", "toy")
    with pytest.raises(UsageError, match=r"search\.params\.embedding is provider") as caught:
        await run(tmp_path, folder, embedding=None, embedding_mode="provider")
    assert "set models.embedding" in str(caught.value)


async def test_embedding_hashed_never_asks_the_model(tmp_path: Path) -> None:
    model = PropertyEmbedding()
    embedder = ScriptedProvider((), name="emb", embedder=model)
    folder = RunFolder.create(tmp_path / "runs", "toy")
    summary = await run(tmp_path, folder, embedder=embedder, embedding_mode="hashed")
    assert model.texts == []
    (plan,) = folder_events(folder, "apohf_plan")
    assert plan["embedding"] == "hashed"
    (note,) = folder_events(folder, "embedding")
    assert "asked for (search.params.embedding: hashed)" in note["note"]
    assert "embedding" not in summary["usage"]


async def test_a_resumed_run_does_not_embed_again(tmp_path: Path) -> None:
    def kill_at(n: int) -> None:
        if n == 30:
            raise Killed

    first = PropertyEmbedding()
    folder = RunFolder.create(tmp_path / "runs", "toy")
    with pytest.raises(Killed):
        await run(
            tmp_path,
            folder,
            embedder=ScriptedProvider((), name="emb", embedder=first),
            target=Counter(target_answer, on_call=kill_at),
        )
    assert first.texts, "the pool was embedded before the kill"
    second = PropertyEmbedding()
    summary = await run(
        tmp_path, folder, embedder=ScriptedProvider((), name="emb", embedder=second), resume=True
    )
    # No response cache here: the vectors come from the run's journal.
    assert second.texts == []
    assert summary["usage"]["embedding"]["requests"] == 1
    (plan,) = folder_events(folder, "apohf_plan")
    assert plan["embedding"] == "provider"


async def test_an_unpriced_model_that_could_not_embed_leaves_the_cost_known(
    tmp_path: Path,
) -> None:
    unpriced = {"model": "openai:embed", "base_url": "https://embed.example.com/v1"}
    folder = RunFolder.create(tmp_path / "runs", "toy")
    summary = await run(
        tmp_path, folder, embedding=unpriced, embedder=ScriptedProvider((), name="emb")
    )
    assert summary["usage"]["embedding"]["cost_usd"] == 0.0
    assert all(step["cost_usd"] == 0.0 for step in folder_events(folder, "step"))
