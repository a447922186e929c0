"""Plum's phrase-edit metaheuristics: the annealing schedule and acceptance rule, the tabu list,
hill climbing's patience, the GA's generations, paraphrases, budgets, determinism, resume, and
end to end on a task whose best prompt is reached only by deleting two phrases in turn."""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import math
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
from promptopt.llm.messages import ChatRequest
from promptopt.reporting.run_files import lineage
from promptopt.run.folder import CANDIDATES, EVENTS, RunFolder
from promptopt.scoring.runtime import Runtime, RuntimeOptions
from promptopt.search.context import SearchContext, StepReport
from promptopt.search.meta_prompts import load_meta_prompts
from promptopt.search.phrases import ADD, DELETE, PARAPHRASE, SWAP, Edit, split_phrases
from promptopt.search.plan import RunSettings, final_reserve
from promptopt.search.state import SearchState
from promptopt.search.strategies.plum import (
    AnnealingParams,
    GeneticParams,
    HillClimbing,
    HillClimbingParams,
    PhraseSearch,
    PlumParams,
    Sizing,
    TabuList,
    TabuParams,
    accept_move,
    acceptance_probability,
    next_generation,
    size_search,
    temperature,
)
from promptopt.search.strategies.registry import STRATEGIES, make_strategy, strategy_info
from promptopt.task.loader import LoadedTask, load_task
from tests.support.engine import run_engine, search_state
from tests.support.search import (
    WORDS_GOOD,
    Counter,
    providers,
    stable,
    with_loadable_models,
    write_task,
)

RESERVE = final_reserve(20, 20, 3)
TRAIN = 40
METHODS = ("plum-hc", "plum-sa", "plum-tabu", "plum-ga")
DISTRACTORS = ("weather", "actors")
INITIAL = (
    "Classify the review as positive or negative, mention the weather first, and count the "
    "actors. Reply with the label only."
)
PHRASE = re.compile(r"<PHRASE>\n(.*)\n</PHRASE>", re.DOTALL)


class Killed(BaseException):
    """Stands in for the process being killed mid-run."""


# --- a task whose distractions cost accuracy one by one ---------------------------------------


def distracted_target(request: ChatRequest) -> str:
    """Wrong on the reviews whose number is below the number of distracting phrases, modulo 4:
    each distraction the instruction keeps costs a quarter of the examples."""
    system = request.messages[0]["content"].lower()
    review = request.messages[-1]["content"]
    distractions = sum(word in system for word in DISTRACTORS)
    number = re.search(r"review (\d+)", review)
    assert number is not None
    truth = "positive" if any(w in review for w in WORDS_GOOD) else "negative"
    if int(number.group(1)) % 4 < distractions:
        return "negative" if truth == "positive" else "positive"
    return truth


def hashed_target(request: ChatRequest) -> str:
    """Right on a share of the reviews that depends on the instruction's exact text, so that
    any two prompts likely score differently (a landscape with many ups and downs)."""
    system = request.messages[0]["content"]
    review = request.messages[-1]["content"]
    level = int(hashlib.sha256(system.encode()).hexdigest(), 16) % 5
    number = re.search(r"review (\d+)", review)
    assert number is not None
    truth = "positive" if any(w in review for w in WORDS_GOOD) else "negative"
    if int(number.group(1)) % 5 < level:
        return "negative" if truth == "positive" else "positive"
    return truth


def rewording_optimizer(request: ChatRequest) -> str:
    """Rewords the phrase it is shown without changing what it asks: a distraction stays."""
    user = request.messages[-1]["content"]
    found = PHRASE.search(user)
    assert found is not None, "the optimizer is only ever asked to paraphrase a phrase"
    phrase = found.group(1).strip().rstrip(".,;:")
    prefix = ("Please", "Kindly", "Carefully")[request.sample_index % 3]
    return f"Sure!\n<START>{prefix} {phrase[0].lower()}{phrase[1:]}<END>"


def write_plum_task(tmp: Path, strategy: str = "plum-hc", prompt: str = INITIAL) -> Path:
    path = write_task(tmp, strategy=strategy)
    spec = yaml.safe_load(path.read_text())
    spec["prompt"] = prompt
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def settings_for(
    strategy: str, caps: BudgetCaps | None = None, seed: int = 0, **params: Any
) -> RunSettings:
    _, validated = make_strategy(strategy, params)
    return RunSettings(
        strategy=strategy,
        params=validated.model_dump(mode="json"),
        seed=seed,
        caps=caps or BudgetCaps(),
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
    scripted = providers(
        target or Counter(distracted_target), optimizer or Counter(rewording_optimizer)
    )
    return await run_engine(
        write_plum_task(tmp, settings.strategy), folder, settings, scripted, resume=resume
    )


def latest_records(folder: RunFolder) -> dict[str, dict[str, Any]]:
    return {r["id"]: r for r in folder.read_jsonl(CANDIDATES)}


class Harness:
    """The distracted task with scripted models and a search state, outside the engine."""

    def __init__(
        self,
        tmp: Path,
        *,
        prompt: str = INITIAL,
        target: Any = distracted_target,
        optimizer: Any = rewording_optimizer,
        caps: BudgetCaps | None = None,
    ) -> None:
        self.task: LoadedTask = load_task(write_plum_task(tmp, prompt=prompt))
        self.target = Counter(target)
        self.optimizer = Counter(optimizer)
        self.runtime = Runtime(
            self.task,
            RuntimeOptions(concurrency=4, caps=caps or BudgetCaps()),
            store=NullCache(),
            providers=providers(self.target, self.optimizer),
        )
        runtime = self.runtime
        self.state = search_state(self.task, runtime)
        self.ctx: SearchContext = self.state.context
        initial = self.ctx.add_candidate(self.state.layout.initial, operator="initial")
        assert initial is not None
        self.initial = initial

    def events(self, kind: str) -> list[dict[str, Any]]:
        return [e for e in self.state.pending_events if e["event"] == kind]

    async def steps(self, strategy: PhraseSearch) -> list[StepReport]:
        reports = []
        async with self.runtime:
            async for report in strategy.search(self.ctx, self.initial):
                reports.append(report)
        return reports


def build(name: str, **params: Any) -> PhraseSearch:
    strategy, _ = make_strategy(name, params)
    assert isinstance(strategy, PhraseSearch)
    return strategy


# --- end to end: two deletions in sequence ----------------------------------------------------


@pytest.mark.parametrize("method", METHODS)
async def test_each_method_deletes_both_distractions_one_edit_at_a_time(
    tmp_path: Path, method: str
) -> None:
    folder = RunFolder.create(tmp_path / "runs", "q")
    optimizer = Counter(rewording_optimizer)
    summary = await run_once(tmp_path, folder, settings_for(method), optimizer=optimizer)
    best = summary["best_prompt"].lower()
    assert not any(word in best for word in DISTRACTORS), best
    assert "positive or negative" in best
    assert summary["scores"]["initial"]["test"] == pytest.approx(0.5)
    assert summary["scores"]["best"]["test"] == pytest.approx(1.0)
    assert summary["test_comparison"]["verdict"] == "improved"
    assert optimizer.calls > 0, "paraphrases were asked for"

    # The best prompt descends from the initial one by single edits, two of them deletions of
    # a distraction, and its lineage names each edit.
    chain = lineage(folder.candidates(), summary["best_id"])
    assert chain[0].operator == "initial"
    assert all(r.operator.startswith(f"{method}/") for r in chain[1:])
    assert all(len(r.parents) == 1 for r in chain[1:])
    records = latest_records(folder)
    deleted = [
        records[r.id]["feedback"]["edit"]["phrases"][0]
        for r in chain[1:]
        if r.operator == f"{method}/delete"
    ]
    assert sum(any(w in p for w in DISTRACTORS) for p in deleted) >= 2
    # Scores rose stepwise on the shared subset: 0.5 with both distractions, 1.0 with none.
    train = [records[r.id]["scores"]["train"]["mean"] for r in chain]
    assert train[0] == pytest.approx(0.5) and train[-1] == pytest.approx(1.0)
    events = folder.read_jsonl(EVENTS)
    (plan,) = [e for e in events if e["event"] == "plum_plan"]
    for record in records.values():
        assert record["scores"]["train"]["n"] == plan["eval_examples"]


async def test_hill_climbing_moves_only_up_and_each_move_removes_a_distraction(
    tmp_path: Path,
) -> None:
    h = Harness(tmp_path)
    reports = await h.steps(build("plum-hc", candidates_per_step=6))
    moves = h.events("plum_move")
    assert len(moves) == 2
    assert [m["score"] for m in moves] == [0.5, 0.75]
    assert [m["neighbour_score"] for m in moves] == [0.75, 1.0]
    # Every step's ranking is the full ranking of everything scored, best first.
    for report in reports:
        ranked = [h.ctx.candidates[c].mean("train") or 0.0 for c in report.ranking]
        assert ranked == sorted(ranked, reverse=True)
        assert report.best_score == ranked[0]
    scored = {c.id for c in h.ctx.candidates.values() if c.n("train")}
    assert set(reports[-1].ranking) == scored


# --- the rules: annealing, tabu, patience, generations ---------------------------------------


def test_the_temperature_falls_exponentially() -> None:
    assert temperature(0.05, 4.0, 0) == pytest.approx(0.05)
    assert temperature(0.05, 4.0, 4) == pytest.approx(0.05 / math.e)
    assert temperature(0.05, 4.0, 8) == pytest.approx(0.05 * math.exp(-2))
    assert temperature(1.0, 2.0, 3) == pytest.approx(math.exp(-1.5))
    temps = [temperature(0.05, 4.0, i) for i in range(10)]
    assert temps == sorted(temps, reverse=True)


def test_acceptance_is_certain_for_better_and_exp_minus_delta_over_t_for_worse() -> None:
    assert acceptance_probability(-0.1, 0.05) == 1.0
    assert acceptance_probability(0.0, 0.05) == 1.0
    assert acceptance_probability(0.05, 0.05) == pytest.approx(math.exp(-1))
    assert acceptance_probability(0.1, 0.05) == pytest.approx(math.exp(-2))
    assert acceptance_probability(0.1, 0.0) == 0.0
    # A better move is taken without drawing from the rng.
    rng = random.Random(3)
    state = rng.getstate()
    assert accept_move(rng, -0.2, 0.01) == (True, 1.0)
    assert rng.getstate() == state


@pytest.mark.parametrize(("delta", "temp"), [(0.05, 0.05), (0.1, 0.05), (0.02, 0.1)])
def test_seeded_acceptance_frequency_matches_the_probability(delta: float, temp: float) -> None:
    rng = random.Random(7)
    trials = 20000
    accepted = sum(accept_move(rng, delta, temp)[0] for _ in range(trials))
    assert accepted / trials == pytest.approx(math.exp(-delta / temp), abs=0.015)
    again = random.Random(7)
    assert accepted == sum(accept_move(again, delta, temp)[0] for _ in range(trials))


def test_the_tabu_list_forbids_recent_edits_and_their_undoing_and_forgets_old_ones() -> None:
    tabu = TabuList(2)
    weather = Edit(DELETE, (1,), ("mention the weather first,",))
    actors = Edit(DELETE, (2,), ("and count the actors.",))
    swap = Edit(SWAP, (0, 3), ("Classify the review,", "Reply with the label only."))
    assert not tabu.forbids(weather)
    tabu.add(weather)
    assert tabu.forbids(weather)
    # The same edit at another position, with other spacing, is the same edit.
    assert tabu.forbids(Edit(DELETE, (0,), ("Mention the  weather first.",)))
    # Adding the phrase back would undo the move.
    assert tabu.forbids(Edit(ADD, (3,), ("mention the weather first",)))
    assert not tabu.forbids(actors)
    tabu.add(actors)
    tabu.add(swap)
    # Bounded: the oldest move is forgotten.
    assert len(tabu) == 2
    assert not tabu.forbids(weather)
    assert tabu.forbids(actors)
    assert tabu.forbids(Edit(SWAP, (0, 3), ("Reply with the label only.", "Classify the review,")))
    assert tabu.to_json()[-1] == list(swap.key)
    paraphrase = Edit(PARAPHRASE, (1,), ("and count the actors.",), replacement="tally the cast.")
    tabu.add(paraphrase)
    assert tabu.forbids(Edit(PARAPHRASE, (2,), ("and count the actors",)))
    empty = TabuList(0)
    empty.add(weather)
    assert not empty.forbids(weather) and len(empty) == 0


async def test_tabu_search_never_makes_a_tabu_edit(tmp_path: Path) -> None:
    h = Harness(tmp_path, target=hashed_target)
    await h.steps(build("plum-tabu", steps=6, candidates_per_step=4, tabu_size=3))
    moves = h.events("plum_move")
    assert len(moves) == 6
    for before, move in itertools.pairwise(moves):
        # The tabu list in force when the move was chosen is the one after the move before.
        edit = move["edit"]
        key = Edit(edit["op"], tuple(edit["positions"]), tuple(edit["phrases"])).key
        assert list(key) not in before["tabu"]
        assert list(key) in move["tabu"]
    # Deleting a phrase makes adding it back tabu too, and adding one makes deleting it tabu.
    for move in moves:
        edit = move["edit"]
        key = Edit(edit["op"], tuple(edit["positions"]), tuple(edit["phrases"])).key
        if key[0] in (DELETE, ADD):
            assert [ADD if key[0] == DELETE else DELETE, *key[1:]] in move["tabu"]
    # Tabu search moves even when the best neighbour is worse.
    assert any(m["delta"] > 0 for m in moves)


async def test_hill_climbing_stops_after_patience_steps_without_a_better_neighbour(
    tmp_path: Path,
) -> None:
    # Every prompt scores the same, so no neighbour ever improves.
    h = Harness(tmp_path, target=lambda r: "positive")
    reports = await h.steps(build("plum-hc", steps=8, candidates_per_step=3, patience=3))
    assert [r.name for r in reports] == ["step-1", "step-2", "step-3"]
    assert [r.detail["stale"] for r in reports] == [1, 2, 3]
    assert not h.events("plum_move") and len(h.events("plum_stay")) == 3
    (stopped,) = h.events("search_stopped")
    assert "patience 3" in stopped["reason"]


async def test_annealing_accepts_worse_moves_when_hot_and_records_the_rule(
    tmp_path: Path,
) -> None:
    h = Harness(tmp_path, target=hashed_target)
    reports = await h.steps(build("plum-sa", steps=6, candidates_per_step=3, t_max=0.5))
    moves = h.events("plum_move") + h.events("plum_stay")
    assert len(moves) == len(reports) == 6
    for i, move in enumerate(sorted(moves, key=lambda m: m["step"])):
        assert move["temperature"] == pytest.approx(0.5 * math.exp(-i / 4.0), abs=1e-6)
        expected = 1.0 if move["delta"] <= 0 else math.exp(-move["delta"] / move["temperature"])
        assert move["probability"] == pytest.approx(expected, abs=1e-3)
    assert any(m["delta"] > 0 for m in h.events("plum_move")), "a worse move was accepted"


async def test_annealing_when_cold_never_accepts_a_worse_move(tmp_path: Path) -> None:
    h = Harness(tmp_path, target=hashed_target)
    await h.steps(build("plum-sa", steps=6, candidates_per_step=3, t_max=1e-9))
    assert all(m["delta"] <= 0 for m in h.events("plum_move"))
    stays = h.events("plum_stay")
    assert stays and all(m["delta"] > 0 and m["probability"] == 0 for m in stays)


def test_the_next_generation_keeps_the_elite_and_the_best_children() -> None:
    scores = {"a": 0.9, "b": 0.5, "c": 0.4, "d": 0.95, "e": 0.3, "f": 0.6}
    assert next_generation(["a", "b", "c"], ["d", "e", "f"], scores, size=3, elitism=1) == [
        "d",
        "a",
        "f",
    ]
    # Without elitism the parents only fill in when too few children were made.
    assert next_generation(["a", "b", "c"], ["e", "f"], scores, size=3, elitism=0) == [
        "a",
        "f",
        "e",
    ]
    assert next_generation(["a", "b", "c"], ["e"], scores, size=3, elitism=0) == ["a", "b", "e"]
    # A child that is a parent already (a revisit) is not counted twice.
    assert next_generation(["a", "b"], ["a", "c"], scores, size=2, elitism=1) == ["a", "c"]


async def test_the_ga_breeds_from_tournament_winners(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    strategy = build("plum-ga", steps=3, population=4, candidates_per_step=4, eval_examples=20)
    reports = await h.steps(strategy)
    assert [r.name for r in reports] == [f"generation-{i}" for i in range(4)]
    generations = h.events("plum_generation")
    assert len(generations[0]["population"]) == 4
    for before, after in itertools.pairwise(generations):
        # Parents come from the population before; the elite survives.
        assert set(after["parents"]) <= set(before["population"])
        assert before["population"][0] in after["population"]
        assert len(after["population"]) == 4
    for cand in h.ctx.candidates.values():
        if cand.operator != "initial":
            assert cand.operator.startswith("plum-ga/") and len(cand.parents) == 1


# --- paraphrases -----------------------------------------------------------------------------


async def test_a_paraphrase_shows_the_phrase_and_the_instruction_and_fits_its_place(
    tmp_path: Path,
) -> None:
    h = Harness(tmp_path)
    strategy = build("plum-hc", steps=1, candidates_per_step=6, operators=["paraphrase"])
    await h.steps(strategy)
    phrases = [p.text for p in split_phrases(INITIAL)]
    asked = {json.loads(r)[-1]["content"] for r in h.optimizer.requests}
    assert 1 <= len(asked) <= 4
    for user in asked:
        found = PHRASE.search(user)
        assert found is not None and found.group(1) in phrases
        assert INITIAL in user
        assert "Say whether a film review is positive or negative." in user
    made = [c for c in h.ctx.candidates.values() if c.operator == "plum-hc/paraphrase"]
    assert len(made) == 6
    for cand in made:
        edit = cand.feedback["edit"] if cand.feedback else {}
        assert edit["op"] == PARAPHRASE and edit["replacement"].split()[0].lower() in (
            "please",
            "kindly",
            "carefully",
        )
        # The replacement keeps the phrase's closing punctuation, in the phrase's place.
        assert edit["replacement"][-1] == edit["phrases"][0][-1]
        assert cand.text.count("Reply with the label only") + cand.text.count("reply with") == 1
    # Several paraphrases of one phrase are samples of one request.
    indexes = sorted(json.loads(r)[-1]["content"] for r in h.optimizer.requests)
    assert len(indexes) == 6


async def test_an_unusable_paraphrase_is_replaced_by_a_free_edit(tmp_path: Path) -> None:
    h = Harness(tmp_path, optimizer=lambda r: "I'm sorry, but I can't help with that.")
    reports = await h.steps(build("plum-hc", steps=1, candidates_per_step=6))
    rejected = [e for e in h.events("rejected") if e["operator"] == "plum-hc/paraphrase"]
    assert rejected and all(e["reason"] == "degenerate" for e in rejected)
    made = [c for c in h.ctx.candidates.values() if c.operator != "initial"]
    assert len(made) == len(reports[0].detail["scores"]) == 6
    assert all(c.operator != "plum-hc/paraphrase" for c in made)


@pytest.mark.parametrize(
    ("answer", "reason"),
    [
        ("<START><Mention the weather first.</WEATHER><END>", "degenerate"),
        (
            "<START>" + "Describe the weather and the season in great detail, " * 3 + "<END>",
            "too_long",
        ),
        ("ECHO", "unchanged"),
    ],
)
async def test_a_paraphrase_with_markup_too_long_or_unchanged_is_rejected(
    tmp_path: Path, answer: str, reason: str
) -> None:
    def optimizer(request: ChatRequest) -> str:
        if answer != "ECHO":
            return answer
        found = PHRASE.search(request.messages[-1]["content"])
        assert found is not None
        return f"<START>{found.group(1).upper()}<END>"

    h = Harness(tmp_path, optimizer=optimizer)
    await h.steps(build("plum-hc", steps=1, candidates_per_step=4, operators=["paraphrase"]))
    rejected = h.events("rejected")
    assert len(rejected) == h.optimizer.calls > 0
    assert {e["reason"] for e in rejected} == {reason}
    assert not [c for c in h.ctx.candidates.values() if c.operator != "initial"]


async def test_no_optimizer_budget_means_no_paraphrase(tmp_path: Path) -> None:
    h = Harness(tmp_path, caps=BudgetCaps(optimizer_calls=0))
    await h.steps(build("plum-hc", steps=3, candidates_per_step=6))
    assert h.optimizer.calls == 0
    assert all(c.operator != "plum-hc/paraphrase" for c in h.ctx.candidates.values())


async def test_a_phrase_asked_again_shows_the_wordings_tried_and_no_request_repeats(
    tmp_path: Path,
) -> None:
    sent: list[tuple[str, int]] = []

    def optimizer(request: ChatRequest) -> str:
        sent.append((json.dumps([dict(m) for m in request.messages]), request.sample_index))
        return rewording_optimizer(request)

    # Nothing improves, so hill climbing keeps editing the initial prompt.
    h = Harness(tmp_path, target=lambda r: "positive", optimizer=optimizer)
    await h.steps(build("plum-hc", steps=5, candidates_per_step=6, patience=5))
    assert len(sent) == len(set(sent)) == h.optimizer.calls > 0
    users = [json.loads(m)[-1]["content"] for m, _ in sent]
    by_phrase: dict[str, list[str]] = {}
    for user in users:
        found = PHRASE.search(user)
        assert found is not None
        by_phrase.setdefault(found.group(1), []).append(user)
    again = [asks for asks in by_phrase.values() if len({*asks}) > 1]
    assert again, "some phrase was asked about more than once"
    for asks in again:
        tried = [a for a in asks if "(none yet)" not in a]
        assert tried and any(w in tried[-1] for w in ("- Please", "- please", "- Kindly"))


def test_labels_cannot_be_deleted(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    phrases = split_phrases(INITIAL)
    text = " ".join(p.text for p in phrases[1:])
    assert h.ctx.add_candidate(text, operator="plum-hc/delete") is None
    assert h.events("rejected")[0]["reason"] == "drops_labels"


# --- budgets and plans -----------------------------------------------------------------------


def test_size_search_fits_the_target_budget() -> None:
    p = PlumParams()
    assert size_search(p, TRAIN, None) == Sizing(40, 8, 6, 48)
    assert size_search(p, 0, None) == Sizing(0, 0, 0, 0)
    # 500 calls: the subset shrinks to the floor (16), then 30 candidates fit.
    assert size_search(p, TRAIN, 500) == Sizing(16, 5, 6, 30)
    assert size_search(p, TRAIN, 2000) == Sizing(40, 8, 6, 48)
    assert size_search(p, TRAIN, 10) == Sizing(16, 0, 0, 0)
    fixed = PlumParams(eval_examples=20)
    assert size_search(fixed, TRAIN, 100) == Sizing(20, 1, 4, 4)
    ga = GeneticParams()
    assert size_search(ga, TRAIN, None, seeded=3) == Sizing(40, 5, 6, 33, 3)
    assert size_search(ga, TRAIN, 16 * 3, seeded=3) == Sizing(16, 0, 0, 2, 2)
    for target in range(0, 1500, 41):
        for seeded in (0, 3):
            s = size_search(p, TRAIN, target, seeded=seeded)
            assert s.children == s.seeded + min(s.children - s.seeded, s.steps * s.per_step)
            if s.children:
                assert s.eval_examples * (1 + s.children) <= target


@pytest.mark.parametrize("method", METHODS)
async def test_plan_bounds_an_uncapped_run(tmp_path: Path, method: str) -> None:
    target, optimizer = Counter(distracted_target), Counter(rewording_optimizer)
    folder = RunFolder.create(tmp_path / "runs", "q")
    params: dict[str, Any] = {"steps": 3, "candidates_per_step": 4, "eval_examples": 20}
    await run_once(
        tmp_path, folder, settings_for(method, **params), target=target, optimizer=optimizer
    )
    plan = build(method, **params).plan({"train": TRAIN})
    assert target.calls - RESERVE <= plan.target_calls
    assert optimizer.calls <= plan.optimizer_calls
    assert plan.layout["eval_examples"] == 20


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize(
    ("search_calls", "optimizer_cap", "params"),
    [
        (100, None, {}),
        (300, 3, {}),
        (500, 40, {}),
        (95, 1, {"eval_examples": 10}),
        (250, 0, {"eval_examples": 40, "candidates_per_step": 3}),
    ],
)
async def test_budgets_are_never_exceeded_and_every_candidate_is_scored(
    tmp_path: Path,
    method: str,
    search_calls: int,
    optimizer_cap: int | None,
    params: dict[str, Any],
) -> None:
    target, optimizer = Counter(distracted_target), Counter(rewording_optimizer)
    folder = RunFolder.create(tmp_path / "runs", "q")
    caps = BudgetCaps(target_calls=RESERVE + search_calls, optimizer_calls=optimizer_cap)
    summary = await run_once(
        tmp_path, folder, settings_for(method, caps, **params), target=target, optimizer=optimizer
    )
    assert target.calls <= RESERVE + search_calls
    if optimizer_cap is not None:
        assert optimizer.calls <= optimizer_cap
    assert summary["scores"]["best"]["test"] is not None
    events = folder.read_jsonl(EVENTS)
    (plan,) = [e for e in events if e["event"] == "plum_plan"]
    size = plan["eval_examples"]
    for record in latest_records(folder).values():
        assert record["scores"]["train"]["n"] == size
    assert not [e for e in events if e["event"] == "budget_exhausted"]
    dry = build(method, **params).plan_for_budget({"train": TRAIN}, search_calls, optimizer_cap)
    assert target.calls - RESERVE <= dry.target_calls <= search_calls
    assert optimizer.calls <= dry.optimizer_calls


async def test_a_budget_too_small_for_one_edit_keeps_the_initial_prompt(tmp_path: Path) -> None:
    folder = RunFolder.create(tmp_path / "runs", "q")
    target, optimizer = Counter(distracted_target), Counter(rewording_optimizer)
    caps = BudgetCaps(target_calls=RESERVE + 20)
    summary = await run_once(
        tmp_path, folder, settings_for("plum-sa", caps), target=target, optimizer=optimizer
    )
    assert optimizer.calls == 0 and target.calls == 20 + 20
    assert summary["best_id"] == "c0000"
    stopped = [e for e in folder.read_jsonl(EVENTS) if e["event"] == "search_stopped"]
    assert stopped and "single edit" in stopped[0]["reason"]


# --- determinism and resume ------------------------------------------------------------------


@pytest.mark.parametrize("method", METHODS)
async def test_same_seed_gives_the_same_run_folder(tmp_path: Path, method: str) -> None:
    a = RunFolder.create(tmp_path / "a", "q")
    b = RunFolder.create(tmp_path / "b", "q")
    await run_once(tmp_path, a, settings_for(method, eval_examples=20))
    await run_once(tmp_path, b, settings_for(method, eval_examples=20))
    assert stable(a) == stable(b)
    other = RunFolder.create(tmp_path / "c", "q")
    await run_once(tmp_path, other, settings_for(method, seed=1, eval_examples=20))
    assert stable(other)["events"] != stable(a)["events"]


@pytest.mark.parametrize("method", METHODS)
async def test_killed_run_resumes_without_repeating_completed_requests(
    tmp_path: Path, method: str
) -> None:
    params: dict[str, Any] = {"eval_examples": 20, "steps": 4}
    baseline = RunFolder.create(tmp_path / "base", "q")
    await run_once(tmp_path, baseline, settings_for(method, **params))
    # Killed a few target calls into the second step, wherever the first ended.
    first_step = next(e for e in baseline.read_jsonl(EVENTS) if e["event"] == "step")
    kill = first_step["calls"]["target"] + 10

    def kill_at(n: int) -> None:
        if n == kill:
            raise Killed

    folder = RunFolder.create(tmp_path / "runs", "q")
    first_target = Counter(distracted_target, on_call=kill_at)
    first_optimizer = Counter(rewording_optimizer)
    with pytest.raises(Killed):
        await run_once(
            tmp_path,
            folder,
            settings_for(method, **params),
            target=first_target,
            optimizer=first_optimizer,
        )
    steps = [e for e in folder.read_jsonl(EVENTS) if e["event"] == "step"]
    assert len(steps) >= 1, "the kill falls after the first step"

    second_target = Counter(distracted_target)
    second_optimizer = Counter(rewording_optimizer)
    await run_once(
        tmp_path,
        folder,
        settings_for(method, **params),
        target=second_target,
        optimizer=second_optimizer,
        resume=True,
    )
    assert not set(first_optimizer.requests) & set(second_optimizer.requests)
    killed = first_target.requests[kill - 1]
    assert not (set(first_target.requests) - {killed}) & set(second_target.requests)
    assert stable(folder) == stable(baseline)


# --- parameters, the registry and the command line -------------------------------------------


def test_the_four_methods_are_registered_with_presets() -> None:
    assert set(METHODS) <= set(STRATEGIES)
    assert isinstance(build("plum-hc"), HillClimbing)
    assert strategy_info("plum-hc").params is HillClimbingParams
    assert strategy_info("plum-sa").params is AnnealingParams
    assert strategy_info("plum-tabu").params is TabuParams
    assert strategy_info("plum-ga").params is GeneticParams
    for method in METHODS:
        light = build(method, preset="light").plan({"train": 50})
        assert light.target_calls <= 300 and light.optimizer_calls <= 15
        default = build(method).plan_for_budget({"train": 50}, 500, 40)
        assert default.target_calls <= 500 and default.optimizer_calls <= 40
    with pytest.raises(UsageError, match=r"search\.params\.operators"):
        make_strategy("plum-hc", {"operators": ["delete", "crossover"]})
    with pytest.raises(UsageError, match=r"search\.params\.operators"):
        make_strategy("plum-hc", {"operators": []})
    with pytest.raises(UsageError, match=r"elitism"):
        make_strategy("plum-ga", {"population": 2, "elitism": 3})
    with pytest.raises(UsageError, match=r"search\.params\.t_max"):
        make_strategy("plum-sa", {"t_max": 0})
    with pytest.raises(UsageError, match=r"search\.params\.patience"):
        make_strategy("plum-sa", {"patience": 2})


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
    with pytest.raises(UsageError, match="plum-tabu needs training examples"):
        async for _ in build("plum-tabu").search(empty.context, initial):
            pass


def test_the_meta_prompt_loads() -> None:
    meta = load_meta_prompts().get("plum/paraphrase")
    assert meta.placeholders == {
        "phrase",
        "instruction",
        "tried",
        "task_description",
        "labels",
        "output_format",
        "examples",
    }
    assert meta.system and meta.description
    assert "<START>" in meta.user and "<END>" in meta.user


@pytest.mark.parametrize("method", METHODS)
def test_strategies_lists_the_method_and_dry_run_plans_it(tmp_path: Path, method: str) -> None:
    runner = CliRunner()
    listing = json.loads(runner.invoke(app, ["strategies", "--json"]).stdout)
    entry = next(s for s in listing if s["name"] == method)
    assert {"steps", "candidates_per_step", "operators"} <= {p["name"] for p in entry["params"]}
    task = with_loadable_models(write_plum_task(tmp_path, method))
    result = runner.invoke(
        app,
        ["run", str(task), "--dry-run", "--budget", "400", "--optimizer-budget", "10", "--json"],
    )
    assert result.exit_code == 0, result.output
    plan = json.loads(result.stdout)
    assert plan["target_calls"] <= 400 and plan["final_eval_calls"] == RESERVE
    assert plan["optimizer_calls"] <= 10
    assert any(method in note for note in plan["notes"])


def test_replacing_the_seed_replaces_the_settings() -> None:
    settings = settings_for("plum-hc")
    assert dataclasses.replace(settings, seed=3).seed == 3
