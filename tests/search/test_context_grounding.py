"""Grounded meta-prompts: the search context gives every meta-prompt the task's description,
labels, output format, a few training examples and the best instructions so far with their
scores, but only to templates that declare them, so custom meta-prompts keep working."""

from __future__ import annotations

import json
import random
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from promptopt.llm.cache import NullCache
from promptopt.llm.messages import ChatRequest
from promptopt.run.folder import RunFolder
from promptopt.scoring.runtime import Runtime, RuntimeOptions
from promptopt.search.context import HISTORY_SIZE, SearchContext
from promptopt.search.engine import Engine
from promptopt.search.meta_prompts import MetaPromptSet, load_meta_prompts
from promptopt.search.plan import RunSettings, StopRules
from promptopt.search.state import SearchState
from promptopt.search.strategies.registry import make_strategy
from promptopt.task.loader import LoadedTask, load_task
from tests.support import protegi as question_task
from tests.support.search import Counter, optimizer_answer, providers, target_answer, write_task

DESCRIPTION = "Say whether a film review is positive or negative."
SMALL_APE = {
    "num_subsamples": 1,
    "proposals_per_subsample": 3,
    "selection_budget": 40,
    "batch": 5,
    "top_k": 2,
    "resample_rounds": 1,
    "variations": 2,
}


class Setup:
    """A search context on a task, outside the engine, with counted scripted models."""

    def __init__(self, task: LoadedTask, target: Counter | None = None) -> None:
        self.target = target or Counter(target_answer)
        self.optimizer = Counter(optimizer_answer)
        self.runtime = Runtime(
            task,
            RuntimeOptions(),
            store=NullCache(),
            providers=providers(self.target, self.optimizer),
        )
        self.ctx = context(task, self.runtime)


def context(
    task: LoadedTask, runtime: Runtime, meta_prompts: MetaPromptSet | None = None
) -> SearchContext:
    state = SearchState(
        train=task.splits["train"],
        dev=task.split("dev"),
        scorer=runtime.scorer,
        optimizer=lambda: runtime.client("optimizer"),
        ledger=runtime.ledger,
        meta_prompts=meta_prompts or load_meta_prompts(),
        rng=random.Random(0),
        render_input=task.render_input,
        task_description=task.spec.description,
        layout=task.spec.prompt_layout(),
    )
    initial = state.add_candidate(state.layout.initial, operator="initial")
    assert initial is not None
    return state.context


async def run(
    task: LoadedTask,
    tmp: Path,
    strategy: str,
    params: dict[str, Any],
    optimizer: Counter,
    meta_prompts: MetaPromptSet | None = None,
    target: Counter | None = None,
) -> dict[str, Any]:
    settings = RunSettings(
        strategy=strategy,
        params=make_strategy(strategy, params)[1].model_dump(mode="json"),
        seed=0,
        stop=StopRules(),
        concurrency=4,
    )
    built, _ = make_strategy(strategy, settings.params)
    runtime = Runtime(
        task,
        RuntimeOptions(concurrency=4),
        store=NullCache(),
        providers=providers(target, optimizer),
    )
    folder = RunFolder.create(tmp / "runs", "t")
    async with runtime:
        engine = Engine(task, runtime, folder, settings, built, meta_prompts or load_meta_prompts())
        return (await engine.run()).to_json()


def users(counter: Counter) -> list[str]:
    return [json.loads(raw)[-1]["content"] for raw in counter.requests]


def history_scores(user: str) -> list[float]:
    return [float(s) for s in re.findall(r"^Score (\d\.\d\d) \(mean over", user, re.MULTILINE)]


# --- the context's helpers --------------------------------------------------------------------


def test_task_context_of_a_plain_label_task(tmp_path: Path) -> None:
    ctx = Setup(load_task(write_task(tmp_path))).ctx
    got = ctx.task_context()
    assert set(got) == {"task_description", "labels", "output_format", "examples"}
    assert got["task_description"] == DESCRIPTION
    assert got["labels"] == "positive, negative"
    assert got["output_format"].startswith("(none added separately")
    # One example per distinct answer first, then the next ones, all from train.
    shown = re.findall(r"^Example input: (.*)\nCorrect answer: (.*)$", got["examples"], re.M)
    train = ctx.train
    assert shown == [(ctx.render_input(e), e.target) for e in train[:4]]
    assert {target for _, target in shown[:2]} == {"positive", "negative"}


def test_task_context_of_a_structured_task_without_description_or_labels(
    tmp_path: Path,
) -> None:
    path = write_task(tmp_path)
    spec = yaml.safe_load(path.read_text())
    spec["prompt"] = {"instruction": "Classify.", "output_format": "One word."}
    spec["description"] = ""
    spec["metric"] = {"type": "exact"}
    path.write_text(yaml.safe_dump(spec))
    got = Setup(load_task(path)).ctx.task_context()
    assert got["output_format"] == "One word."
    assert got["labels"] == "(no fixed set of labels)"
    assert got["task_description"].startswith("(no description given")


def right_below(request: ChatRequest) -> str:
    """ "Prompt i." gets the reviews numbered below i right (review n is positive when n is
    even) and the others wrong."""
    found = re.search(r"Prompt (\d+)", request.messages[0]["content"])
    n = int(re.findall(r"review (\d+)", request.messages[-1]["content"])[0])
    right = "positive" if n % 2 == 0 else "negative"
    wrong = "negative" if right == "positive" else "positive"
    return right if found and n < int(found.group(1)) else wrong


async def test_the_scored_history_shows_the_best_in_ascending_order(tmp_path: Path) -> None:
    s = Setup(load_task(write_task(tmp_path)), Counter(right_below))
    ctx = s.ctx
    assert ctx.scored_history() == "(no instruction has been scored yet)"
    async with s.runtime:
        for i in range(6):
            cand = ctx.add_candidate(f"Prompt {i}.", operator="test")
            assert cand is not None
            await ctx.score(cand, ctx.train[:6])  # i of the 6 right
    history = ctx.scored_history()
    assert history_scores(history) == sorted(history_scores(history))
    assert len(history_scores(history)) == HISTORY_SIZE
    assert history.endswith("Prompt 5.") and "Prompt 0." not in history
    assert "(mean over 6 training examples):\nPrompt 1." in history
    assert ctx.scored_history(2).count("Score ") == 2


# --- what the optimizer receives --------------------------------------------------------------


async def test_ape_meta_prompts_receive_the_task_and_the_history(tmp_path: Path) -> None:
    task = load_task(write_task(tmp_path))
    optimizer = Counter(optimizer_answer)
    await run(task, tmp_path, "ape", SMALL_APE, optimizer)
    sent = users(optimizer)
    forward = [u for u in sent if "Output:" in u]
    resample = [u for u in sent if "<INSTRUCTION>" in u]
    assert forward and resample
    for user in sent:
        assert f"Purpose: {DESCRIPTION}" in user
        assert "Allowed answers: positive, negative" in user
    # Nothing was scored when the first instructions were induced ...
    assert all("(no instruction has been scored yet)" in u for u in forward)
    # ... and the resampling sees the best so far, ascending, with their scores.
    for user in resample:
        scores = history_scores(user)
        assert 1 <= len(scores) <= HISTORY_SIZE and scores == sorted(scores)
        assert "Correct answer: positive" in user and "Correct answer: negative" in user


async def test_protegi_meta_prompts_receive_the_task_examples_and_history(
    tmp_path: Path,
) -> None:
    task = load_task(question_task.write_task(tmp_path))
    optimizer = Counter(question_task.optimizer_answer)
    await run(
        task,
        tmp_path,
        "protegi",
        {"preset": "small"},
        optimizer,
        target=Counter(question_task.target_answer),
    )
    kinds: dict[str, list[str]] = {}
    for raw, user in zip(optimizer.requests, users(optimizer), strict=True):
        request: Any = type("R", (), {"messages": json.loads(raw)})
        kinds.setdefault(question_task.kind_of(request), []).append(user)
    assert set(kinds) == {"gradient", "edit", "paraphrase"}
    for user in (u for group in kinds.values() for u in group):
        assert "Purpose: Say what kind of answer a question asks for." in user
        assert "Allowed answers: person, place, count" in user
        assert "Correct answer: count" in user
    # Only the edit, which proposes new instructions, is shown the scored history.
    assert all(history_scores(u) for u in kinds["edit"])
    assert not any("mean over" in u for u in kinds["gradient"] + kinds["paraphrase"])


async def test_examples_shown_to_the_optimizer_come_from_train_only(tmp_path: Path) -> None:
    task = load_task(write_task(tmp_path))
    optimizer = Counter(optimizer_answer)
    await run(task, tmp_path, "ape", SMALL_APE, optimizer)
    train = {task.render_input(e) for e in task.splits["train"]}
    held_out = {task.render_input(e) for s in ("dev", "test") for e in task.split(s)}
    shown = {s for u in users(optimizer) for s in re.findall(r"^Example input: (.*)$", u, re.M)}
    assert shown and shown <= train and not shown & held_out


async def test_a_custom_meta_prompt_without_the_context_placeholders_still_runs(
    tmp_path: Path,
) -> None:
    custom = tmp_path / "custom"
    (custom / "ape").mkdir(parents=True)
    (custom / "ape" / "forward.md").write_text(
        "---\nplaceholders: [demos]\n---\n## user\nMY FORWARD\n{{demos}}\n"
    )
    (custom / "ape" / "resample.md").write_text(
        "---\nplaceholders: [instruction]\n---\nMY RESAMPLE <START>{{instruction}}<END>\n"
    )
    task = load_task(write_task(tmp_path))
    optimizer = Counter(optimizer_answer)
    summary = await run(task, tmp_path, "ape", SMALL_APE, optimizer, load_meta_prompts(custom))
    assert summary["status"] == "finished"
    sent = users(optimizer)
    assert any(u.startswith("MY FORWARD\n") for u in sent)
    assert any(u.startswith("MY RESAMPLE <START>") for u in sent)
    assert not any("Purpose:" in u or "Correct answer:" in u for u in sent)


@pytest.mark.parametrize(
    ("name", "values"),
    [
        ("ape/forward", {"demos": "D"}),
        ("protegi/edit", {"prompt": "P", "errors": "E", "reason": "R", "num_prompts": "1"}),
        ("protegi/gradient", {"prompt": "P", "errors": "E", "num_reasons": "1"}),
    ],
)
async def test_a_strategy_may_pass_its_own_history(
    tmp_path: Path, name: str, values: dict[str, str]
) -> None:
    # OPRO-style strategies show a longer history; a template without {{history}} drops it.
    s = Setup(load_task(write_task(tmp_path)))
    async with s.runtime:
        await s.ctx.ask(name, 1, **values, history="MY HISTORY")
    (user,) = users(s.optimizer)
    assert ("MY HISTORY" in user) == (name != "protegi/gradient")
    assert DESCRIPTION in user
