"""The search seam: a strategy sees training data, scoring on it, the optimizer, the candidates
and an event log it can append to; dev, test and the engine's buffers stay with the engine,
which still chooses the best prompt on dev once the search is over."""

from __future__ import annotations

import asyncio
import inspect
import json
import random
from collections.abc import AsyncGenerator, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from promptopt.llm.budget import BudgetCaps
from promptopt.llm.cache import NullCache
from promptopt.llm.messages import ChatRequest, Completion, Usage
from promptopt.llm.providers.base import Provider
from promptopt.llm.providers.scripted import ScriptedProvider, ScriptFunction
from promptopt.run.folder import CANDIDATES, EVENTS, FINAL_EVAL, RunFolder
from promptopt.scoring.runtime import Runtime, RuntimeOptions
from promptopt.search.context import (
    Answer,
    Candidate,
    Plan,
    SearchContext,
    StepReport,
    answer_items,
    is_truncated,
)
from promptopt.search.engine import Engine
from promptopt.search.meta_prompts import load_meta_prompts
from promptopt.search.plan import RunSettings, StopRules
from promptopt.search.state import SearchState
from promptopt.task.example import Example
from promptopt.task.loader import LoadedTask, load_task
from tests.support.search import PROPERTY, Counter, providers, target_answer, write_task

# Everything a strategy can name on its context. A new entry here widens the seam: it should
# be something a strategy needs and that cannot lead to dev data or the engine's buffers.
SURFACE = {
    "train",
    "candidates",
    "step",
    "rng",
    "meta_prompts",
    "task_description",
    "judge",
    "comparator",
    "render_input",
    "event",
    "stable_event_order",
    "add_candidate",
    "add_demo_candidate",
    "demos_spec",
    "labels",
    "reject",
    "accept_proposal",
    "score",
    "ask",
    "optimizer_budget_spent",
    "embed",
    "task_context",
    "scored_history",
    "remaining_target_calls",
    "remaining_optimizer_calls",
    "remaining_judge_calls",
}

_ATOMS = (str, bytes, int, float, bool, type(None))


class Setup:
    """The toy sentiment task, scripted models and a search state, outside the engine."""

    def __init__(
        self,
        tmp: Path,
        optimizer: ScriptFunction | None = None,
        optimizer_provider: Provider | None = None,
    ) -> None:
        self.task: LoadedTask = load_task(write_task(tmp))
        self.target = Counter(target_answer)
        models: dict[str, Provider] = dict(providers(self.target))
        if optimizer is not None:
            models["optimizer"] = ScriptedProvider(optimizer, name="optimizer")
        if optimizer_provider is not None:
            models["optimizer"] = optimizer_provider
        self.runtime = Runtime(
            self.task,
            RuntimeOptions(concurrency=4),
            store=NullCache(),
            providers=models,
        )
        runtime = self.runtime
        self.state = SearchState(
            train=self.task.splits["train"],
            dev=self.task.split("dev"),
            test=self.task.split("test"),
            scorer=runtime.scorer,
            optimizer=lambda: runtime.client("optimizer"),
            ledger=runtime.ledger,
            meta_prompts=load_meta_prompts(),
            rng=random.Random(0),
            render_input=self.task.render_input,
        )
        self.ctx = self.state.context
        initial = self.state.add_candidate(self.task.spec.system_prompt, operator="initial")
        assert initial is not None
        self.initial = initial

    def held_out(self) -> list[Example]:
        return [*self.task.split("dev"), *self.task.split("test")]


def public_reach(root: object, depth: int = 6) -> Iterator[object]:
    """Every object reachable from `root` through public attributes, items, keys and values."""
    seen: set[int] = set()
    todo: list[tuple[object, int]] = [(root, 0)]
    while todo:
        obj, level = todo.pop()
        if id(obj) in seen or level > depth:
            continue
        seen.add(id(obj))
        yield obj
        if isinstance(obj, _ATOMS):
            continue
        children: list[object]
        if inspect.ismethod(obj):
            # A bound method leads to its object: a context that handed out, say, the task's
            # own render_input would hand out the task with it.
            children = [obj.__self__]
        elif isinstance(obj, Mapping):
            children = [*obj.keys(), *obj.values()]
        elif isinstance(obj, list | tuple | set | frozenset):
            children = list(obj)
        else:
            children = []
            for name in dir(obj):
                if name.startswith("_"):
                    continue
                try:
                    children.append(getattr(obj, name))
                except Exception:  # a property that needs state the probe lacks
                    continue
        todo.extend((child, level + 1) for child in children)


def test_what_a_strategy_sees_is_the_narrow_surface(tmp_path: Path) -> None:
    s = Setup(tmp_path)
    ctx = s.ctx
    assert type(ctx) is SearchContext
    assert {name for name in dir(ctx) if not name.startswith("_")} == SURFACE
    for name in ("dev", "test", "pending_events", "changed", "ledger", "scorer", "context"):
        assert not hasattr(ctx, name), name
    # The candidates can be looked up but not replaced or removed behind the engine's back.
    with pytest.raises(TypeError):
        ctx.candidates["c0000"] = s.initial  # type: ignore[index]


def test_no_dev_example_or_pending_event_is_reachable_from_the_context(tmp_path: Path) -> None:
    s = Setup(tmp_path)
    s.ctx.event("probe")
    reached = list(public_reach(s.ctx))
    assert not any(isinstance(o, Mapping) and "event" in o for o in reached)
    examples = {o.id for o in reached if isinstance(o, Example)}
    texts = {o for o in reached if isinstance(o, str)}
    train_ids = {e.id for e in s.task.splits["train"]}
    assert examples == train_ids, "the walk reaches the training data, and nothing else"
    for example in s.held_out():
        assert example.id not in texts
        assert s.task.render_input(example) not in texts


async def test_a_strategy_cannot_score_held_out_examples(tmp_path: Path) -> None:
    s = Setup(tmp_path)
    train = s.task.splits["train"]
    dev = s.task.split("dev")
    # A dev row given a training id is still not a training example.
    forged = Example(id=train[0].id, fields=dev[0].fields, targets=dev[0].targets)
    async with s.runtime:
        for examples in ([dev[0]], [train[0], dev[0]], [s.task.split("test")[0]], [forged]):
            with pytest.raises(ValueError, match="training examples only"):
                await s.ctx.score(s.initial, examples)
        assert s.target.calls == 0 and s.initial.scores == {}

        results = await s.ctx.score(s.initial, train[:3])
        assert [r.id for r in results] == [e.id for e in train[:3]]
        assert s.initial.scores.keys() == {"train"}
        assert s.initial.n("train") == 3

        # The engine's final gate is where dev is scored.
        await s.state.score_held_out(s.initial, "dev")
    assert s.initial.scores["dev"].keys() == {e.id for e in dev}
    assert s.target.calls == 3 + len(dev)


async def test_events_of_a_concurrent_block_keep_a_fixed_order(tmp_path: Path) -> None:
    async def probe(ctx: SearchContext, name: str, delay: float) -> None:
        await asyncio.sleep(delay)
        ctx.event("probe", name=name)

    orders = []
    for delays in ((0.0, 0.02), (0.02, 0.0)):
        s = Setup(tmp_path)
        s.ctx.event("before")
        with s.ctx.stable_event_order():
            await asyncio.gather(probe(s.ctx, "b", delays[0]), probe(s.ctx, "a", delays[1]))
        s.ctx.event("after")
        orders.append([e.get("name", e["event"]) for e in s.state.pending_events])
    assert orders[0] == orders[1] == ["candidate", "before", "a", "b", "after"]

    # A block that fails still leaves its events in the fixed order.
    s = Setup(tmp_path)
    with pytest.raises(RuntimeError), s.ctx.stable_event_order():
        s.ctx.event("probe", name="z")
        s.ctx.event("probe", name="y")
        raise RuntimeError
    assert [e.get("name") for e in s.state.pending_events][1:] == ["y", "z"]


class RanksOnTrain:
    """A strategy that puts a prompt that is worse on dev first, and notes what it could see."""

    def __init__(self) -> None:
        self.contexts: list[SearchContext] = []
        self.dev_scores_during_search: bool | None = None
        self.ids: dict[str, str] = {}

    def plan(self, sizes: Mapping[str, int]) -> Plan:
        """Eight target calls, no optimizer calls."""
        return Plan(target_calls=8, optimizer_calls=0)

    async def search(
        self, ctx: SearchContext, initial: Candidate
    ) -> AsyncGenerator[StepReport, None]:
        """One step: two new prompts, scored on four training examples, ranked by hand."""
        self.contexts.append(ctx)
        plain = ctx.add_candidate("Classify the review quickly.", operator="test")
        good = ctx.add_candidate(f"Classify the review; give the {PROPERTY}.", operator="test")
        assert plain is not None and good is not None
        self.ids = {"plain": plain.id, "good": good.id, "initial": initial.id}
        await ctx.score(plain, ctx.train[:4])
        await ctx.score(good, ctx.train[:4])
        yield StepReport("rank", (plain.id, initial.id, good.id), plain.mean("train"))
        self.dev_scores_during_search = any("dev" in c.scores for c in ctx.candidates.values())


async def test_the_engine_selects_on_dev_after_the_search(tmp_path: Path) -> None:
    task = load_task(write_task(tmp_path))
    folder = RunFolder.create(tmp_path / "runs", "toy")
    strategy = RanksOnTrain()
    settings = RunSettings(
        strategy="ranks-on-train",
        params={},
        seed=0,
        caps=BudgetCaps(),
        stop=StopRules(),
        concurrency=4,
    )
    runtime = Runtime(task, RuntimeOptions(concurrency=4), store=NullCache(), providers=providers())
    async with runtime:
        engine = Engine(task, runtime, folder, settings, strategy, load_meta_prompts())
        summary = (await engine.run()).to_json()

    (ctx,) = strategy.contexts
    assert type(ctx) is SearchContext and not hasattr(ctx, "dev")
    assert strategy.dev_scores_during_search is False
    train_ids = {e.id for e in task.splits["train"]}
    dev_ids = {e.id for e in task.split("dev")}
    for cand in ctx.candidates.values():
        assert set(cand.scores.get("train", {})) <= train_ids

    # The strategy ranked the plain prompt first; dev chose the one that is right.
    ids = strategy.ids
    assert summary["best_id"] == ids["good"]
    assert summary["scores"]["best"]["dev"] == pytest.approx(1.0)
    assert summary["scores"]["initial"]["dev"] == pytest.approx(0.5)
    events = folder.read_jsonl(EVENTS)
    (final_dev,) = [e for e in events if e["event"] == "final_dev"]
    assert final_dev["best"] == ids["good"]
    assert set(final_dev["finalists"]) == set(ids.values())
    assert final_dev["finalists"][ids["plain"]] == pytest.approx(0.5)
    latest: dict[str, Any] = {r["id"]: r for r in folder.read_jsonl(CANDIDATES)}
    for cid in ids.values():
        assert latest[cid]["scores"]["dev"]["n"] == len(dev_ids)
    final_eval = folder.read_json(FINAL_EVAL)
    assert final_eval is not None
    assert {e["id"] for e in final_eval["examples"]["dev"]} == dev_ids

    # Nothing the search wrote names a dev example.
    search_events = json.dumps([e for e in events if e["event"] not in ("final_dev",)])
    for dev_id in dev_ids:
        assert f'"{dev_id}"' not in search_events


# -- every proposal takes the same path: truncation, tags, echoes ---------------------------

FORWARD_ECHO = (
    "A language model was given a single instruction and then run on the inputs below. "
    "Answer with the label only."
)


def rejected(s: Setup) -> list[dict[str, Any]]:
    return [e for e in s.state.pending_events if e["event"] == "rejected"]


async def test_asked_answers_carry_their_meta_prompt_and_finish_reason(tmp_path: Path) -> None:
    def optimizer(request: ChatRequest) -> dict[str, str]:
        if request.sample_index == 0:
            return {"text": "<START>Classify the review as positive or", "finish_reason": "length"}
        return {"text": "<START>Classify the review as positive or negative.<END>"}

    s = Setup(tmp_path, optimizer)
    async with s.runtime:
        cut, whole = await s.ctx.ask("ape/resample", 2, instruction="Classify the review.")
    assert isinstance(cut, Answer) and isinstance(whole, Answer)
    assert cut.meta_prompt == whole.meta_prompt == "ape/resample"
    assert is_truncated(cut) and cut.finish_reason == "length"
    assert not is_truncated(whole) and whole.finish_reason == "stop"
    assert s.ctx.accept_proposal(cut, operator="ape-resample") is None
    [event] = rejected(s)
    assert event["reason"] == "truncated" and event["operator"] == "ape-resample"
    accepted = s.ctx.accept_proposal(whole, operator="ape-resample")
    assert accepted is not None
    assert accepted.text == "Classify the review as positive or negative."


class SamplesInOneRequest:
    """An optimizer endpoint that honours `n`: every sample of a request in one answer."""

    samples_per_request = True

    def __init__(self) -> None:
        self.requests: list[ChatRequest] = []

    @property
    def endpoint(self) -> str:
        return "fake://n"

    @property
    def model_id(self) -> str:
        return "scripted:n"

    async def complete(self, request: ChatRequest) -> Completion:
        self.requests.append(request)
        texts = [f"<START>Label the review, wording {i}.<END>" for i in range(request.n)]
        return Completion(
            texts[0],
            Usage(input=300, output=10 * request.n),
            more=tuple((t, "stop") for t in texts[1:]),
        )

    async def aclose(self) -> None:
        return None


async def test_the_samples_of_an_ask_are_one_request_where_the_optimizer_honours_n(
    tmp_path: Path,
) -> None:
    endpoint = SamplesInOneRequest()
    s = Setup(tmp_path, optimizer_provider=endpoint)
    async with s.runtime:
        asked = await s.ctx.ask("ape/resample", 3, instruction="Classify the review.")
        usage = s.runtime.client("optimizer").usage
    assert [r.n for r in endpoint.requests] == [3]
    assert len({str(a) for a in asked}) == 3
    assert all(isinstance(a, Answer) and a.meta_prompt == "ape/resample" for a in asked)
    assert s.runtime.ledger.calls["optimizer"] == 3  # three samples, three calls
    assert usage.requests == 1 and usage.tokens.input == 300


def test_template_tags_and_role_labels_never_reach_a_candidate(tmp_path: Path) -> None:
    s = Setup(tmp_path)
    for raw in (
        "<INSTRUCTION>Classify the review as positive or negative.</INSTRUCTION>",
        "Sure! Here is the instruction: Say whether the review is positive or negative.",
        "assistant: Label the review positive or negative; give the label only.",
    ):
        cand = s.ctx.accept_proposal(Answer(raw, finish_reason="stop"), operator="test")
        assert cand is not None, raw
        assert "<" not in cand.text and not cand.text.lower().startswith(("sure", "assistant"))


def test_an_echo_of_the_meta_prompt_is_rejected_in_the_accept_path(tmp_path: Path) -> None:
    s = Setup(tmp_path)
    reply = Answer(f"<START>{FORWARD_ECHO}<END>", finish_reason="stop", meta_prompt="ape/forward")
    assert s.ctx.accept_proposal(reply, operator="ape-forward") is None
    [event] = rejected(s)
    assert event["reason"] == "degenerate" and "repeats the meta-prompt" in event["message"]
    # Text with no meta-prompt named is checked against every meta-prompt's wording.
    assert s.ctx.accept_proposal(f"<START>{FORWARD_ECHO}<END>", operator="plain") is None
    assert [e["reason"] for e in rejected(s)] == ["degenerate", "degenerate"]


def test_wording_the_parent_already_holds_is_not_an_echo(tmp_path: Path) -> None:
    s = Setup(tmp_path)
    parent = s.ctx.add_candidate(FORWARD_ECHO, operator="test")
    assert parent is not None
    child = f"<START>Read each review first. {FORWARD_ECHO}<END>"
    reply = Answer(child, finish_reason="stop", meta_prompt="ape/forward")
    assert s.ctx.accept_proposal(reply, operator="edit", parents=[parent.id]) is not None
    assert rejected(s) == []


def test_answer_items_mark_the_item_a_cut_ran_into_and_keep_the_meta_prompt(
    tmp_path: Path,
) -> None:
    raw = Answer(
        "<START>Name the labels positive and negative.<END>\n"
        "<START>Say that the answer is the label only.<END>\n<START>Give an",
        finish_reason="length",
        meta_prompt="protegi/edit",
    )
    items = answer_items(raw)
    assert items == [
        "Name the labels positive and negative.",
        "Say that the answer is the label only.",
        "Give an",
    ]
    assert all(isinstance(i, Answer) and i.meta_prompt == "protegi/edit" for i in items)
    assert [is_truncated(i) for i in items] == [False, False, True]
    assert not any(is_truncated(i) for i in answer_items(str(raw)))

    s = Setup(tmp_path)
    made = [s.ctx.accept_proposal(item, operator="edit") for item in items]
    assert [c is not None for c in made] == [True, True, False]
    assert [e["reason"] for e in rejected(s)] == ["truncated"]
