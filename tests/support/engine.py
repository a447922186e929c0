"""One strategy run through the engine, or one search state outside it, with scripted models:
what every strategy's tests set up the same way."""

from __future__ import annotations

import random
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from promptopt.llm.budget import BudgetCaps
from promptopt.llm.cache import NullCache
from promptopt.llm.journal import ResponseJournal
from promptopt.llm.providers.base import Embedder, Provider
from promptopt.run.folder import EVENTS, RESPONSES, RunFolder
from promptopt.scoring.runtime import Runtime, RuntimeOptions
from promptopt.search.engine import Engine
from promptopt.search.meta_prompts import load_meta_prompts
from promptopt.search.plan import RunSettings, StopRules
from promptopt.search.state import SearchState
from promptopt.search.strategies.registry import make_strategy
from promptopt.task.loader import LoadedTask, load_task


def strategy_settings(
    strategy: str,
    caps: BudgetCaps | None = None,
    stop: StopRules | None = None,
    seed: int = 0,
    **params: Any,
) -> RunSettings:
    """Run settings for `strategy` with validated `params`, concurrency 4."""
    _, validated = make_strategy(strategy, params)
    return RunSettings(
        strategy=strategy,
        params=validated.model_dump(mode="json"),
        seed=seed,
        caps=caps or BudgetCaps(),
        stop=stop or StopRules(),
        concurrency=4,
    )


async def run_engine(
    task_file: Path,
    folder: RunFolder,
    settings: RunSettings,
    scripted: Mapping[str, Provider],
    *,
    resume: bool = False,
    embedder: Embedder | None = None,
) -> dict[str, Any]:
    """Run (or resume) the settings' strategy on the task into `folder`, with the scripted
    providers by role (and `embedder` as the task's embedding model), no response cache and
    the folder's journal; the summary."""
    task = load_task(task_file)
    strategy, _ = make_strategy(settings.strategy, settings.params)
    runtime = Runtime(
        task,
        RuntimeOptions(concurrency=4, caps=settings.caps),
        store=NullCache(),
        journal=ResponseJournal(folder.file(RESPONSES)),
        providers=scripted,
        embedder=embedder,
    )
    async with runtime:
        engine = Engine(task, runtime, folder, settings, strategy, load_meta_prompts())
        return (await engine.run(resume=resume)).to_json()


def search_state(task: LoadedTask, runtime: Runtime, seed: int = 0) -> SearchState:
    """The engine's search state for `task` on `runtime`, outside the engine."""
    return SearchState(
        train=task.splits["train"],
        dev=task.split("dev"),
        test=task.split("test"),
        scorer=runtime.scorer,
        optimizer=lambda: runtime.client("optimizer"),
        ledger=runtime.ledger,
        meta_prompts=load_meta_prompts(),
        rng=random.Random(seed),
        render_input=task.render_input,
        task_description=task.spec.description or "",
        layout=task.spec.prompt_layout(),
        judge=runtime.judge,
    )


def folder_events(folder: RunFolder, kind: str) -> list[dict[str, Any]]:
    """The events of one kind in a run folder's events.jsonl."""
    return [e for e in folder.read_jsonl(EVENTS) if e["event"] == kind]
