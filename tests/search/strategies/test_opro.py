"""OPRO: the scored trajectory meta-prompt, proposals at temperature 1.0 scored on shared
examples, budgets, determinism, and end to end on the toy sentiment task."""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import random
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from promptopt.cli.main import app
from promptopt.errors import UsageError
from promptopt.llm.budget import BudgetCaps
from promptopt.llm.cache import NullCache
from promptopt.llm.journal import ResponseJournal
from promptopt.llm.messages import ChatRequest
from promptopt.reporting.run_files import lineage
from promptopt.run.folder import CANDIDATES, EVENTS, RESPONSES, RunFolder
from promptopt.scoring.runtime import Runtime, RuntimeOptions
from promptopt.search.context import Plan, SearchContext, StepReport
from promptopt.search.engine import Engine
from promptopt.search.meta_prompts import load_meta_prompts
from promptopt.search.plan import RunSettings, StopRules, final_reserve
from promptopt.search.state import SearchState
from promptopt.search.strategies.opro import (
    OPRO,
    OPROParams,
    Sizing,
    format_trajectory,
    score_100,
    size_search,
)
from promptopt.search.strategies.registry import make_strategy, strategy_info
from promptopt.task.loader import LoadedTask, load_task
from tests.conftest import CountingProvider, make_client
from tests.support.search import (
    PROPERTY,
    WORDS_GOOD,
    Counter,
    optimizer_answer,
    providers,
    stable,
    target_answer,
    with_loadable_models,
    write_task,
)

# The toy task's final evaluation: 3 finalists and the initial prompt on 20 dev examples, then
# the initial and the best prompt on 20 test examples.
RESERVE = final_reserve(20, 20, 3)
TRAIN = 40
INSTRUCTION = re.compile(r"^Instruction: (.*)\nScore: (\d+)$", re.MULTILINE)
EXEMPLAR = re.compile(r"^Input: (.*)\nExpected answer: (.*)$", re.MULTILINE)


class Killed(BaseException):
    """Stands in for the process being killed mid-run."""


# --- scripted models whose instructions score at many levels ------------------------------


def graded_target(request: ChatRequest) -> str:
    """Right on the reviews whose number ends below the instruction's "level N" (5 when it
    names none), wrong on the others: an instruction scores N/10 on the 40 training reviews."""
    system = request.messages[0]["content"]
    review = request.messages[-1]["content"]
    found = re.search(r"level (\d)", system)
    level = int(found.group(1)) if found else 5
    number = re.search(r"review (\d+)", review)
    assert number is not None
    truth = "positive" if any(w in review for w in WORDS_GOOD) else "negative"
    if int(number.group(1)) % 10 < level:
        return truth
    return "negative" if truth == "positive" else "positive"


def graded_optimizer(request: ChatRequest) -> str:
    """A new instruction for every request and sample, at a level a little below or above the
    best score it was shown, so that the trajectory climbs and holds many different scores."""
    user = request.messages[-1]["content"]
    best = max((int(s) for s in re.findall(r"^Score: (\d+)$", user, re.MULTILINE)), default=50)
    blob = json.dumps([dict(m) for m in request.messages]) + str(request.sample_index)
    digest = hashlib.sha256(blob.encode()).hexdigest()
    level = max(0, min(9, best // 10 + int(digest[:8], 16) % 4 - 1))
    return f"<START>Answer at level {level}, variant {digest[8:16]}.<END>"


class Recorder:
    """An optimizer script that keeps every request it got."""

    def __init__(self, fn: Any = graded_optimizer) -> None:
        self.fn = fn
        self.requests: list[ChatRequest] = []

    def __call__(self, request: ChatRequest) -> str:
        self.requests.append(request)
        return str(self.fn(request))

    def users(self) -> list[str]:
        return [r.messages[-1]["content"] for r in self.requests]


class Harness:
    """The toy task with scripted models and a search state, outside the engine."""

    def __init__(
        self,
        tmp: Path,
        *,
        optimizer: Recorder | None = None,
        caps: BudgetCaps | None = None,
    ) -> None:
        self.task: LoadedTask = load_task(write_task(tmp))
        self.target = Counter(graded_target)
        self.recorder = optimizer or Recorder()
        self.optimizer = Counter(self.recorder)
        self.runtime = Runtime(
            self.task,
            RuntimeOptions(concurrency=4, caps=caps or BudgetCaps()),
            store=NullCache(),
            providers=providers(self.target, self.optimizer),
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
            task_description=self.task.spec.description or "",
            layout=self.task.spec.prompt_layout(),
        )
        self.ctx: SearchContext = self.state.context
        initial = self.ctx.add_candidate(self.state.layout.initial, operator="initial")
        assert initial is not None
        self.initial = initial

    def events(self, kind: str) -> list[dict[str, Any]]:
        return [e for e in self.state.pending_events if e["event"] == kind]

    def subset(self) -> list[str]:
        (plan,) = self.events("opro_plan")
        return list(plan["ids"])

    async def steps(self, params: OPROParams) -> list[StepReport]:
        reports = []
        async with self.runtime:
            async for report in OPRO(params).search(self.ctx, self.initial):
                reports.append(report)
        return reports


# --- the engine around OPRO ----------------------------------------------------------------


def settings_for(
    caps: BudgetCaps | None = None, stop: StopRules | None = None, **params: Any
) -> RunSettings:
    _, validated = make_strategy("opro", params)
    return RunSettings(
        strategy="opro",
        params=validated.model_dump(mode="json"),
        seed=0,
        caps=caps or BudgetCaps(),
        stop=stop or StopRules(),
        concurrency=4,
    )


async def run_once(
    tmp: Path,
    folder: RunFolder,
    settings: RunSettings,
    *,
    target: Counter | None = None,
    optimizer: Counter | None = None,
    resume: bool = False,
) -> dict[str, Any]:
    task = load_task(write_task(tmp, strategy="opro"))
    strategy, _ = make_strategy(settings.strategy, settings.params)
    runtime = Runtime(
        task,
        RuntimeOptions(concurrency=4, caps=settings.caps),
        store=NullCache(),
        journal=ResponseJournal(folder.file(RESPONSES)),
        providers=providers(
            target or Counter(target_answer), optimizer or Counter(optimizer_answer)
        ),
    )
    async with runtime:
        engine = Engine(task, runtime, folder, settings, strategy, load_meta_prompts())
        return (await engine.run(resume=resume)).to_json()


def latest_records(folder: RunFolder) -> dict[str, dict[str, Any]]:
    return {r["id"]: r for r in folder.read_jsonl(CANDIDATES)}


async def test_opro_finds_the_label_only_instruction_and_proves_it_on_test(
    tmp_path: Path,
) -> None:
    folder = RunFolder.create(tmp_path / "runs", "toy")
    summary = await run_once(tmp_path, folder, settings_for())
    assert PROPERTY in summary["best_prompt"].lower()
    assert summary["scores"]["initial"]["test"] == pytest.approx(0.5)
    assert summary["scores"]["best"]["test"] == pytest.approx(1.0)
    assert summary["test_comparison"]["verdict"] == "improved"
    assert summary["stop_reason"] == "finished"

    events = folder.read_jsonl(EVENTS)
    steps = [e for e in events if e["event"] == "step"]
    assert [s["name"] for s in steps] == [f"step-{i}" for i in range(1, 6)]
    assert steps[0]["ranking"][0] == summary["best_id"]
    chain = lineage(folder.candidates(), summary["best_id"])
    assert [r.operator for r in chain] == ["initial", "opro"]
    best = latest_records(folder)[summary["best_id"]]
    assert best["feedback"]["trajectory"] == {"c0000": 50}
    assert len(best["feedback"]["exemplars"]) == 3


async def test_the_meta_prompt_shows_the_best_scored_instructions_in_ascending_order(
    tmp_path: Path,
) -> None:
    h = Harness(tmp_path)
    params = OPROParams(steps=4, proposals_per_step=4, top_instructions=3, exemplars=3)
    # The first step knows only the initial prompt, which scores 50 on every subset.
    expected: list[list[tuple[str, int]]] = [[("Classify the review.", 50)]]
    asked_before = 0
    async with h.runtime:
        async for _ in OPRO(params).search(h.ctx, h.initial):
            users = h.recorder.users()[asked_before:]
            asked_before = len(h.recorder.users())
            assert len(users) == 4 and len(set(users)) == 1, "one meta-prompt per step"
            # What the next step must show: the 3 best scored so far, ascending.
            scored = [c for c in h.ctx.candidates.values() if c.n("train")]
            best = sorted(scored, key=lambda c: (-(c.mean("train") or 0.0), c.id))[:3]
            expected.append([(c.text, score_100(c.mean("train") or 0.0)) for c in best[::-1]])
    metas = h.recorder.users()[::4]
    assert len(metas) == len(expected) - 1 == 4

    train = {h.task.render_input(e): e.target for e in h.task.splits["train"]}
    held_out = {h.task.render_input(e) for split in ("dev", "test") for e in h.task.split(split)}
    for meta, shown in zip(metas, expected, strict=False):
        listed = [(text, int(score)) for text, score in INSTRUCTION.findall(meta)]
        assert listed == shown
        scores = [score for _, score in listed]
        assert scores == sorted(scores) and len(listed) <= 3
        assert meta.index("ascending") < meta.index("Instruction:")
        assert "Say whether a film review is positive or negative." in meta  # the task
        exemplars = EXEMPLAR.findall(meta)
        assert len(exemplars) == 3
        for shown_input, answer in exemplars:
            assert shown_input in train and train[shown_input] == answer
            assert shown_input not in held_out
    # Later steps are capped at 3 of many.
    assert [len(s) for s in expected[:4]] == [1, 3, 3, 3]
    # The exemplars are drawn afresh each step.
    assert len({tuple(EXEMPLAR.findall(m)) for m in metas}) > 1


async def test_proposals_are_sampled_at_temperature_one(
    tmp_path: Path,
) -> None:
    h = Harness(tmp_path)
    await h.steps(OPROParams(steps=2, proposals_per_step=5))
    assert len(h.recorder.requests) == 10
    # The task's optimizer runs at 0.9; OPRO's proposals override it, sample by sample.
    assert {r.params["temperature"] for r in h.recorder.requests} == {1.0}
    assert sorted(r.sample_index for r in h.recorder.requests) == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4]
    # The override is part of the cache key: the same meta-prompt at the model's own
    # temperature is another request.
    client = h.runtime.client("optimizer")
    messages = h.recorder.requests[0].messages
    assert client.key_for(messages) != client.key_for(messages, 0, {"temperature": 1.0})
    assert client.key_for(messages, 0, {"temperature": 0.9}) == client.key_for(messages)


async def test_the_samples_of_a_step_are_in_flight_together(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    slow = CountingProvider(answer=lambda r: f"<START>Sample {r.sample_index}.<END>", delay_s=0.05)
    client = make_client(slow, tmp_path, concurrency=8, role="optimizer")
    state = SearchState(
        train=h.task.splits["train"],
        dev=(),
        scorer=h.runtime.scorer,
        optimizer=lambda: client,
        ledger=client.ledger,
        meta_prompts=load_meta_prompts(),
        rng=random.Random(0),
        render_input=h.task.render_input,
    )
    answers = await state.context.ask(
        "opro/propose", 6, {"temperature": 1.0}, trajectory="R", examples="E"
    )
    assert answers == [f"<START>Sample {i}.<END>" for i in range(6)]  # in sample order
    assert slow.max_in_flight == 6


async def test_without_a_temperature_the_optimizers_own_is_used(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    await h.steps(OPROParams(steps=1, proposals_per_step=2, temperature=None))
    assert {r.params["temperature"] for r in h.recorder.requests} == {0.9}


async def test_every_instruction_is_scored_on_the_same_examples_and_ranked_by_them(
    tmp_path: Path,
) -> None:
    h = Harness(tmp_path)
    reports = await h.steps(OPROParams(steps=3, proposals_per_step=6, eval_examples=20))
    subset = h.subset()
    assert len(subset) == len(set(subset)) == 20
    assert set(subset) <= {e.id for e in h.task.splits["train"]}
    made = [c for c in h.ctx.candidates.values() if c.operator == "opro"]
    assert len(made) > 6
    for cand in [h.initial, *made]:
        assert set(cand.scores["train"]) == set(subset)
    for report in reports:
        ranked = [h.ctx.candidates[cid] for cid in report.ranking]
        means = [c.mean("train") or 0.0 for c in ranked]
        assert means == sorted(means, reverse=True)
        assert report.best_score == means[0]
        # Ties go to the older candidate.
        for a, b in itertools.pairwise(ranked):
            if a.mean("train") == b.mean("train"):
                assert a.id < b.id
        for cid, score in report.detail["scores"].items():
            assert score == pytest.approx(h.ctx.candidates[cid].mean("train"))
    assert set(reports[-1].ranking) == {h.initial.id, *(c.id for c in made)}
    # Graded instructions differ, so the search found one better than the initial prompt.
    assert (reports[-1].best_score or 0.0) > 0.5


async def test_a_tie_keeps_the_initial_prompt_first(tmp_path: Path) -> None:
    h = Harness(tmp_path, optimizer=Recorder(lambda r: "<START>Judge the review at level 5.<END>"))
    (report,) = await h.steps(OPROParams(steps=1, proposals_per_step=3))
    assert report.ranking[0] == h.initial.id and len(report.ranking) == 2
    assert report.detail["asked"] == 3 and report.detail["new"] == 1
    assert len(h.events("duplicate")) == 2


# --- budgets and plans ---------------------------------------------------------------------


def test_size_search_fits_the_budgets() -> None:
    p = OPROParams()
    assert size_search(p, TRAIN, None, None) == Sizing(40, 5, 8, 40)
    assert size_search(p, 0, None, None) == Sizing(0, 0, 0, 0)
    # 300 target calls: the subset shrinks to the floor (16), then 17 proposals fit.
    assert size_search(p, TRAIN, 300, None) == Sizing(16, 3, 8, 17)
    # 2000 target calls leave 48 per instruction, capped by the 40 training examples.
    assert size_search(p, TRAIN, 2000, None) == Sizing(40, 5, 8, 40)
    # 1000: 24 examples per instruction, 40 proposals.
    assert size_search(p, TRAIN, 1000, None) == Sizing(24, 5, 8, 40)
    # The optimizer's cap: fewer proposals, and the subset grows to use the target calls.
    assert size_search(p, TRAIN, 300, 5) == Sizing(40, 1, 5, 5)
    assert size_search(p, TRAIN, None, 0) == Sizing(40, 0, 0, 0)
    # A fixed subset is kept; the steps shrink instead.
    fixed = OPROParams(eval_examples=20)
    assert size_search(fixed, TRAIN, 100, None) == Sizing(20, 1, 4, 4)
    assert size_search(fixed, TRAIN, 30, None) == Sizing(20, 0, 0, 0)
    assert size_search(OPROParams(eval_examples=100), TRAIN, None, None).eval_examples == 40
    # Whatever the budgets, every proposal asked for can be scored.
    for target in range(0, 1200, 37):
        for optimizer in (None, 1, 7, 30):
            s = size_search(p, TRAIN, target, optimizer)
            assert s.eval_examples * (1 + s.proposals) <= max(target, s.eval_examples)
            if optimizer is not None:
                assert s.proposals <= optimizer


def test_plan_is_the_uncapped_worst_case() -> None:
    strategy, params = make_strategy("opro", {})
    assert params == OPROParams()
    assert strategy.plan({"train": 40, "dev": 20, "test": 20}) == Plan(
        target_calls=40 * (1 + 40), optimizer_calls=40
    )
    small, _ = make_strategy("opro", {"steps": 2, "proposals_per_step": 4, "eval_examples": 10})
    assert small.plan({"train": 40}) == Plan(target_calls=10 * 9, optimizer_calls=8)
    assert small.plan({}) == Plan(target_calls=0, optimizer_calls=0)


async def test_plan_bounds_an_uncapped_run(tmp_path: Path) -> None:
    target, optimizer = Counter(target_answer), Counter(optimizer_answer)
    folder = RunFolder.create(tmp_path / "runs", "q")
    params: dict[str, Any] = {"steps": 3, "proposals_per_step": 4}
    await run_once(tmp_path, folder, settings_for(**params), target=target, optimizer=optimizer)
    plan = make_strategy("opro", params)[0].plan({"train": TRAIN})
    assert target.calls - RESERVE <= plan.target_calls
    assert optimizer.calls == plan.optimizer_calls == 12


@pytest.mark.parametrize(
    ("search_calls", "optimizer_cap", "params"),
    [
        (100, None, {}),
        (300, 10, {}),
        (1000, 3, {}),
        (95, None, {"eval_examples": 10}),
        (250, 50, {"eval_examples": 40, "proposals_per_step": 3}),
    ],
)
async def test_budgets_are_never_exceeded_and_every_proposal_is_scored(
    tmp_path: Path, search_calls: int, optimizer_cap: int | None, params: dict[str, Any]
) -> None:
    target, optimizer = Counter(target_answer), Counter(optimizer_answer)
    folder = RunFolder.create(tmp_path / "runs", "q")
    caps = BudgetCaps(target_calls=RESERVE + search_calls, optimizer_calls=optimizer_cap)
    summary = await run_once(
        tmp_path, folder, settings_for(caps, **params), target=target, optimizer=optimizer
    )
    assert target.calls <= RESERVE + search_calls
    if optimizer_cap is not None:
        assert optimizer.calls <= optimizer_cap
    assert summary["scores"]["best"]["test"] is not None
    events = folder.read_jsonl(EVENTS)
    (plan,) = [e for e in events if e["event"] == "opro_plan"]
    size = plan["eval_examples"]
    # No proposal was asked for that the target budget could not score.
    assert size * (1 + optimizer.calls) <= search_calls
    for record in latest_records(folder).values():
        assert record["scores"]["train"]["n"] == size
    assert [e for e in events if e["event"] == "step"], "at least one step fits"
    assert not [e for e in events if e["event"] == "budget_exhausted"]


async def test_a_budget_too_small_for_one_proposal_keeps_the_initial_prompt(
    tmp_path: Path,
) -> None:
    folder = RunFolder.create(tmp_path / "runs", "q")
    target, optimizer = Counter(target_answer), Counter(optimizer_answer)
    caps = BudgetCaps(target_calls=RESERVE + 20)
    summary = await run_once(
        tmp_path, folder, settings_for(caps), target=target, optimizer=optimizer
    )
    # The final evaluation only: the initial prompt on dev, then on test (it stays the best).
    assert optimizer.calls == 0 and target.calls == 20 + 20
    assert summary["best_id"] == "c0000"
    stopped = [e for e in folder.read_jsonl(EVENTS) if e["event"] == "search_stopped"]
    assert stopped and "single proposal" in stopped[0]["reason"]


async def test_patience_stops_the_search_early(tmp_path: Path) -> None:
    folder = RunFolder.create(tmp_path / "runs", "q")
    summary = await run_once(tmp_path, folder, settings_for(stop=StopRules(patience=2)))
    assert summary["stop_reason"] == "patience"
    steps = [e for e in folder.read_jsonl(EVENTS) if e["event"] == "step"]
    assert [s["name"] for s in steps] == ["step-1", "step-2", "step-3"]


async def test_same_seed_gives_the_same_run_folder(tmp_path: Path) -> None:
    a = RunFolder.create(tmp_path / "a", "q")
    b = RunFolder.create(tmp_path / "b", "q")
    await run_once(tmp_path, a, settings_for(eval_examples=20))
    await run_once(tmp_path, b, settings_for(eval_examples=20))
    assert stable(a) == stable(b)
    other = RunFolder.create(tmp_path / "c", "q")
    seeded = settings_for(eval_examples=20)
    await run_once(tmp_path, other, dataclasses.replace(seeded, seed=1))
    assert stable(other)["events"] != stable(a)["events"]


async def test_killed_run_resumes_without_repeating_requests(tmp_path: Path) -> None:
    baseline = RunFolder.create(tmp_path / "base", "q")
    every = Counter(optimizer_answer)
    await run_once(tmp_path, baseline, settings_for(steps=3), optimizer=every)

    def kill_at(n: int) -> None:
        if n == 11:
            raise Killed

    folder = RunFolder.create(tmp_path / "runs", "q")
    first = Counter(optimizer_answer, on_call=kill_at)
    with pytest.raises(Killed):
        await run_once(tmp_path, folder, settings_for(steps=3), optimizer=first)
    steps = [e for e in folder.read_jsonl(EVENTS) if e["event"] == "step"]
    assert len(steps) == 1, "the kill falls inside step 2"
    second = Counter(optimizer_answer)
    await run_once(tmp_path, folder, settings_for(steps=3), optimizer=second, resume=True)
    # Only the killed request is asked again; every other answer comes from the journal.
    assert second.calls == every.calls - (first.calls - 1)
    assert stable(folder) == stable(baseline)


# --- parameters, the registry, the meta-prompt and the command line ------------------------


def test_params_validate_and_defaults_are_the_papers() -> None:
    assert strategy_info("opro").params is OPROParams
    defaults = OPROParams()
    assert (defaults.top_instructions, defaults.exemplars, defaults.proposals_per_step) == (
        20,
        3,
        8,
    )
    assert defaults.temperature == 1.0
    with pytest.raises(UsageError, match=r"search\.params\.proposals_per_step"):
        make_strategy("opro", {"proposals_per_step": 0})
    with pytest.raises(UsageError, match=r"search\.params\.beam"):
        make_strategy("opro", {"beam": 3})
    with pytest.raises(UsageError, match=r"search\.params\.temperature"):
        make_strategy("opro", {"temperature": -1})


async def test_a_task_without_training_data_is_refused(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    empty = SearchState(
        train=(),
        dev=h.task.split("dev"),
        scorer=h.runtime.scorer,
        optimizer=lambda: h.runtime.client("optimizer"),
        ledger=h.runtime.ledger,
        meta_prompts=load_meta_prompts(),
        rng=random.Random(0),
        render_input=h.task.render_input,
    )
    initial = empty.add_candidate("Classify.", operator="initial")
    assert initial is not None
    with pytest.raises(UsageError, match="opro needs training examples"):
        async for _ in OPRO(OPROParams()).search(empty.context, initial):
            pass


def test_the_meta_prompt_loads_and_renders_the_trajectory(tmp_path: Path) -> None:
    meta = load_meta_prompts().get("opro/propose")
    assert meta.placeholders == {
        "task_description",
        "labels",
        "output_format",
        "trajectory",
        "examples",
    }
    assert meta.system and meta.description
    assert "<START>" in meta.user and "<END>" in meta.user
    h = Harness(tmp_path)
    other = h.ctx.add_candidate("Answer at level 9.", operator="test")
    assert other is not None
    text = format_trajectory([(h.initial, 0.5), (other, 0.905)])
    assert text == (
        "Instruction: Classify the review.\nScore: 50\n\nInstruction: Answer at level 9.\nScore: 91"
    )
    user = meta.render(
        task_description="T", labels="L", output_format="F", trajectory=text, examples="E"
    )[-1]["content"]
    assert text in user and "{{" not in user


def test_strategies_lists_opro_and_dry_run_plans_it(tmp_path: Path) -> None:
    runner = CliRunner()
    listing = json.loads(runner.invoke(app, ["strategies", "--json"]).stdout)
    opro = next(s for s in listing if s["name"] == "opro")
    assert {p["name"] for p in opro["params"]} >= {
        "steps",
        "proposals_per_step",
        "top_instructions",
        "exemplars",
        "temperature",
        "eval_examples",
    }
    task = write_task(tmp_path, strategy="opro")
    spec = yaml.safe_load(task.read_text())
    assert spec["search"]["strategy"] == "opro"
    with_loadable_models(task)
    result = runner.invoke(app, ["run", str(task), "--dry-run", "--budget", "400", "--json"])
    assert result.exit_code == 0, result.output
    plan = json.loads(result.stdout)
    assert plan["target_calls"] == 400 and plan["final_eval_calls"] == RESERVE
    assert plan["optimizer_calls"] == 40
