"""Promptbreeder: units of (task prompt, mutation prompt), binary tournaments, the operator
families and their meta-prompts, the editable lists, budgets, determinism, resume, and end to
end on the toy sentiment task."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import random
import re
from pathlib import Path
from typing import Any

import pytest
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
from promptopt.search.meta_prompts import MetaPromptSet, load_meta_prompts
from promptopt.search.plan import RunSettings, StopRules, final_reserve
from promptopt.search.state import SearchState
from promptopt.search.strategies.promptbreeder import (
    CROSSOVER,
    FAMILIES,
    MUTATION_PROMPTS,
    THINKING_STYLES,
    Promptbreeder,
    PromptbreederParams,
    Sizing,
    load_list,
    size_search,
)
from promptopt.search.strategies.registry import make_strategy, strategy_info
from promptopt.task.loader import LoadedTask, load_task
from tests.support.engine import run_engine
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
GOOD_WORD = "precise"
INSTRUCTION = re.compile(r"<INSTRUCTION>\n(.*?)\n</INSTRUCTION>", re.DOTALL)
ADVICE = re.compile(r"<ADVICE>\n(.*?)\n</ADVICE>", re.DOTALL)
STYLE = re.compile(r"<THINKING_STYLE>\n(.*?)\n</THINKING_STYLE>", re.DOTALL)
SOLVED = re.compile(r"<SOLVED>\nInput: (.*?)\nCorrect answer: (.*?)\n</SOLVED>", re.DOTALL)
NUMBERED = re.compile(r"^Instruction \d+:\n(.*)$", re.MULTILINE)


class Killed(BaseException):
    """Stands in for the process being killed mid-run."""


# --- scripted models: the reward grows with each first-order mutation ----------------------


def good_words(text: str) -> int:
    return text.lower().count(GOOD_WORD)


def graded_target(request: ChatRequest) -> str:
    """Right on the reviews whose number ends below 2 + 2 x (how often the instruction says
    "precise"), wrong on the others: each "precise" is worth 0.2 on the training reviews."""
    system = request.messages[0]["content"]
    review = request.messages[-1]["content"]
    level = 2 + 2 * good_words(system)
    number = re.search(r"review (\d+)", review)
    assert number is not None
    truth = "positive" if any(w in review for w in WORDS_GOOD) else "negative"
    if int(number.group(1)) % 10 < level:
        return truth
    return "negative" if truth == "positive" else "positive"


def kind_of(user: str) -> str:
    """Which Promptbreeder meta-prompt a request renders."""
    if "<THINKING_STYLE>" in user:
        return "initialize"
    if "<ADVICE>" in user:
        return "first-order" if "<INSTRUCTION>" in user else "hyper-mutation"
    if "already in use" in user:
        return "estimation"
    if "Continue the series" in user:
        return "lineage"
    if "<SOLVED>" in user:
        return "lamarckian"
    assert "described from scratch" in user
    return "zero-order"


def scripted_optimizer(request: ChatRequest) -> str:
    """A new text for every request: first-order mutation (also the second half of a
    hyper-mutation) adds one "precise" to the instruction it is given; every other operator
    writes an instruction without one; hyper-mutation writes a new piece of advice."""
    user = request.messages[-1]["content"]
    blob = json.dumps([dict(m) for m in request.messages]) + str(request.sample_index)
    tag = hashlib.sha256(blob.encode()).hexdigest()[:6]
    kind = kind_of(user)
    if kind == "first-order":
        found = INSTRUCTION.search(user)
        assert found is not None
        return f"<START>{found.group(1)} Be {GOOD_WORD} ({tag}).<END>"
    if kind == "hyper-mutation":
        return f"<START>Revise the instruction boldly, take {tag}.<END>"
    return f"<START>Judge the film review's sentiment, {kind} take {tag}.<END>"


class Recorder:
    """An optimizer script that keeps every request it got."""

    def __init__(self, fn: Any = scripted_optimizer) -> None:
        self.fn = fn
        self.requests: list[ChatRequest] = []

    def __call__(self, request: ChatRequest) -> str:
        self.requests.append(request)
        return str(self.fn(request))

    def users(self, kind: str | None = None) -> list[str]:
        users = [r.messages[-1]["content"] for r in self.requests]
        return [u for u in users if kind is None or kind_of(u) == kind]


class Harness:
    """The toy task with scripted models and a search state, outside the engine."""

    def __init__(
        self,
        tmp: Path,
        *,
        caps: BudgetCaps | None = None,
        meta_prompts: MetaPromptSet | None = None,
    ) -> None:
        self.task: LoadedTask = load_task(write_task(tmp))
        self.target = Counter(graded_target)
        self.recorder = Recorder()
        self.optimizer = Counter(self.recorder)
        self.runtime = Runtime(
            self.task,
            RuntimeOptions(concurrency=4, caps=caps or BudgetCaps()),
            store=NullCache(),
            providers=providers(self.target, self.optimizer),
        )
        runtime = self.runtime
        self.meta_prompts = meta_prompts or load_meta_prompts()
        self.state = SearchState(
            train=self.task.splits["train"],
            dev=self.task.split("dev"),
            test=self.task.split("test"),
            scorer=runtime.scorer,
            optimizer=lambda: runtime.client("optimizer"),
            ledger=runtime.ledger,
            meta_prompts=self.meta_prompts,
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

    def text(self, cid: str) -> str:
        return self.ctx.candidates[cid].text

    async def steps(self, **params: Any) -> list[StepReport]:
        reports = []
        async with self.runtime:
            strategy = Promptbreeder(PromptbreederParams(**params))
            async for report in strategy.search(self.ctx, self.initial):
                reports.append(report)
        return reports


def only(family: str, **params: Any) -> dict[str, Any]:
    """Parameters for a search that mutates with one family and no crossover."""
    return {
        "operators": (family,),
        "crossover_rate": 0.0,
        "population_size": 4,
        "generations": 2,
        "eval_examples": 10,
        **params,
    }


# --- the engine around Promptbreeder -------------------------------------------------------


def settings_for(caps: BudgetCaps | None = None, **params: Any) -> RunSettings:
    _, validated = make_strategy("promptbreeder", params)
    return RunSettings(
        strategy="promptbreeder",
        params=validated.model_dump(mode="json"),
        seed=0,
        caps=caps or BudgetCaps(),
        stop=StopRules(),
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
    scripted = providers(target or Counter(graded_target), optimizer or Counter(scripted_optimizer))
    return await run_engine(
        write_task(tmp, strategy="promptbreeder"), folder, settings, scripted, resume=resume
    )


def events_of(folder: RunFolder, kind: str) -> list[dict[str, Any]]:
    return [e for e in folder.read_jsonl(EVENTS) if e["event"] == kind]


# --- end to end ----------------------------------------------------------------------------


async def test_repeated_mutation_of_winners_finds_the_precise_instruction(
    tmp_path: Path,
) -> None:
    folder = RunFolder.create(tmp_path / "runs", "toy")
    summary = await run_once(tmp_path, folder, settings_for(generations=12))
    best = summary["best_prompt"]
    # Every "precise" was added by one first-order mutation of the winner of a tournament.
    assert good_words(best) >= 3
    assert summary["scores"]["best"]["test"] >= 0.8 > summary["scores"]["initial"]["test"]
    assert summary["test_comparison"]["verdict"] == "improved"
    chain = lineage(folder.candidates(), summary["best_id"])
    mutations = [r.operator for r in chain if good_words(r.text) > 0]
    assert len(mutations) >= 3
    assert set(mutations) <= {"promptbreeder/first-order", "promptbreeder/hyper-mutation"}
    assert [r.operator for r in chain][:1] in (["initial"], ["promptbreeder/init"])
    steps = events_of(folder, "step")
    assert [s["name"] for s in steps] == ["init"] + [f"generation-{g}" for g in range(1, 13)]
    # Every step ranks every scored prompt (events.jsonl shows the first 10).
    records = {r["id"]: r for r in folder.read_jsonl(CANDIDATES)}
    means = {cid: r["scores"]["train"]["mean"] for cid, r in records.items()}
    assert steps[-1]["ranking"] == sorted(means, key=lambda c: (-means[c], c))[:10]


# --- tournaments, operators and units ------------------------------------------------------


async def test_a_tournament_replaces_the_loser_with_a_mutated_copy_of_the_winner(
    tmp_path: Path,
) -> None:
    h = Harness(tmp_path)
    reports = await h.steps(**only("first-order", generations=1))
    (init, gen) = reports
    population = init.detail["population"]
    units = {u["unit"]: u for u in h.events("unit")}
    tournaments = h.events("tournament")
    assert len(tournaments) == 2 == gen.detail["tournaments"]
    for t in tournaments:
        winner = h.ctx.candidates[t["winner"]]
        loser = h.ctx.candidates[t["loser"]]
        # The better task prompt wins; on a tie, the older one.
        assert (-(winner.mean("train") or 0.0), winner.id) < (
            -(loser.mean("train") or 0.0),
            loser.id,
        )
        child = h.ctx.candidates[t["child"]]
        assert child.parents == (winner.id,)
        assert child.operator == "promptbreeder/first-order"
        assert child.text.startswith(winner.text + " Be precise")
        # The copy keeps the winner's mutation prompt and takes the loser's place.
        (born,) = [u for u in units.values() if u["candidate"] == child.id]
        (parent,) = [
            u for u in units.values() if u["candidate"] == winner.id and u["operator"] != CROSSOVER
        ]
        assert born["mutation_prompt"] == parent["mutation_prompt"]
        slot = population.index(loser.id)
        assert gen.detail["population"][slot] == child.id
        assert winner.id in gen.detail["population"]
    # The report ranks every prompt scored so far, best first.
    scored = {c.id: c.mean("train") or 0.0 for c in h.ctx.candidates.values() if c.n("train")}
    assert list(gen.ranking) == sorted(scored, key=lambda c: (-scored[c], c))
    assert gen.best_score == scored[gen.ranking[0]]
    # The 4 units met in 2 disjoint pairs.
    met = [c for t in tournaments for c in (t["winner"], t["loser"])]
    assert sorted(met) == sorted(population)


async def test_the_initial_population_draws_styles_and_mutation_prompts_from_the_lists(
    tmp_path: Path,
) -> None:
    h = Harness(tmp_path)
    await h.steps(**only("first-order", population_size=5, generations=1))
    styles = load_list(h.meta_prompts, THINKING_STYLES)
    mutations = load_list(h.meta_prompts, MUTATION_PROMPTS)
    inits = h.recorder.users("initialize")
    assert len(inits) == 4  # the initial prompt is the fifth unit
    for user in inits:
        style, advice = STYLE.search(user), ADVICE.search(user)
        assert style and advice
        assert style.group(1) in styles and advice.group(1) in mutations
        assert "Say whether a film review is positive or negative." in user
    units = [u for u in h.events("unit") if u["operator"] in ("initial", "promptbreeder/init")]
    assert len(units) == 5 and units[0]["candidate"] == h.initial.id
    assert all(u["mutation_prompt"] in mutations for u in units)
    made = [c for c in h.ctx.candidates.values() if c.operator == "promptbreeder/init"]
    assert {c.feedback["thinking_style"] for c in made if c.feedback} <= set(styles)


async def test_first_order_applies_the_winners_mutation_prompt_to_its_task_prompt(
    tmp_path: Path,
) -> None:
    h = Harness(tmp_path)
    await h.steps(**only("first-order", generations=1))
    units = h.events("unit")
    for user, t in zip(h.recorder.users("first-order"), h.events("tournament"), strict=True):
        instruction, advice = INSTRUCTION.search(user), ADVICE.search(user)
        assert instruction and advice
        assert instruction.group(1) == h.text(t["winner"])
        assert advice.group(1) in {u["mutation_prompt"] for u in units}
        assert "Correct answer:" in user  # training examples are shown


async def test_zero_order_writes_from_the_task_description_alone(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    await h.steps(**only("zero-order"))
    users = h.recorder.users("zero-order")
    assert len(users) == 4
    population = {c.text for c in h.ctx.candidates.values()}
    for user in users:
        assert "Say whether a film review is positive or negative." in user
        assert not any(text in user for text in population)
    # A fresh draw of examples makes each request differ, so none is a cached repeat.
    assert len(set(users)) == len(users)
    made = [c for c in h.ctx.candidates.values() if c.operator == "promptbreeder/zero-order"]
    assert len(made) == 4 and all(len(c.parents) == 1 for c in made)


async def test_estimation_of_distribution_lists_the_population(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    reports = await h.steps(**only("estimation", generations=1))
    population = reports[0].detail["population"]
    for user in h.recorder.users("estimation"):
        listed = NUMBERED.findall(user)
        assert sorted(listed) == sorted(h.text(c) for c in population)
    for cand in h.ctx.candidates.values():
        if cand.operator == "promptbreeder/estimation":
            assert sorted(cand.parents) == sorted(population)


async def test_lineage_shows_the_elites_in_ascending_order_of_fitness(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    # First-order mutations make better elites; lineage continues their series.
    await h.steps(**only("lineage", operators=("first-order", "lineage"), generations=5))
    users = h.recorder.users("lineage")
    assert users, "a lineage mutation was drawn"
    for user in users:
        shown = NUMBERED.findall(user)
        cands = [next(c for c in h.ctx.candidates.values() if c.text == t) for t in shown]
        means = [c.mean("train") or 0.0 for c in cands]
        assert means == sorted(means) and 1 <= len(shown) <= 5
    made = [c for c in h.ctx.candidates.values() if c.operator == "promptbreeder/lineage"]
    assert made
    for cand in made:
        assert cand.feedback and cand.feedback["elites"]
        # Lineage records the winner, then every elite shown, best first.
        assert set(cand.feedback["elites"]) <= set(cand.parents)


async def test_hyper_mutation_changes_the_units_mutation_prompt_then_applies_it(
    tmp_path: Path,
) -> None:
    h = Harness(tmp_path)
    await h.steps(**only("hyper-mutation", generations=1))
    hypers = h.recorder.users("hyper-mutation")
    firsts = h.recorder.users("first-order")
    assert len(hypers) == len(firsts) == 2
    winners = {u["candidate"]: u["mutation_prompt"] for u in h.events("unit")}
    new_units = [u for u in h.events("unit") if u["operator"] == "promptbreeder/hyper-mutation"]
    assert len(new_units) == 2
    for unit in new_units:
        old = winners[unit["parents"][0]]
        assert unit["mutation_prompt"] != old
        assert unit["mutation_prompt"].startswith("Revise the instruction boldly")
        # The improved advice is what the first-order request applied.
        (user,) = [u for u in firsts if f"<ADVICE>\n{unit['mutation_prompt']}\n" in u]
        assert INSTRUCTION.search(user).group(1) == h.text(unit["parents"][0])  # type: ignore[union-attr]
        (asked,) = [u for u in hypers if f"<ADVICE>\n{old}\n" in u]
        assert "<INSTRUCTION>" not in asked


async def test_lamarckian_induces_from_an_example_the_winner_got_right(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    await h.steps(**only("lamarckian", generations=1))
    users = h.recorder.users("lamarckian")
    assert len(users) == 2
    train = {h.task.render_input(e): e for e in h.task.splits["train"]}
    for user, t in zip(users, h.events("tournament"), strict=True):
        found = SOLVED.search(user)
        assert found
        example = train[found.group(1)]
        assert found.group(2) == example.target
        assert h.ctx.candidates[t["winner"]].scores["train"][example.id] == 1.0
    made = [c for c in h.ctx.candidates.values() if c.operator == "promptbreeder/lamarckian"]
    assert made and all(c.feedback and "worked_example" in c.feedback for c in made)


async def test_crossover_takes_a_task_prompt_by_fitness_and_records_both_parents(
    tmp_path: Path,
) -> None:
    h = Harness(tmp_path)
    await h.steps(**only("first-order", generations=2, crossover_rate=1.0))
    crossed = [u for u in h.events("unit") if u["operator"] == CROSSOVER]
    assert len(crossed) == 4
    population = {u["candidate"] for u in h.events("unit")}
    for unit in crossed:
        # The copy of the winner takes the donor's task prompt, which is already scored.
        _, donor = unit["parents"]
        assert unit["candidate"] == donor and donor in population
        assert h.ctx.candidates[donor].n("train") == 10
    # The mutated task prompt would be replaced, so it is never asked for.
    assert h.recorder.users("first-order") == []
    tournaments = h.events("tournament")
    assert all(t["operator"] == CROSSOVER for t in tournaments)
    for t, unit in zip(tournaments, crossed, strict=True):
        assert unit["parents"][0] == t["winner"]


async def test_crossover_after_a_hyper_mutation_keeps_the_improved_mutation_prompt(
    tmp_path: Path,
) -> None:
    h = Harness(tmp_path)
    await h.steps(**only("hyper-mutation", generations=1, crossover_rate=1.0))
    assert len(h.recorder.users("hyper-mutation")) == 2
    assert h.recorder.users("first-order") == []
    crossed = [u for u in h.events("unit") if u["operator"] == CROSSOVER]
    assert len(crossed) == 2
    assert all(u["mutation_prompt"].startswith("Revise the instruction boldly") for u in crossed)


# --- the lists -----------------------------------------------------------------------------


def test_the_lists_load_from_markdown() -> None:
    prompts = load_meta_prompts()
    styles = load_list(prompts, THINKING_STYLES)
    mutations = load_list(prompts, MUTATION_PROMPTS)
    assert len(styles) >= 10 and len(mutations) >= 10
    assert all(not s.startswith("-") and s == s.strip() for s in (*styles, *mutations))
    assert len(set(styles)) == len(styles)


async def test_a_user_override_replaces_the_lists(tmp_path: Path) -> None:
    custom = tmp_path / "mine" / "promptbreeder"
    custom.mkdir(parents=True)
    (custom / "thinking-styles.md").write_text(
        "---\ndescription: mine\n---\nMy styles:\n\n- Think like a film critic.\n"
        "* Think like a bored teenager.\n"
    )
    (custom / "mutation-prompts.md").write_text("1. Say it twice.\n2) Say it once.\n")
    prompts = load_meta_prompts(tmp_path / "mine")
    assert load_list(prompts, THINKING_STYLES) == (
        "Think like a film critic.",
        "Think like a bored teenager.",
    )
    assert load_list(prompts, MUTATION_PROMPTS) == ("Say it twice.", "Say it once.")
    (tmp_path / "run").mkdir()
    h = Harness(tmp_path / "run", meta_prompts=prompts)
    await h.steps(**only("first-order", generations=1))
    for user in h.recorder.users("initialize"):
        assert STYLE.search(user).group(1) in {  # type: ignore[union-attr]
            "Think like a film critic.",
            "Think like a bored teenager.",
        }
    assert {u["mutation_prompt"] for u in h.events("unit")} <= {"Say it twice.", "Say it once."}


def test_a_list_without_items_is_a_usage_error(tmp_path: Path) -> None:
    custom = tmp_path / "promptbreeder"
    custom.mkdir()
    (custom / "thinking-styles.md").write_text("Just prose, no items.\n")
    prompts = load_meta_prompts(tmp_path)
    with pytest.raises(UsageError, match=r"thinking-styles.*no items"):
        load_list(prompts, THINKING_STYLES)


def test_the_meta_prompts_load_with_their_placeholders() -> None:
    prompts = load_meta_prompts()
    context = {"task_description", "labels", "output_format", "examples"}
    expected = {
        "promptbreeder/initialize": {"thinking_style", "mutation_prompt"},
        "promptbreeder/zero-order": set(),
        "promptbreeder/first-order": {"mutation_prompt", "instruction"},
        "promptbreeder/estimation": {"instructions"},
        "promptbreeder/lineage": {"elites"},
        "promptbreeder/hyper-mutation": {"mutation_prompt"},
        "promptbreeder/lamarckian": {"worked_example"},
    }
    assert set(FAMILIES.values()) < set(expected)
    for name, own in expected.items():
        meta = prompts.get(name)
        assert meta.placeholders == own | context, name
        assert meta.system and meta.description
        assert "<START>" in meta.user and "<END>" in meta.user


# --- budgets, plans, determinism and resume ------------------------------------------------


def test_size_search_fits_the_budgets() -> None:
    p = PromptbreederParams()
    assert size_search(p, TRAIN, None, None) == Sizing(40, 6, 4, 3, 12)
    assert size_search(p, 0, None, None) == Sizing(0, 0, 0, 0, 0)
    # 300 target calls: 18 prompts to score, 16 examples each; 12 copies still fit.
    assert size_search(p, TRAIN, 300, None) == Sizing(16, 6, 4, 3, 12)
    # 150: the subset stays at its floor and the tournaments give way.
    assert size_search(p, TRAIN, 150, None) == Sizing(16, 6, 1, 3, 3)
    # Too few optimizer calls for 6 units and a tournament: a smaller population.
    assert size_search(p, TRAIN, None, 4) == Sizing(40, 4, 1, 2, 1)
    assert size_search(p, TRAIN, None, 1) == Sizing(0, 0, 0, 0, 0)
    assert size_search(p, TRAIN, 40, None) == Sizing(0, 0, 0, 0, 0)
    # Whatever the budgets, every unit and every copy asked for can be scored, and the
    # population and one call per copy fit the optimizer's cap.
    for target in range(0, 1200, 37):
        for optimizer in (None, 1, 2, 7, 30):
            s = size_search(p, TRAIN, target, optimizer)
            assert s.eval_examples * (s.population + s.tournaments) <= target
            if optimizer is not None and s.population:
                assert s.population - 1 + s.tournaments <= optimizer
            if s.population:
                assert s.tournaments_per_generation * 2 <= s.population


def test_plan_is_the_uncapped_worst_case() -> None:
    strategy, params = make_strategy("promptbreeder", {})
    assert params == PromptbreederParams()
    plan = strategy.plan({"train": 40, "dev": 20, "test": 20})
    assert (plan.target_calls, plan.optimizer_calls) == (40 * (6 + 12), 5 + 2 * 12)
    assert plan.layout["population"] == 6 and plan.notes
    cheap, _ = make_strategy("promptbreeder", {"operators": ["first-order", "zero-order"]})
    assert cheap.plan({"train": 40}).optimizer_calls == 5 + 12
    empty = strategy.plan({})
    assert (empty.target_calls, empty.optimizer_calls) == (0, 0)
    # Under caps, the plan is sized to them and still bounds both.
    capped = strategy.plan_for_budget({"train": 40}, 300, 20)  # type: ignore[attr-defined]
    assert capped.target_calls <= 300 and capped.optimizer_calls <= 20
    assert capped.layout == Sizing(16, 6, 4, 3, 12).to_json()


async def test_plan_bounds_an_uncapped_run(tmp_path: Path) -> None:
    target, optimizer = Counter(graded_target), Counter(scripted_optimizer)
    folder = RunFolder.create(tmp_path / "runs", "q")
    params: dict[str, Any] = {"generations": 2, "eval_examples": 10}
    await run_once(tmp_path, folder, settings_for(**params), target=target, optimizer=optimizer)
    plan = make_strategy("promptbreeder", params)[0].plan({"train": TRAIN})
    assert target.calls - RESERVE <= plan.target_calls
    assert 5 + 6 <= optimizer.calls <= plan.optimizer_calls


@pytest.mark.parametrize(
    ("search_calls", "optimizer_cap", "params"),
    [
        (100, None, {}),
        (300, 10, {}),
        (300, 7, {"operators": ["hyper-mutation"]}),
        (1000, 3, {}),
        (95, None, {"eval_examples": 10}),
        (250, 12, {"preset": "light", "crossover_rate": 0.5}),
    ],
)
async def test_budgets_are_never_exceeded_and_every_copy_is_scored(
    tmp_path: Path, search_calls: int, optimizer_cap: int | None, params: dict[str, Any]
) -> None:
    target, optimizer = Counter(graded_target), Counter(scripted_optimizer)
    folder = RunFolder.create(tmp_path / "runs", "q")
    caps = BudgetCaps(target_calls=RESERVE + search_calls, optimizer_calls=optimizer_cap)
    settings = settings_for(caps, **params)
    summary = await run_once(tmp_path, folder, settings, target=target, optimizer=optimizer)
    assert target.calls <= RESERVE + search_calls
    if optimizer_cap is not None:
        assert optimizer.calls <= optimizer_cap
    assert summary["scores"]["best"]["test"] is not None
    (plan,) = events_of(folder, "promptbreeder_plan")
    size = plan["eval_examples"]
    for record in folder.read_jsonl(CANDIDATES):
        assert record["scores"]["train"]["n"] == size
    assert events_of(folder, "step"), "at least the initial population fits"
    assert not events_of(folder, "budget_exhausted")
    dry = make_strategy("promptbreeder", params)[0]
    assert isinstance(dry, Promptbreeder)
    bound = dry.plan_for_budget({"train": TRAIN}, search_calls, optimizer_cap)
    assert target.calls - RESERVE <= bound.target_calls <= search_calls
    assert optimizer.calls <= bound.optimizer_calls


async def test_a_budget_too_small_for_two_units_keeps_the_initial_prompt(
    tmp_path: Path,
) -> None:
    folder = RunFolder.create(tmp_path / "runs", "q")
    target, optimizer = Counter(graded_target), Counter(scripted_optimizer)
    caps = BudgetCaps(target_calls=RESERVE + 40)
    summary = await run_once(
        tmp_path, folder, settings_for(caps), target=target, optimizer=optimizer
    )
    assert optimizer.calls == 0 and target.calls == 20 + 20
    assert summary["best_id"] == "c0000"
    (stopped,) = events_of(folder, "search_stopped")
    assert "two units" in stopped["reason"]


async def test_same_seed_gives_the_same_run_folder(tmp_path: Path) -> None:
    a = RunFolder.create(tmp_path / "a", "q")
    b = RunFolder.create(tmp_path / "b", "q")
    await run_once(tmp_path, a, settings_for(eval_examples=20, crossover_rate=0.3))
    await run_once(tmp_path, b, settings_for(eval_examples=20, crossover_rate=0.3))
    assert stable(a) == stable(b)
    other = RunFolder.create(tmp_path / "c", "q")
    seeded = settings_for(eval_examples=20, crossover_rate=0.3)
    await run_once(tmp_path, other, dataclasses.replace(seeded, seed=1))
    assert stable(other)["events"] != stable(a)["events"]


async def test_killed_run_resumes_without_repeating_requests(tmp_path: Path) -> None:
    baseline = RunFolder.create(tmp_path / "base", "q")
    every = Counter(scripted_optimizer)
    await run_once(tmp_path, baseline, settings_for(generations=3), optimizer=every)

    # The initial population takes 5 calls; the 8th falls inside generation 1 or 2.
    def kill_at(n: int) -> None:
        if n == 8:
            raise Killed

    folder = RunFolder.create(tmp_path / "runs", "q")
    first = Counter(scripted_optimizer, on_call=kill_at)
    with pytest.raises(Killed):
        await run_once(tmp_path, folder, settings_for(generations=3), optimizer=first)
    steps = events_of(folder, "step")
    assert steps and steps[0]["name"] == "init"
    assert len(steps) < 4
    second = Counter(scripted_optimizer)
    await run_once(tmp_path, folder, settings_for(generations=3), optimizer=second, resume=True)
    # Only the killed request is asked again; every other answer comes from the journal.
    assert second.calls == every.calls - (first.calls - 1)
    assert stable(folder) == stable(baseline)


# --- parameters, the registry and the command line -----------------------------------------


def test_params_validate() -> None:
    assert strategy_info("promptbreeder").params is PromptbreederParams
    assert "light" in strategy_info("promptbreeder").presets
    defaults = PromptbreederParams()
    assert defaults.crossover_rate == 0.1 and set(defaults.operators) == set(FAMILIES)
    with pytest.raises(UsageError, match=r"search\.params\.operators"):
        make_strategy("promptbreeder", {"operators": ["first-order", "telepathy"]})
    with pytest.raises(UsageError, match=r"search\.params\.population_size"):
        make_strategy("promptbreeder", {"population_size": 1})
    with pytest.raises(UsageError, match=r"search\.params\.crossover_rate"):
        make_strategy("promptbreeder", {"crossover_rate": 1.5})
    _, light = make_strategy("promptbreeder", {"preset": "light", "generations": 5})
    assert isinstance(light, PromptbreederParams)
    assert (light.population_size, light.generations) == (4, 5)


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
    with pytest.raises(UsageError, match="promptbreeder needs training examples"):
        async for _ in Promptbreeder(PromptbreederParams()).search(empty.context, initial):
            pass


def test_strategies_lists_promptbreeder_and_dry_run_plans_it(tmp_path: Path) -> None:
    runner = CliRunner()
    listing = json.loads(runner.invoke(app, ["strategies", "--json"]).stdout)
    entry = next(s for s in listing if s["name"] == "promptbreeder")
    assert {p["name"] for p in entry["params"]} >= {
        "population_size",
        "generations",
        "operators",
        "crossover_rate",
        "eval_examples",
    }
    task = with_loadable_models(write_task(tmp_path, strategy="promptbreeder"))
    result = runner.invoke(app, ["run", str(task), "--dry-run", "--budget", "400", "--json"])
    assert result.exit_code == 0, result.output
    plan = json.loads(result.stdout)
    assert plan["final_eval_calls"] == RESERVE
    assert plan["layout"]["population"] == 6
    assert plan["target_calls"] <= 400


async def test_copies_lost_to_unusable_answers_are_made_up_within_the_plan(
    tmp_path: Path,
) -> None:
    refused = ("zero-order", "estimation", "lineage", "lamarckian")

    def refuses(request: ChatRequest) -> str:
        if kind_of(request.messages[-1]["content"]) in refused:
            return "I'm sorry, but I can't help with that."
        return scripted_optimizer(request)

    h = Harness(tmp_path)
    h.recorder.fn = refuses
    params: dict[str, Any] = {
        "population_size": 4,
        "generations": 2,
        "eval_examples": 10,
        "crossover_rate": 0.0,
    }
    reports = await h.steps(**params)
    lost = [t for t in h.events("tournament") if t["child"] is None]
    born = [t for t in h.events("tournament") if t["child"] is not None]
    assert lost and all(t["family"] in refused for t in lost)
    # The planned 4 copies were made, in extra generations.
    assert len(born) == 4 and len(reports) > 1 + 2
    plan = Promptbreeder(PromptbreederParams(**params)).plan({"train": TRAIN})
    assert h.optimizer.calls <= plan.optimizer_calls
    assert h.target.calls <= plan.target_calls
