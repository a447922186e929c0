"""EvoPrompt GA and DE: the initial population, roulette parents, crossover-then-mutation and
elitist survival (GA), donors, the best and replace-only-if-better (DE), budgets, determinism,
resume, and end to end on a toy task whose best prompt needs two parents' properties."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import random
import re
from collections import Counter as Tally
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from promptopt.cli.main import app
from promptopt.errors import UsageError
from promptopt.llm.budget import BudgetCaps
from promptopt.llm.cache import NullCache
from promptopt.llm.messages import FINISH_LENGTH, ChatRequest
from promptopt.reporting.run_files import lineage
from promptopt.run.folder import CANDIDATES, EVENTS, RunFolder
from promptopt.scoring.runtime import Runtime, RuntimeOptions
from promptopt.search.context import Answer, Candidate, SearchContext, StepReport
from promptopt.search.meta_prompts import load_meta_prompts
from promptopt.search.plan import RunSettings, final_reserve
from promptopt.search.population import roulette_select
from promptopt.search.state import SearchState
from promptopt.search.strategies.evoprompt import (
    DE_META_PROMPT,
    GA_META_PROMPT,
    EvoPromptDE,
    EvoPromptDEParams,
    EvoPromptGA,
    EvoPromptParams,
    Sizing,
    final_answer,
    next_generation,
    pick_donors,
    replaces,
    size_evolution,
)
from promptopt.search.strategies.registry import make_strategy, strategy_info
from promptopt.task.loader import LoadedTask, load_task
from tests.support.engine import run_engine, search_state, strategy_settings
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
STRATEGIES = ("evoprompt-ga", "evoprompt-de")

# The toy task's two properties: each alone is worth 0.75, together 1.0. The initial
# population has each only separately (paraphrases say "carefully", induced instructions say
# "label only"); only combining two parents gives both.
CAREFUL = "carefully"
LABEL_ONLY = "label only"


class Killed(BaseException):
    """Stands in for the process being killed mid-run."""


# --- scripted models -----------------------------------------------------------------------


def _review(request: ChatRequest) -> tuple[int, str]:
    review = request.messages[-1]["content"]
    number = re.search(r"review (\d+)", review)
    assert number is not None
    truth = "positive" if any(w in review for w in WORDS_GOOD) else "negative"
    return int(number.group(1)), truth


def two_property_target(request: ChatRequest) -> str:
    """Always right with both properties; with one, right on half the reviews and "positive"
    on the others (0.75); with neither, always "positive" (0.5)."""
    system = request.messages[0]["content"].lower()
    number, truth = _review(request)
    careful, label_only = CAREFUL in system, LABEL_ONLY in system
    if careful and label_only:
        return truth
    if careful and number % 4 in (0, 1):
        return truth
    if label_only and number % 4 in (2, 3):
        return truth
    return "positive"


def _digest(request: ChatRequest) -> str:
    blob = json.dumps([dict(m) for m in request.messages]) + str(request.sample_index)
    return hashlib.sha256(blob.encode()).hexdigest()[:8]


def _features(text: str) -> set[str]:
    return {f for f in (CAREFUL, LABEL_ONLY) if f in text.lower()}


def _tagged(user: str, tag: str) -> str:
    found = re.search(rf"<{tag}>\n(.*?)\n</{tag}>", user, re.DOTALL)
    assert found is not None, tag
    return found.group(1)


def _prompt(features: set[str], variant: str) -> str:
    text = "Classify the review"
    if CAREFUL in features:
        text += " carefully"
    if LABEL_ONLY in features:
        text += " and give the label only"
    return f"{text}, variant {variant}."


def two_property_optimizer(request: ChatRequest) -> str:
    """Paraphrases are careful, induced instructions ask for the label only, and the evolution
    operators combine their parents' properties: GA the union of both parents', DE the best's
    plus those where the donors differ. Every answer has a fresh variant, as mutation would."""
    user = request.messages[-1]["content"]
    variant = _digest(request)
    if "<PARENT_1>" in user:
        parents = _features(_tagged(user, "PARENT_1")) | _features(_tagged(user, "PARENT_2"))
        child = _prompt(parents, variant)
        return (
            f"<CROSSOVER>{_prompt(parents, 'x')}</CROSSOVER>\n"
            f"Mutated:\n<START>{child}<END>\nThis keeps both parents' strengths."
        )
    if "<DONOR_1>" in user:
        d1, d2 = _features(_tagged(user, "DONOR_1")), _features(_tagged(user, "DONOR_2"))
        combined = _features(_tagged(user, "BEST")) | (d1 ^ d2)
        return (
            f"<DIFFERENCES>{', '.join(sorted(d1 ^ d2)) or 'none'}</DIFFERENCES>\n"
            f"<MUTATED>{', '.join(sorted(d1 ^ d2)) or 'none'}</MUTATED>\n"
            f"<COMBINED>{_prompt(combined, 'y')}</COMBINED>\n"
            f"<START>{_prompt(combined, variant)}<END>"
        )
    if "<INSTRUCTION>" in user:  # a paraphrase of the initial prompt
        return f"<START>{_prompt({CAREFUL}, variant)}<END>"
    if "Output:" in user:  # induction from demonstrations
        return f"Instruction: {_prompt({LABEL_ONLY}, variant)}"
    raise AssertionError(f"unexpected meta-prompt: {user[:200]}")


# --- the engine around EvoPrompt -----------------------------------------------------------


settings_for = strategy_settings


def counters() -> tuple[Counter, Counter]:
    return Counter(two_property_target), Counter(two_property_optimizer)


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
        target or Counter(two_property_target), optimizer or Counter(two_property_optimizer)
    )
    return await run_engine(
        write_task(tmp, strategy=settings.strategy), folder, settings, scripted, resume=resume
    )


def events(folder: RunFolder, kind: str) -> list[dict[str, Any]]:
    return [e for e in folder.read_jsonl(EVENTS) if e["event"] == kind]


def records(folder: RunFolder) -> dict[str, dict[str, Any]]:
    return {r["id"]: r for r in folder.read_jsonl(CANDIDATES)}


class Harness:
    """The toy task with scripted models and a search state, outside the engine."""

    def __init__(
        self, tmp: Path, optimizer: Any = two_property_optimizer, target: Any = two_property_target
    ) -> None:
        self.task: LoadedTask = load_task(write_task(tmp))
        self.requests: list[ChatRequest] = []

        def recorded(request: ChatRequest) -> str:
            self.requests.append(request)
            return str(optimizer(request))

        self.runtime = Runtime(
            self.task,
            RuntimeOptions(concurrency=4, caps=BudgetCaps()),
            store=NullCache(),
            providers=providers(Counter(target), Counter(recorded)),
        )
        runtime = self.runtime
        self.state = search_state(self.task, runtime)
        self.ctx: SearchContext = self.state.context
        initial = self.ctx.add_candidate(self.state.layout.initial, operator="initial")
        assert initial is not None
        self.initial = initial

    def events(self, kind: str) -> list[dict[str, Any]]:
        return [e for e in self.state.pending_events if e["event"] == kind]

    def users(self, tag: str) -> list[str]:
        return [
            r.messages[-1]["content"] for r in self.requests if tag in r.messages[-1]["content"]
        ]

    async def steps(self, strategy: EvoPromptGA | EvoPromptDE) -> list[StepReport]:
        reports = []
        async with self.runtime:
            async for report in strategy.search(self.ctx, self.initial):
                reports.append(report)
        return reports


# --- end to end ----------------------------------------------------------------------------


@pytest.mark.parametrize("strategy", STRATEGIES)
async def test_evolution_combines_two_parents_properties_and_proves_it_on_test(
    tmp_path: Path, strategy: str
) -> None:
    folder = RunFolder.create(tmp_path / "runs", "toy")
    summary = await run_once(tmp_path, folder, settings_for(strategy, eval_examples=20))
    best = summary["best_prompt"].lower()
    assert CAREFUL in best and LABEL_ONLY in best
    assert summary["scores"]["initial"]["test"] == pytest.approx(0.5)
    assert summary["scores"]["best"]["test"] == pytest.approx(1.0)
    assert summary["test_comparison"]["verdict"] == "improved"

    cands = records(folder)
    # The initial population has each property only on its own.
    initial_pop = [r for r in cands.values() if r["step"] <= 1]
    assert not any(_features(r["text"]) == {CAREFUL, LABEL_ONLY} for r in initial_pop)
    assert {frozenset(_features(r["text"])) for r in initial_pop} >= {
        frozenset({CAREFUL}),
        frozenset({LABEL_ONLY}),
    }
    chain = lineage(folder.candidates(), summary["best_id"])
    operator = (
        f"{strategy}/crossover-mutate"
        if strategy == "evoprompt-ga"
        else (f"{strategy}/mutate-crossover")
    )
    # Root first: the initial prompt or an induced instruction, down to the best.
    assert chain[-1].operator == operator
    assert chain[0].operator in ("initial", f"{strategy}/induce")
    record = cands[summary["best_id"]]
    if strategy == "evoprompt-ga":
        # Crossover records both parents, which hold one property each.
        p1, p2 = record["parents"]
        assert {frozenset(_features(cands[p]["text"])) for p in (p1, p2)} == {
            frozenset({CAREFUL}),
            frozenset({LABEL_ONLY}),
        }
    else:
        feedback = record["feedback"]
        assert record["parents"][0] == feedback["member"]
        assert set(record["parents"]) == {feedback["member"], *feedback["donors"], feedback["best"]}
        assert feedback["member"] not in feedback["donors"]
        assert len(set(feedback["donors"])) == 2
    steps = events(folder, "step")
    assert steps[0]["name"] == "initial-population"
    assert [s["name"] for s in steps[1:]] == [f"generation-{i}" for i in range(1, len(steps))]


async def test_ga_next_generation_is_the_best_popsize_of_parents_and_children(
    tmp_path: Path,
) -> None:
    h = Harness(tmp_path)
    params = EvoPromptParams(popsize=4, generations=3, eval_examples=20)
    reports = await h.steps(EvoPromptGA(params))
    assert [r.name for r in reports] == [
        "initial-population",
        "generation-1",
        "generation-2",
        "generation-3",
    ]
    (plan,) = h.events("evoprompt_plan")
    subset = set(plan["ids"])
    survivors = h.events("ga_survivors")
    assert len(survivors) == 3
    previous = reports[0].detail["population"]
    for report, event in zip(reports[1:], survivors, strict=True):
        children = list(report.detail["scores"])
        union = {cid: h.ctx.candidates[cid].mean("train") or 0.0 for cid in [*previous, *children]}
        expected = sorted(union, key=lambda cid: (-union[cid], cid))[:4]
        assert event["survivors"] == report.detail["population"] == expected
        assert set(event["dropped"]) == set(union) - set(expected)
        previous = report.detail["population"]
        # Every prompt is scored on the one shared subset.
        for cid in union:
            assert set(h.ctx.candidates[cid].scores["train"]) == subset
        # The report ranks everything scored so far, best first.
        means = [h.ctx.candidates[c].mean("train") or 0.0 for c in report.ranking]
        assert means == sorted(means, reverse=True)
        assert set(union) <= set(report.ranking)
    assert set(reports[-1].ranking) == {c.id for c in h.ctx.candidates.values() if c.n("train")}
    assert (reports[-1].best_score or 0.0) == 1.0


def test_next_generation_keeps_the_top_popsize_and_ties_go_to_the_older() -> None:
    scores = {"c0000": 0.5, "c0001": 0.75, "c0002": 0.25, "c0005": 0.75, "c0006": 1.0}
    assert next_generation(scores, ["c0000", "c0001", "c0002"], ["c0005", "c0006"], 3) == [
        "c0006",
        "c0001",
        "c0005",
    ]
    # Children that are all worse leave the parents in place.
    assert next_generation(scores, ["c0000", "c0001"], ["c0002"], 2) == ["c0001", "c0000"]
    # Only the members and children named count.
    assert next_generation(scores, ["c0000"], ["c0002"], 5) == ["c0000", "c0002"]


async def test_ga_parents_are_drawn_by_roulette_on_fitness_with_the_runs_rng(
    tmp_path: Path,
) -> None:
    h = Harness(tmp_path)
    members: list[Candidate] = [h.initial]
    for text in ("Level one.", "Level two.", "Level three.", "Level four."):
        cand = h.ctx.add_candidate(text, operator="test")
        assert cand is not None
        members.append(cand)
    scores = {c.id: s for c, s in zip(members, [0.0, 0.6, 0.0, 0.2, 0.0], strict=True)}
    ga = EvoPromptGA(EvoPromptParams())
    h.ctx.rng.seed(7)
    pairs = ga.choose_parents(h.ctx, members, scores, 6)
    # The same draws as the shared roulette with the same seed, two distinct parents each.
    rng = random.Random(7)
    weights = [scores[c.id] for c in members]
    expected = [roulette_select(rng, weights, 2) for _ in range(6)]
    assert [[members.index(a), members.index(b)] for a, b in pairs] == expected
    # Members of fitness 0 are never chosen while others score above 0.
    assert all({a.id, b.id} == {members[1].id, members[3].id} for a, b in pairs)
    # Over many draws, the first parent is picked in proportion to fitness (0.6 : 0.2).
    h.ctx.rng.seed(11)
    members[2:3] = []
    del scores["c0002"]
    scores[members[0].id] = 0.2
    first = Tally(a.id for a, _ in ga.choose_parents(h.ctx, members, scores, 3000))
    share = first[members[1].id] / 3000
    assert 0.55 < share < 0.65  # 0.6 / (0.2 + 0.6 + 0.2 + 0.0)
    assert members[3].id not in first


async def test_ga_asks_one_crossover_then_mutation_meta_prompt_per_child(
    tmp_path: Path,
) -> None:
    h = Harness(tmp_path)
    params = EvoPromptParams(popsize=4, generations=2, eval_examples=12)
    reports = await h.steps(EvoPromptGA(params))
    metas = h.users("<PARENT_1>")
    assert sum(r.detail["asked"] for r in reports[1:]) == 8
    asked = [r for r in h.requests if "<PARENT_1>" in r.messages[-1]["content"]]
    assert len(asked) == 8
    # The evolution temperature and the room for two steps, per request.
    assert {r.params["temperature"] for r in asked} == {0.5}
    assert {r.params["max_tokens"] for r in asked} == {320}
    # Each meta-prompt shows a pair the roulette drew, in the order drawn.
    drawn = [
        (h.ctx.candidates[a].text, h.ctx.candidates[b].text)
        for r in reports[1:]
        for a, b in r.detail["parents"]
    ]
    shown = [(_tagged(m, "PARENT_1"), _tagged(m, "PARENT_2")) for m in metas]
    assert sorted(shown) == sorted(drawn)
    for cand in h.ctx.candidates.values():
        if cand.operator == "evoprompt-ga/crossover-mutate":
            assert len(cand.parents) == 2 and cand.parents[0] != cand.parents[1]
            # The final instruction, not the crossover step before it.
            assert ", variant x." not in cand.text


# --- DE ------------------------------------------------------------------------------------


def test_a_trial_replaces_its_member_only_when_it_scores_higher() -> None:
    assert replaces(0.5, 0.55)
    assert not replaces(0.5, 0.5)
    assert not replaces(0.5, 0.45)
    assert replaces(0.0, 1e-9)


def test_donors_are_two_distinct_members_other_than_the_member() -> None:
    rng = random.Random(3)
    seen: set[tuple[int, int]] = set()
    for _ in range(200):
        for member in range(4):
            a, b = pick_donors(rng, 4, member)
            assert a != b and member not in (a, b)
            seen.add((a, b))
    assert len(seen) == 12  # every ordered pair occurs


def graded_target(request: ChatRequest) -> str:
    """Right on the reviews whose number ends below the instruction's "level N"."""
    system = request.messages[0]["content"]
    found = re.search(r"level (\d)", system)
    level = int(found.group(1)) if found else 5
    number, truth = _review(request)
    if number % 10 < level:
        return truth
    return "negative" if truth == "positive" else "positive"


def graded_de_optimizer(request: ChatRequest) -> str:
    """Initial proposals at levels 3 to 7; a trial is one level above, at, or below its
    member's level, by the member's variant, so that trials win, tie and lose."""
    user = request.messages[-1]["content"]
    variant = _digest(request)
    if "<MEMBER>" in user:
        member = _tagged(user, "MEMBER")
        found = re.search(r"level (\d)", member)
        level = int(found.group(1)) if found else 5
        delta = int(hashlib.sha256(member.encode()).hexdigest(), 16) % 3 - 1
        new = max(0, min(9, level + delta))
        return f"<START>Answer at level {new}, trial {variant}.<END>"
    level = 3 + int(variant, 16) % 5
    return f"<START>Answer at level {level}, variant {variant}.<END>"


async def test_de_keeps_a_member_unless_its_trial_scores_higher(tmp_path: Path) -> None:
    h = Harness(tmp_path, optimizer=graded_de_optimizer, target=graded_target)
    params = EvoPromptDEParams(popsize=5, generations=3, eval_examples=20)
    reports = await h.steps(EvoPromptDE(params))
    trials = h.events("de_trial")
    assert trials
    outcomes = Tally(
        "higher"
        if t["child_score"] > t["member_score"]
        else "equal"
        if t["child_score"] == t["member_score"]
        else "lower"
        for t in trials
    )
    assert outcomes["higher"] and outcomes["equal"] and outcomes["lower"], outcomes
    for t in trials:
        assert t["replaced"] == (t["child_score"] > t["member_score"])
    previous = set(reports[0].detail["population"])
    for report in reports[1:]:
        generation = int(report.name.split("-")[1])
        mine = [t for t in trials if t["generation"] == generation]
        expected = set(previous)
        for t in mine:
            if t["replaced"]:
                expected = (expected - {t["member"]}) | {t["child"]}
        assert set(report.detail["population"]) == expected
        assert report.detail["replaced"] == {t["member"]: t["child"] for t in mine if t["replaced"]}
        previous = expected
    # The best never gets worse: a member is only ever replaced by a better prompt.
    bests = [r.detail["population_scores"][r.detail["population"][0]] for r in reports]
    assert bests == sorted(bests)


async def test_de_meta_prompt_gets_the_member_two_donors_and_the_best(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    params = EvoPromptDEParams(popsize=4, generations=1, eval_examples=12)
    reports = await h.steps(EvoPromptDE(params))
    population = reports[0].detail["population"]
    texts = {cid: h.ctx.candidates[cid].text for cid in population}
    best = texts[population[0]]
    metas = h.users("<MEMBER>")
    assert len(metas) == len(population) == 4
    members = set()
    for meta in metas:
        member = _tagged(meta, "MEMBER")
        donors = [_tagged(meta, "DONOR_1"), _tagged(meta, "DONOR_2")]
        assert _tagged(meta, "BEST") == best
        assert member in texts.values() and set(donors) <= set(texts.values())
        assert member not in donors and donors[0] != donors[1]
        members.add(member)
    assert members == set(texts.values())
    for cand in h.ctx.candidates.values():
        if cand.operator == "evoprompt-de/mutate-crossover":
            assert cand.feedback is not None
            assert cand.parents[0] == cand.feedback["member"]
            assert ", variant y." not in cand.text


# --- meta-prompts and answers --------------------------------------------------------------


def test_the_meta_prompts_render_their_parents() -> None:
    prompts = load_meta_prompts()
    context = {"task_description": "T", "labels": "L", "output_format": "F", "examples": "E"}
    ga = prompts.get(GA_META_PROMPT)
    assert ga.placeholders == {"parent_1", "parent_2", *context}
    user = ga.render(**context, parent_1="First parent.", parent_2="Second parent.")[-1]["content"]
    assert "<PARENT_1>\nFirst parent.\n</PARENT_1>" in user
    assert "<PARENT_2>\nSecond parent.\n</PARENT_2>" in user
    assert user.index("<CROSSOVER>") < user.index("<START>") and "{{" not in user
    de = prompts.get(DE_META_PROMPT)
    assert de.placeholders == {"donor_1", "donor_2", "best", "member", *context}
    user = de.render(**context, donor_1="D1.", donor_2="D2.", best="B.", member="M.")[-1]["content"]
    for tag, text in (("DONOR_1", "D1."), ("DONOR_2", "D2."), ("BEST", "B."), ("MEMBER", "M.")):
        assert f"<{tag}>\n{text}\n</{tag}>" in user
    order = [user.index(f"<{t}>") for t in ("DIFFERENCES", "MUTATED", "COMBINED", "START")]
    assert order == sorted(order)
    for meta in (ga, de):
        assert meta.system and meta.description


def test_final_answer_takes_the_last_step() -> None:
    two = "<CROSSOVER>Mix of both.</CROSSOVER>\n<START>The final instruction.<END>"
    assert final_answer(two) == two  # one <START>: extraction takes its span
    tagged_twice = "<START>Step one instruction.<END>\n<START>The final instruction.<END>"
    assert final_answer(tagged_twice) == "The final instruction."
    echoed = "<START>The final instruction here.<END> (between <START> and <END>)"
    assert final_answer(echoed).strip() == "The final instruction here."
    untagged = "<CROSSOVER>Mix of both.</CROSSOVER>\nFinal: The final instruction."
    assert final_answer(untagged).strip() == "Final: The final instruction."
    cut = Answer(
        "<DIFFERENCES>a</DIFFERENCES><MUTATED>b</MUTATED>\nThe final instr",
        finish_reason=FINISH_LENGTH,
        meta_prompt=DE_META_PROMPT,
    )
    rest = final_answer(cut)
    assert isinstance(rest, Answer) and rest.truncated and rest.meta_prompt == DE_META_PROMPT
    assert final_answer("Just an instruction.") == "Just an instruction."


async def test_a_cut_or_chatty_evolution_answer_is_handled(tmp_path: Path) -> None:
    def answers(request: ChatRequest) -> str:
        user = request.messages[-1]["content"]
        if "<PARENT_1>" in user:
            return "<CROSSOVER>Classify the review carefully and give the label only.</CROSSOVER>"
        return two_property_optimizer(request)

    h = Harness(tmp_path, optimizer=answers)
    await h.steps(EvoPromptGA(EvoPromptParams(popsize=3, generations=1, eval_examples=8)))
    # An answer with only the intermediate step has no final instruction: rejected, not taken.
    assert not [c for c in h.ctx.candidates.values() if "crossover" in c.operator]
    assert len(h.events("rejected")) == 3


# --- budgets, plans, determinism, resume ---------------------------------------------------


def test_size_evolution_fits_the_budgets() -> None:
    p = EvoPromptParams()
    assert size_evolution(p, TRAIN, None, None) == Sizing(40, 6, 4)
    assert size_evolution(p, 0, None, None).generations == 0
    # The benchmark's budget: 500 target calls, 40 optimizer calls.
    assert size_evolution(p, 50, 500, 40) == Sizing(16, 6, 4)
    # 300 target calls: the subset shrinks to 16, then the generations to 2.
    assert size_evolution(p, TRAIN, 300, None) == Sizing(16, 6, 2)
    # Few optimizer calls: fewer generations, then a smaller population.
    assert size_evolution(p, TRAIN, None, 17) == Sizing(40, 6, 2)
    assert size_evolution(p, TRAIN, None, 9) == Sizing(40, 5, 1)
    assert size_evolution(p, TRAIN, None, 2).generations == 0
    assert size_evolution(p, TRAIN, None, 3, min_popsize=3).generations == 0
    assert size_evolution(p, TRAIN, 100, None, min_popsize=3) == Sizing(16, 3, 1)
    fixed = EvoPromptParams(eval_examples=20)
    assert size_evolution(fixed, TRAIN, 500, None) == Sizing(20, 6, 3)
    for target in range(0, 1500, 41):
        for optimizer in (None, 4, 11, 40):
            for pop in (2, 3):
                s = size_evolution(p, TRAIN, target, optimizer, min_popsize=pop)
                if s.generations:
                    assert s.target_calls <= target and s.popsize >= pop
                    assert optimizer is None or s.optimizer_calls <= optimizer
                else:
                    assert s.target_calls == s.optimizer_calls == 0


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_plan_is_the_uncapped_worst_case_and_presets_resolve(strategy: str) -> None:
    built, _ = make_strategy(strategy, {})
    plan = built.plan({"train": 40, "dev": 20, "test": 20})
    assert (plan.target_calls, plan.optimizer_calls) == (40 * 6 * 5, 5 + 6 * 4)
    assert plan.layout["popsize"] == 6 and plan.notes
    light, light_params = make_strategy(strategy, {"preset": "light"})
    assert light_params.model_dump()["popsize"] == 4
    assert light.plan({"train": 40}).optimizer_calls == 3 + 4 * 3
    assert built.plan({}).target_calls == 0
    info = strategy_info(strategy)
    assert set(info.presets) >= {"light"}


@pytest.mark.parametrize("strategy", STRATEGIES)
async def test_plan_bounds_an_uncapped_run(tmp_path: Path, strategy: str) -> None:
    target, optimizer = counters()
    folder = RunFolder.create(tmp_path / "runs", "q")
    params: dict[str, Any] = {"popsize": 4, "generations": 2, "eval_examples": 10}
    await run_once(
        tmp_path, folder, settings_for(strategy, **params), target=target, optimizer=optimizer
    )
    plan = make_strategy(strategy, params)[0].plan({"train": TRAIN})
    assert target.calls - RESERVE <= plan.target_calls == 10 * 4 * 3
    assert optimizer.calls <= plan.optimizer_calls == 3 + 4 * 2


@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize(
    ("search_calls", "optimizer_cap", "params"),
    [
        (100, None, {}),
        (300, 12, {}),
        (500, 40, {}),
        (400, 5, {"popsize": 4}),
        (90, None, {"eval_examples": 10, "popsize": 3}),
        (250, 30, {"preset": "light"}),
    ],
)
async def test_budgets_are_never_exceeded_and_every_child_is_scored(
    tmp_path: Path,
    strategy: str,
    search_calls: int,
    optimizer_cap: int | None,
    params: dict[str, Any],
) -> None:
    target, optimizer = counters()
    folder = RunFolder.create(tmp_path / "runs", "q")
    caps = BudgetCaps(target_calls=RESERVE + search_calls, optimizer_calls=optimizer_cap)
    summary = await run_once(
        tmp_path, folder, settings_for(strategy, caps, **params), target=target, optimizer=optimizer
    )
    assert target.calls <= RESERVE + search_calls
    if optimizer_cap is not None:
        assert optimizer.calls <= optimizer_cap
    assert summary["scores"]["best"]["test"] is not None
    (plan,) = events(folder, "evoprompt_plan")
    size = plan["eval_examples"]
    assert target.calls - RESERVE <= plan["target_calls"] <= search_calls
    assert optimizer.calls <= plan["optimizer_calls"]
    # Every prompt made was scored on the whole subset: no optimizer call was wasted.
    for record in records(folder).values():
        assert record["scores"]["train"]["n"] == size
    assert [e for e in events(folder, "step")], "at least one step fits"
    assert not events(folder, "budget_exhausted")


@pytest.mark.parametrize("strategy", STRATEGIES)
async def test_the_dry_run_plan_bounds_a_capped_run(tmp_path: Path, strategy: str) -> None:
    task = with_loadable_models(write_task(tmp_path, strategy=strategy))
    runner = CliRunner()
    result = runner.invoke(
        app,
        [
            "run",
            str(task),
            "--dry-run",
            "--budget",
            str(RESERVE + 300),
            "--optimizer-budget",
            "20",
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    plan = json.loads(result.stdout)
    target, optimizer = counters()
    folder = RunFolder.create(tmp_path / "runs", "q")
    caps = BudgetCaps(target_calls=RESERVE + 300, optimizer_calls=20)
    await run_once(
        tmp_path, folder, settings_for(strategy, caps), target=target, optimizer=optimizer
    )
    assert optimizer.calls <= plan["optimizer_calls"] <= 20
    assert target.calls <= plan["target_calls"]
    (planned,) = events(folder, "evoprompt_plan")
    layout = json.dumps(plan)
    assert str(planned["generations"]) in layout and "popsize" in layout


@pytest.mark.parametrize("strategy", STRATEGIES)
async def test_a_budget_too_small_for_a_generation_keeps_the_initial_prompt(
    tmp_path: Path, strategy: str
) -> None:
    folder = RunFolder.create(tmp_path / "runs", "q")
    target, optimizer = counters()
    caps = BudgetCaps(target_calls=RESERVE + 20)
    summary = await run_once(
        tmp_path, folder, settings_for(strategy, caps), target=target, optimizer=optimizer
    )
    assert optimizer.calls == 0 and target.calls == 20 + 20
    assert summary["best_id"] == "c0000"
    (stopped,) = events(folder, "search_stopped")
    assert "single generation" in stopped["reason"]


@pytest.mark.parametrize("strategy", STRATEGIES)
async def test_same_seed_gives_the_same_run_folder(tmp_path: Path, strategy: str) -> None:
    a = RunFolder.create(tmp_path / "a", "q")
    b = RunFolder.create(tmp_path / "b", "q")
    await run_once(tmp_path, a, settings_for(strategy, eval_examples=12, generations=2))
    await run_once(tmp_path, b, settings_for(strategy, eval_examples=12, generations=2))
    assert stable(a) == stable(b)
    other = RunFolder.create(tmp_path / "c", "q")
    seeded = settings_for(strategy, eval_examples=12, generations=2)
    await run_once(tmp_path, other, dataclasses.replace(seeded, seed=1))
    assert stable(other)["events"] != stable(a)["events"]


@pytest.mark.parametrize(("strategy", "kill_at"), [("evoprompt-ga", 9), ("evoprompt-de", 9)])
async def test_killed_run_resumes_without_repeating_requests(
    tmp_path: Path, strategy: str, kill_at: int
) -> None:
    settings = settings_for(strategy, eval_examples=12, generations=3)
    baseline = RunFolder.create(tmp_path / "base", "q")
    every = Counter(two_property_optimizer)
    await run_once(tmp_path, baseline, settings, optimizer=every)

    def kill(n: int) -> None:
        if n == kill_at:
            raise Killed

    folder = RunFolder.create(tmp_path / "runs", "q")
    first = Counter(two_property_optimizer, on_call=kill)
    with pytest.raises(Killed):
        await run_once(tmp_path, folder, settings, optimizer=first)
    steps = events(folder, "step")
    assert [s["name"] for s in steps] == ["initial-population"], "the kill is in generation 1"
    second = Counter(two_property_optimizer)
    await run_once(tmp_path, folder, settings, optimizer=second, resume=True)
    # Only the killed request is asked again; every other answer comes from the journal.
    assert second.calls == every.calls - (first.calls - 1)
    assert stable(folder) == stable(baseline)


# --- parameters, the registry and the command line -----------------------------------------


def test_params_validate_and_defaults() -> None:
    assert strategy_info("evoprompt-ga").params is EvoPromptParams
    assert strategy_info("evoprompt-de").params is EvoPromptDEParams
    defaults = EvoPromptParams()
    assert defaults.temperature == 0.5 and defaults.popsize == 6
    with pytest.raises(UsageError, match=r"search\.params\.popsize"):
        make_strategy("evoprompt-de", {"popsize": 2})
    make_strategy("evoprompt-ga", {"popsize": 2})
    with pytest.raises(UsageError, match=r"search\.params\.beam"):
        make_strategy("evoprompt-ga", {"beam": 3})
    with pytest.raises(UsageError, match="has no preset"):
        make_strategy("evoprompt-ga", {"preset": "huge"})


@pytest.mark.parametrize("strategy", STRATEGIES)
async def test_a_task_without_training_data_is_refused(tmp_path: Path, strategy: str) -> None:
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
    built, _ = make_strategy(strategy, {})
    with pytest.raises(UsageError, match=f"{strategy} needs training examples"):
        async for _ in built.search(empty.context, initial):
            pass


def test_strategies_lists_both_variants(tmp_path: Path) -> None:
    listing = json.loads(CliRunner().invoke(app, ["strategies", "--json"]).stdout)
    names = {s["name"] for s in listing}
    assert set(STRATEGIES) <= names
    ga = next(s for s in listing if s["name"] == "evoprompt-ga")
    assert {p["name"] for p in ga["params"]} >= {"popsize", "generations", "temperature"}
    assert "light" in ga["presets"]
    spec = yaml.safe_load(write_task(tmp_path, strategy="evoprompt-de").read_text())
    assert spec["search"]["strategy"] == "evoprompt-de"
