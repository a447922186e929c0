"""Promptbreeder (Fernando et al., 2023): self-referential evolution of (task prompt, mutation
prompt) units.

The population is a list of units, each a task prompt (a candidate) and a mutation prompt (a
piece of advice on how to revise an instruction). It starts from the initial prompt and from
instructions the optimizer writes from the task description, a thinking style and a mutation
prompt, both drawn at random from editable Markdown lists (`promptbreeder/thinking-styles` and
`promptbreeder/mutation-prompts`, overridable with `--meta-prompts DIR`). Every task prompt is
scored on one shared training subset, so that all comparisons are paired.

Each generation pairs units at random for binary tournaments. The loser's place goes to a copy
of the winner whose task prompt was mutated by one operator family chosen uniformly: zero-order
generation, first-order mutation, estimation of distribution, lineage, hyper-mutation (which
also changes the copy's mutation prompt) or Lamarckian induction from a correctly solved
example. With a small probability the copy then takes another unit's task prompt instead
(crossover, that unit drawn in proportion to fitness). Because that task prompt is already a
scored candidate, no new candidate is made: the copy is recorded as a unit with both parents,
and the mutation whose text would be thrown away is not asked for at all.
"""

from __future__ import annotations

import math
import re
from collections.abc import AsyncGenerator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from promptopt.errors import UsageError
from promptopt.search.context import (
    Candidate,
    Plan,
    SearchContext,
    StepReport,
    StrategyInfo,
    is_truncated,
)
from promptopt.search.extract import echo_pieces, extract_instruction
from promptopt.search.meta_prompts import MetaPromptSet
from promptopt.search.population import (
    draw_subset,
    fitness,
    gather_all,
    rank,
    roulette_select,
)
from promptopt.task.example import Example

NAME = "promptbreeder"
THINKING_STYLES = "promptbreeder/thinking-styles"
MUTATION_PROMPTS = "promptbreeder/mutation-prompts"
LISTS = (THINKING_STYLES, MUTATION_PROMPTS)
"""The meta-prompt files that hold lists rather than messages for the optimizer."""

INITIALIZE = "promptbreeder/initialize"
HYPER = "hyper-mutation"
# Each mutation family and the meta-prompt it asks (hyper-mutation asks two: its own to improve
# the mutation prompt, then first-order's to apply it).
FAMILIES: dict[str, str] = {
    "zero-order": "promptbreeder/zero-order",
    "first-order": "promptbreeder/first-order",
    "estimation": "promptbreeder/estimation",
    "lineage": "promptbreeder/lineage",
    HYPER: "promptbreeder/hyper-mutation",
    "lamarckian": "promptbreeder/lamarckian",
}
CROSSOVER = f"{NAME}/crossover"

_ITEM = re.compile(r"^\s*(?:[-*+]|\d+[.)])\s+(\S.*?)\s*$")
# Characters of an example's input shown to the optimizer: a Lamarckian worked example is the
# point of its request and is shown nearly whole; the examples around it only illustrate.
_EXAMPLE_CHARS = 2000
_SHOWN_CHARS = 400
# Characters of a mutation prompt kept: it is advice, not an instruction, and one that grows
# with every hyper-mutation would crowd out the meta-prompt.
_MUTATION_PROMPT_CHARS = 600
# A score at least this high counts as a correct answer for the Lamarckian operator.
_CORRECT = 1.0 - 1e-9


class PromptbreederParams(BaseModel):
    """Promptbreeder's parameters: the paper's operators and crossover rate, with a population
    and generations sized for a few hundred target calls and a few dozen optimizer calls."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    population_size: int = Field(
        default=6, ge=2, description="units in the population, the initial prompt included"
    )
    generations: int = Field(
        default=4,
        ge=1,
        description="generations of tournaments; copies lost to unusable proposals are made "
        "up in extra generations, at most as many again",
    )
    tournaments_per_generation: int | None = Field(
        default=None,
        ge=1,
        description="binary tournaments per generation, each between two distinct units "
        "(null: half the population, so every unit competes once)",
    )
    operators: tuple[str, ...] = Field(
        default=tuple(FAMILIES),
        min_length=1,
        description="mutation families drawn from uniformly: " + ", ".join(FAMILIES),
    )
    crossover_rate: float = Field(
        default=0.1,
        ge=0,
        le=1,
        description="chance that a mutated copy takes another unit's task prompt instead, "
        "that unit drawn in proportion to fitness",
    )
    exemplars: int = Field(
        default=3,
        ge=1,
        description="training examples drawn afresh for each request and shown in it",
    )
    lineage_size: int = Field(
        default=5, ge=1, description="most past elites shown by the lineage operator"
    )
    temperature: float | None = Field(
        default=1.0, ge=0, description="optimizer temperature for every request (null: the model's)"
    )
    eval_examples: int | None = Field(
        default=None,
        ge=1,
        description="training examples every task prompt is scored on, a subset drawn once "
        "(null: all of train, shrunk to fit the target budget)",
    )
    min_eval_examples: int = Field(
        default=16,
        ge=1,
        description="the smallest subset the automatic eval_examples shrinks to; below it, "
        "fewer units and tournaments are used instead",
    )

    @field_validator("operators")
    @classmethod
    def _known_operators(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        unknown = sorted(set(value) - set(FAMILIES))
        if unknown:
            raise ValueError(
                f"unknown operator(s) {', '.join(unknown)}; choose from: {', '.join(FAMILIES)}"
            )
        return tuple(dict.fromkeys(value))

    def optimizer_calls_per_child(self) -> int:
        """The most optimizer calls one mutated copy costs (two for a hyper-mutation)."""
        return 2 if HYPER in self.operators else 1


PRESETS: dict[str, dict[str, Any]] = {
    # About 150 target calls and 15 optimizer calls on a small training set.
    "light": {
        "population_size": 4,
        "generations": 3,
        "tournaments_per_generation": 2,
        "eval_examples": 12,
    },
    # Closer to the paper's evolution, for budgets of a few thousand target calls.
    "large": {"population_size": 12, "generations": 8, "min_eval_examples": 24},
}


@dataclass(frozen=True)
class Sizing:
    """What a search does within its budgets: the evaluation subset's size, the units, the
    generations and tournaments per generation, and the tournaments in all (the last
    generation may hold fewer)."""

    eval_examples: int
    population: int
    generations: int
    tournaments_per_generation: int
    tournaments: int

    def to_json(self) -> dict[str, int]:
        """The sizes, for the plan's layout and the plan event."""
        return {
            "eval_examples": self.eval_examples,
            "population": self.population,
            "generations": self.generations,
            "tournaments_per_generation": self.tournaments_per_generation,
            "tournaments": self.tournaments,
        }


_NOTHING = Sizing(0, 0, 0, 0, 0)


def size_search(
    params: PromptbreederParams, train: int, target_left: int | None, optimizer_left: int | None
) -> Sizing:
    """Fit the population and the tournaments to the budgets so that every unit and every
    mutated copy asked for can be scored.

    The initial population costs `population - 1` optimizer calls (the initial prompt is a unit
    already) and `population * eval_examples` target calls; each tournament at most
    `optimizer_calls_per_child()` optimizer calls and `eval_examples` target calls. Optimizer
    calls are counted at one per tournament here, since most operators cost one; a
    hyper-mutation the calls left cannot pay for is replaced by a first-order mutation when
    the search runs.

    Args:
        params: The strategy's parameters.
        train: How many training examples there are.
        target_left: Target calls the search may make (None: uncapped).
        optimizer_left: Optimizer calls the search may make (None: uncapped).

    Returns:
        The sizing; all zeros when not even two units and one tournament fit.
    """
    if train == 0:
        return _NOTHING
    population = params.population_size
    per_generation = params.tournaments_per_generation or population // 2
    wanted = params.generations * per_generation
    if optimizer_left is not None:
        # population - 1 units to write and at least one tournament.
        population = min(population, optimizer_left)
    size = min(params.eval_examples or train, train)
    if target_left is not None:
        if params.eval_examples is None:
            # Shrink the subset before the population: evolution needs many scored prompts,
            # but only down to a subset that still tells them apart.
            share = target_left // (population + wanted)
            size = max(min(params.min_eval_examples, train), min(train, share))
        population = min(population, target_left // size - 1)
    if population < 2:
        return _NOTHING
    per_generation = min(per_generation, population // 2)
    if optimizer_left is not None:
        wanted = min(wanted, optimizer_left - (population - 1))
    if target_left is not None:
        wanted = min(wanted, (target_left - population * size) // size)
    wanted = min(wanted, params.generations * per_generation)
    if wanted <= 0:
        return _NOTHING
    generations = math.ceil(wanted / per_generation)
    return Sizing(size, population, generations, per_generation, wanted)


def load_list(meta_prompts: MetaPromptSet, name: str) -> tuple[str, ...]:
    """The items of a list shipped as Markdown in the meta-prompt directory (one per list line,
    `- item`, `* item` or `1. item`; other lines are ignored).

    Raises:
        UsageError: the file has no list item.
    """
    meta = meta_prompts.get(name)
    items = tuple(
        m.group(1) for line in meta.user.splitlines() if (m := _ITEM.match(line)) is not None
    )
    if not items:
        raise UsageError(
            f"{meta.source}: the {name} list has no items; write one per line as '- item'"
        )
    return items


@dataclass(frozen=True)
class Unit:
    """A member of the population: a task prompt (a candidate's id) and its mutation prompt."""

    id: str
    cid: str
    mutation_prompt: str
    operator: str
    parents: tuple[str, ...] = ()
    """The candidates it descends from: the winner it copies first, then any other."""

    def to_json(self) -> dict[str, Any]:
        """As shown in events and step details."""
        return {
            "unit": self.id,
            "candidate": self.cid,
            "mutation_prompt": self.mutation_prompt,
            "operator": self.operator,
            "parents": list(self.parents),
        }


@dataclass
class Child:
    """A mutated copy planned in a tournament, then asked for and registered."""

    slot: int
    winner: Unit
    loser: Unit
    family: str
    crossover: Unit | None
    """The unit whose task prompt the copy takes, when crossover happens."""
    mutation_prompt: str
    examples: str = ""
    """Training examples drawn for this copy, shown in each of its requests; a fresh draw
    makes every request differ, so that the same winner mutated the same way twice is not
    answered from the cache with the same text."""
    values: dict[str, str] = field(default_factory=dict)
    """The meta-prompt's values (besides the task context and the examples)."""
    parents: tuple[str, ...] = ()
    feedback: dict[str, Any] = field(default_factory=dict)
    raw: str | None = None
    cand: Candidate | None = None

    @property
    def optimizer_calls(self) -> int:
        """The optimizer calls the copy costs: none for a crossover, whose mutated task prompt
        would be replaced anyway, except a hyper-mutation's improvement of the mutation prompt,
        which the copy keeps."""
        if self.crossover is not None:
            return 1 if self.family == HYPER else 0
        return 2 if self.family == HYPER else 1

    @property
    def operator(self) -> str:
        """The operator recorded in the lineage."""
        return CROSSOVER if self.crossover is not None else f"{NAME}/{self.family}"


def format_examples(ctx: SearchContext, examples: Sequence[Example]) -> str:
    """Training examples as a meta-prompt shows them: the input and the expected answer."""
    blocks = []
    for example in examples:
        shown = " ".join(ctx.render_input(example).split())
        if len(shown) > _SHOWN_CHARS:
            shown = shown[: _SHOWN_CHARS - 1] + "…"
        blocks.append(f"Example input: {shown}\nCorrect answer: {example.target}")
    return "\n\n".join(blocks) or "(no training examples)"


def _numbered(texts: Sequence[str]) -> str:
    return "\n\n".join(f"Instruction {i}:\n{text}" for i, text in enumerate(texts, 1))


class Promptbreeder:
    """The Promptbreeder strategy."""

    def __init__(self, params: PromptbreederParams) -> None:
        self.params = params
        self._units = 0

    def plan(self, sizes: Mapping[str, int]) -> Plan:
        """The most calls Promptbreeder makes with these parameters, before any cap."""
        return self.plan_for_budget(sizes, None, None)

    def plan_for_budget(
        self, sizes: Mapping[str, int], target_calls: int | None, optimizer_calls: int | None
    ) -> Plan:
        """The most calls Promptbreeder makes when sized to these search budgets."""
        s = size_search(self.params, sizes.get("train", 0), target_calls, optimizer_calls)
        optimizer = 0
        if s.population:
            optimizer = s.population - 1 + self.params.optimizer_calls_per_child() * s.tournaments
        if optimizer_calls is not None:
            optimizer = min(optimizer, optimizer_calls)
        return Plan(
            target_calls=s.eval_examples * (s.population + s.tournaments),
            optimizer_calls=optimizer,
            layout=s.to_json(),
            notes=(
                f"promptbreeder: {s.population} units scored on {s.eval_examples} training "
                f"examples, {s.generations} generation(s) of up to {s.tournaments_per_generation} "
                f"tournament(s), {s.tournaments} mutated copies in all (copies lost to unusable "
                f"answers are made up in up to {s.generations} more generation(s))",
            ),
        )

    # --- units ------------------------------------------------------------------------------

    def _new_unit(
        self, cid: str, mutation_prompt: str, operator: str, parents: Sequence[str] = ()
    ) -> Unit:
        unit = Unit(f"u{self._units:03d}", cid, mutation_prompt, operator, tuple(parents))
        self._units += 1
        return unit

    def _sampling(self) -> dict[str, Any] | None:
        t = self.params.temperature
        return None if t is None else {"temperature": t}

    async def initialize(
        self, ctx: SearchContext, initial: Candidate, population: int
    ) -> list[Unit]:
        """The initial population: the initial prompt and `population - 1` instructions
        written from the task description, a thinking style and a mutation prompt drawn at
        random; a unit whose instruction is unusable is left out."""
        styles = load_list(ctx.meta_prompts, THINKING_STYLES)
        mutations = load_list(ctx.meta_prompts, MUTATION_PROMPTS)
        train = list(ctx.train)
        draws = [(ctx.rng.choice(styles), ctx.rng.choice(mutations)) for _ in range(population)]
        shown = [
            format_examples(ctx, ctx.rng.sample(train, min(self.params.exemplars, len(train))))
            for _ in draws[1:]
        ]
        sampling = self._sampling()
        answers = await gather_all(
            ctx,
            [
                ctx.ask(
                    INITIALIZE,
                    1,
                    sampling,
                    thinking_style=style,
                    mutation_prompt=mutation,
                    examples=examples,
                )
                for (style, mutation), examples in zip(draws[1:], shown, strict=True)
            ],
        )
        units = [self._new_unit(initial.id, draws[0][1], "initial")]
        for (style, mutation), got in zip(draws[1:], answers, strict=True):
            feedback = {"thinking_style": style, "mutation_prompt": mutation}
            cand = (
                ctx.accept_proposal(got[0], operator=f"{NAME}/init", feedback=feedback)
                if got
                else None
            )
            if cand is not None:
                units.append(self._new_unit(cand.id, mutation, f"{NAME}/init"))
        for unit in units:
            ctx.event("unit", **unit.to_json())
        return units

    # --- tournaments ------------------------------------------------------------------------

    def plan_children(
        self,
        ctx: SearchContext,
        units: Sequence[Unit],
        scores: Mapping[str, float],
        elites: Sequence[str],
        n: int,
        subset: Sequence[Example],
        generation: int,
        budget: tuple[int | None, int | None],
    ) -> list[Child]:
        """Pair units at random for up to `n` binary tournaments and plan each winner's
        mutated copy (its operator, crossover and the meta-prompt's values), stopping where
        the budgets left, (target, optimizer), can no longer pay for a copy."""
        target_left, optimizer_left = budget
        order = ctx.rng.sample(range(len(units)), 2 * n)
        children: list[Child] = []
        for a, b in zip(order[::2], order[1::2], strict=True):
            # Ties go to the older task prompt, as in `rank`, then to the older slot.
            win, lose = sorted((a, b), key=lambda i: (-scores[units[i].cid], units[i].cid, i))
            child = self._plan_child(ctx, units, scores, elites, subset, win, lose)
            too_dear = optimizer_left is not None and child.optimizer_calls > optimizer_left
            if too_dear and child.family == HYPER:
                # The calls left pay for one request, not two: mutate with the winner's own
                # mutation prompt instead of improving it first.
                child.family = "first-order"
                child.feedback["downgraded_from"] = HYPER
            size = 0 if child.crossover is not None else len(subset)
            if (optimizer_left is not None and child.optimizer_calls > optimizer_left) or (
                target_left is not None and size > target_left
            ):
                ctx.event("search_stopped", reason="the budget left cannot pay for a mutated copy")
                break
            if optimizer_left is not None:
                optimizer_left -= child.optimizer_calls
            if target_left is not None:
                target_left -= size
            child.feedback["generation"] = generation
            children.append(child)
        return children

    def _plan_child(
        self,
        ctx: SearchContext,
        units: Sequence[Unit],
        scores: Mapping[str, float],
        elites: Sequence[str],
        subset: Sequence[Example],
        win: int,
        lose: int,
    ) -> Child:
        p = self.params
        winner = units[win]
        solved = [e for e in subset if ctx.candidates[winner.cid].scores["train"][e.id] >= _CORRECT]
        # Lamarckian needs an example the winner got right; the other families always apply.
        families = [f for f in p.operators if f != "lamarckian" or solved] or ["first-order"]
        family = ctx.rng.choice(families)
        crossover: Unit | None = None
        if p.crossover_rate > 0 and ctx.rng.random() < p.crossover_rate:
            others = [i for i in range(len(units)) if i != win]
            (pick,) = roulette_select(ctx.rng, [scores[units[i].cid] for i in others], k=1)
            crossover = units[others[pick]]
        drawn = ctx.rng.sample(list(ctx.train), min(p.exemplars, len(ctx.train)))
        child = Child(
            slot=lose,
            winner=winner,
            loser=units[lose],
            family=family,
            crossover=crossover,
            mutation_prompt=winner.mutation_prompt,
            examples=format_examples(ctx, drawn),
            parents=(winner.cid,),
            feedback={"winner": winner.cid, "loser": units[lose].cid},
        )
        if crossover is not None:
            child.parents = (winner.cid, crossover.cid)
            child.feedback["crossover"] = crossover.cid
        if family in ("first-order", HYPER):
            child.values = {"instruction": ctx.candidates[winner.cid].text}
        elif family == "estimation":
            texts = list(dict.fromkeys(u.cid for u in units))
            ctx.rng.shuffle(texts)
            child.values = {"instructions": _numbered([ctx.candidates[c].text for c in texts])}
            child.parents += tuple(c for c in texts if c not in child.parents)
        elif family == "lineage":
            shown = sorted(dict.fromkeys(elites), key=lambda c: (scores[c], c))
            shown = shown[-p.lineage_size :]
            child.values = {"elites": _numbered([ctx.candidates[c].text for c in shown])}
            child.parents += tuple(c for c in reversed(shown) if c not in child.parents)
            child.feedback["elites"] = shown
        elif family == "lamarckian":
            example = ctx.rng.choice(solved)
            shown_input = ctx.render_input(example)[:_EXAMPLE_CHARS]
            child.values = {
                "worked_example": f"Input: {shown_input}\nCorrect answer: {example.target}"
            }
            child.feedback["worked_example"] = example.id
        return child

    async def ask_child(self, ctx: SearchContext, child: Child) -> None:
        """Ask the optimizer for the copy's new mutation prompt (hyper-mutation) and its new
        task prompt, keeping the raw answer for `accept_child`."""
        sampling = self._sampling()
        if child.family == HYPER:
            old = child.winner.mutation_prompt
            got = await ctx.ask(
                FAMILIES[HYPER], 1, sampling, mutation_prompt=old, examples=child.examples
            )
            improved = self._mutation_prompt(ctx, got[0], old) if got else None
            if improved is not None:
                child.mutation_prompt = improved
                child.feedback["mutation_prompt_from"] = child.winner.mutation_prompt
            if child.crossover is not None:
                return
        elif child.crossover is not None:
            return
        if child.family in ("first-order", HYPER):
            name = FAMILIES["first-order"]
            values = {"mutation_prompt": child.mutation_prompt, **child.values}
        else:
            name, values = FAMILIES[child.family], child.values
        got = await ctx.ask(name, 1, sampling, examples=child.examples, **values)
        child.raw = got[0] if got else None

    def _mutation_prompt(self, ctx: SearchContext, raw: str, old: str) -> str | None:
        name = FAMILIES[HYPER]
        echo = echo_pieces(ctx.meta_prompts.get(name).literal_lines(), keep=[old])
        extraction = extract_instruction(
            raw, echo_of=echo, truncated=is_truncated(raw), max_chars=_MUTATION_PROMPT_CHARS
        )
        if not extraction.accepted:
            ctx.reject(
                f"{NAME}/{HYPER}",
                extraction.reason or "rejected",
                extraction.message + "; the winner's mutation prompt is kept",
                raw,
            )
            return None
        return extraction.text

    def accept_child(self, ctx: SearchContext, child: Child) -> Unit | None:
        """Register the copy's task prompt (a crossover reuses the donor's) and return the new
        unit, or None when the proposal was unusable or a duplicate."""
        feedback = {**child.feedback, "mutation_prompt": child.mutation_prompt}
        if child.crossover is not None:
            cid = child.crossover.cid
        else:
            if child.raw is None:
                return None
            cand = ctx.accept_proposal(
                child.raw, operator=child.operator, parents=child.parents, feedback=feedback
            )
            if cand is None:
                return None
            child.cand = cand
            cid = cand.id
        return self._new_unit(cid, child.mutation_prompt, child.operator, child.parents)

    # --- the search -------------------------------------------------------------------------

    async def search(
        self, ctx: SearchContext, initial: Candidate
    ) -> AsyncGenerator[StepReport, None]:
        """Initialize and score the population, then run generations of tournaments."""
        p = self.params
        if not ctx.train:
            raise UsageError(
                "promptbreeder needs training examples: give the task a data.train split"
            )
        self._units = 0
        sizing = size_search(
            p, len(ctx.train), ctx.remaining_target_calls(), ctx.remaining_optimizer_calls()
        )
        subset = draw_subset(ctx, sizing.eval_examples)
        ctx.event("promptbreeder_plan", **sizing.to_json(), ids=[e.id for e in subset])
        if sizing.population == 0:
            ctx.event("search_stopped", reason="the budget cannot score two units and a copy")
            return
        units = await self.initialize(ctx, initial, sizing.population)
        scores = await fitness(ctx, [ctx.candidates[u.cid] for u in units], subset)
        elites = [rank({u.cid: scores[u.cid] for u in units})[0]]
        yield self._report("init", units, scores, {"units": len(units)})

        # A copy whose proposal is rejected or a duplicate costs no target calls, so its
        # tournament is run again in an extra generation (at most as many again as planned):
        # with a small optimizer model, a third of the answers can be unusable. The plan's
        # bounds still hold: at most `tournaments` copies are scored, and the copies' optimizer
        # calls stay within what the plan counted for them.
        left = sizing.tournaments
        calls_left = p.optimizer_calls_per_child() * sizing.tournaments
        generation = 0
        while left > 0 and generation < 2 * sizing.generations:
            generation += 1
            n = min(sizing.tournaments_per_generation, left, len(units) // 2)
            if n == 0:
                ctx.event("search_stopped", reason="fewer than two units are left to compete")
                return
            target_left, optimizer_left = (
                ctx.remaining_target_calls(),
                ctx.remaining_optimizer_calls(),
            )
            budget = (
                left * len(subset) if target_left is None else min(target_left, left * len(subset)),
                calls_left if optimizer_left is None else min(optimizer_left, calls_left),
            )
            children = self.plan_children(ctx, units, scores, elites, n, subset, generation, budget)
            if not children:
                return
            calls_left -= sum(c.optimizer_calls for c in children)
            # Ask concurrently, then register in tournament order, so that candidate ids do
            # not depend on which answer came back first.
            await gather_all(ctx, [self.ask_child(ctx, c) for c in children])
            born = [(c, self.accept_child(ctx, c)) for c in children]
            fresh = [c.cand for c, _ in born if c.cand is not None]
            if fresh:
                scores.update(await fitness(ctx, fresh, subset))
            for child, unit in born:
                ctx.event(
                    "tournament",
                    generation=generation,
                    winner=child.winner.cid,
                    loser=child.loser.cid,
                    operator=child.operator,
                    family=child.family,
                    child=unit.cid if unit else None,
                )
                if unit is not None:
                    units[child.slot] = unit
                    ctx.event("unit", **unit.to_json())
            left -= sum(1 for _, unit in born if unit is not None)
            best = rank({u.cid: scores[u.cid] for u in units})[0]
            if best != elites[-1]:
                elites.append(best)
            yield self._report(
                f"generation-{generation}",
                units,
                scores,
                {
                    "tournaments": len(children),
                    "new": len(fresh),
                    "operators": [c.operator for c in children],
                    "scores": {c.id: round(scores[c.id], 4) for c in fresh},
                },
            )
            if len(children) < n:
                return  # the budget ran out within this generation

    def _report(
        self,
        name: str,
        units: Sequence[Unit],
        scores: Mapping[str, float],
        detail: Mapping[str, Any],
    ) -> StepReport:
        ranking = rank(scores)
        return StepReport(
            name,
            tuple(ranking),
            scores[ranking[0]],
            {**detail, "population": [u.cid for u in units]},
        )


INFO = StrategyInfo(
    name=NAME,
    summary="Promptbreeder: (task prompt, mutation prompt) units evolved by binary tournaments "
    "with zero-order, first-order, estimation, lineage, hyper-mutation, Lamarckian and "
    "crossover operators (Fernando et al., 2023)",
    params=PromptbreederParams,
    build=lambda params: Promptbreeder(params),
    presets=PRESETS,
)
