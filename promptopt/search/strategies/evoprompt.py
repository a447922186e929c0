"""EvoPrompt (Guo et al., 2024): evolutionary search where the optimizer model is the genetic
operator.

Both variants start from the same population: the initial prompt, paraphrases of it and
instructions induced from training examples (APE's meta-prompts), every member scored on one
subset of the training data drawn once, so that fitness values compare prompts on the same
examples.

- `evoprompt-ga`: per generation, each child comes from two parents drawn by roulette wheel
  (probability proportional to fitness); one meta-prompt asks the optimizer to cross them over and
  then mutate the offspring. The next generation is the best `popsize` of parents and children.
- `evoprompt-de`: per generation, every member x gets a trial prompt from two other members (the
  donors) and the current best: the meta-prompt asks to mutate the parts where the donors differ,
  combine them with the best, and cross the result over with x. The trial replaces x only when it
  scores higher than x on the same examples.

The population, the generations and the subset are sized to the budgets at the start, so that no
optimizer call is spent on a child that the target budget could not score.
"""

from __future__ import annotations

import random
import re
from abc import ABC, abstractmethod
from collections.abc import AsyncGenerator, Awaitable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from promptopt.errors import UsageError
from promptopt.search.context import (
    Answer,
    Candidate,
    Plan,
    SearchContext,
    StepReport,
    StrategyInfo,
    answer_items,
)
from promptopt.search.population import (
    affordable,
    draw_subset,
    fitness,
    gather_all,
    rank,
    roulette_select,
)
from promptopt.search.strategies.ape import format_demos
from promptopt.task.example import Example

GA_META_PROMPT = "evoprompt/crossover-mutate"
DE_META_PROMPT = "evoprompt/differential"
PARAPHRASE_META_PROMPT = "ape/resample"
INDUCE_META_PROMPT = "ape/forward"

# The closing tags of the intermediate steps the meta-prompts ask for before the final
# instruction; text up to the last of them is the model's working, not its answer.
_STEP_CLOSE = re.compile(r"</\s*(?:CROSSOVER|DIFFERENCES|MUTATED|COMBINED)\s*>", re.IGNORECASE)
_START = re.compile(r"<\s*START\s*>", re.IGNORECASE)
# A delimited item shorter than this is an echoed "between <START> and <END>", not a prompt.
_MIN_ITEM_CHARS = 8


class EvoPromptParams(BaseModel):
    """EvoPrompt's parameters; the paper's operators and temperature, a population and a number
    of generations that fit a few hundred target calls and about 40 optimizer calls."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    popsize: int = Field(
        default=6,
        ge=2,
        description="population size: the initial prompt plus popsize-1 proposals, and the "
        "children bred per generation (the paper uses 10)",
    )
    generations: int = Field(default=4, ge=1, description="generations of evolution")
    paraphrases: int = Field(
        default=2,
        ge=0,
        description="paraphrases of the initial prompt in the initial population; the other "
        "proposals are instructions induced from training examples",
    )
    num_demos: int = Field(
        default=5, ge=1, description="training examples shown per induced instruction"
    )
    temperature: float | None = Field(
        default=0.5,
        ge=0,
        description="optimizer temperature of the evolution operators (null: the model's)",
    )
    max_tokens: int | None = Field(
        default=320,
        ge=16,
        description="optimizer token limit for the evolution answers, which write out the "
        "intermediate steps before the final instruction (null: the model's)",
    )
    eval_examples: int | None = Field(
        default=None,
        ge=1,
        description="training examples every prompt is scored on, a subset drawn once "
        "(null: all of train, shrunk to fit the target budget)",
    )
    min_eval_examples: int = Field(
        default=16,
        ge=1,
        description="the smallest subset the automatic eval_examples shrinks to; below it, "
        "fewer generations or a smaller population are used instead",
    )


class EvoPromptDEParams(EvoPromptParams):
    """EvoPrompt DE's parameters: a member needs two donors besides itself."""

    popsize: int = Field(
        default=6,
        ge=3,
        description="population size: the initial prompt plus popsize-1 proposals; every "
        "member gets one trial prompt per generation (the paper uses 10)",
    )


PRESETS: dict[str, dict[str, Any]] = {
    # About 150-250 target calls and 15 optimizer calls.
    "light": {"popsize": 4, "generations": 3, "paraphrases": 1, "min_eval_examples": 12},
    # The paper's sizes; needs thousands of target calls and over 100 optimizer calls.
    "paper": {"popsize": 10, "generations": 10, "paraphrases": 4},
}


@dataclass(frozen=True)
class Sizing:
    """What an evolution does within its budgets: the subset every prompt is scored on, the
    population and the generations (0: not even one generation fits)."""

    eval_examples: int
    popsize: int
    generations: int

    @property
    def target_calls(self) -> int:
        """The most target calls: every member and every child scored on the subset."""
        if self.generations == 0:
            return 0
        return self.eval_examples * self.popsize * (1 + self.generations)

    @property
    def optimizer_calls(self) -> int:
        """The most optimizer calls: the initial proposals, then one per child."""
        if self.generations == 0:
            return 0
        return self.popsize - 1 + self.popsize * self.generations

    def to_json(self) -> dict[str, int]:
        """As recorded in the plan event and shown by `run --dry-run --json`."""
        return {
            "eval_examples": self.eval_examples,
            "popsize": self.popsize,
            "generations": self.generations,
            "target_calls": self.target_calls,
            "optimizer_calls": self.optimizer_calls,
        }


def size_evolution(
    params: EvoPromptParams,
    train: int,
    target_left: int | None,
    optimizer_left: int | None,
    min_popsize: int = 2,
) -> Sizing:
    """Fit the evolution to its budgets so that every child asked for can be scored.

    The subset shrinks first (down to `min_eval_examples`), then the generations, then the
    population (down to `min_popsize`): a population too small to breed from, or a subset too
    small to tell prompts apart, would waste the calls.

    Args:
        params: The strategy's parameters.
        train: How many training examples there are.
        target_left: Target calls the search may make (None: uncapped).
        optimizer_left: Optimizer calls the search may make (None: uncapped).
        min_popsize: The smallest population the variant can evolve.

    Returns:
        The sizing; `generations` is 0 when not even one generation fits.
    """
    if train == 0:
        return Sizing(0, params.popsize, 0)
    fixed = min(params.eval_examples or train, train)
    for pop in range(params.popsize, min_popsize - 1, -1):
        generations = params.generations
        if optimizer_left is not None:
            generations = min(generations, (optimizer_left - (pop - 1)) // pop)
        size = fixed
        if target_left is not None and generations >= 1:
            if params.eval_examples is None:
                share = target_left // (pop * (1 + generations))
                size = max(min(params.min_eval_examples, train), min(train, share))
            generations = min(generations, target_left // (size * pop) - 1)
        if generations >= 1:
            return Sizing(size, pop, generations)
    return Sizing(fixed, params.popsize, 0)


def final_answer(raw: str) -> str:
    """The part of a multi-step answer that holds the final instruction.

    The meta-prompts ask for the intermediate steps in their own tags and the final instruction
    between <START> and <END>. A small model may tag an intermediate step with <START> as well
    (then the last long delimited item is the final one) or leave the final instruction
    untagged (then it is what follows the last intermediate step). The result keeps the
    answer's finish reason and meta-prompt, so `accept_proposal` still rejects a cut or echoed
    answer.
    """
    starts = len(_START.findall(raw))
    if starts >= 2:
        items = [item for item in answer_items(raw) if len(item.strip()) >= _MIN_ITEM_CHARS]
        return items[-1] if items else raw
    if starts == 1:
        return raw
    closes = list(_STEP_CLOSE.finditer(raw))
    if not closes:
        return raw
    rest = raw[closes[-1].end() :]
    if isinstance(raw, Answer):
        return Answer(rest, finish_reason=raw.finish_reason, meta_prompt=raw.meta_prompt)
    return rest


def next_generation(
    scores: Mapping[str, float], members: Sequence[str], children: Sequence[str], popsize: int
) -> list[str]:
    """GA survival: the best `popsize` of parents and children, best first (ties go to the
    older prompt, so a child must score higher to displace a parent)."""
    union = {cid: scores[cid] for cid in [*members, *children]}
    return rank(union)[:popsize]


def replaces(member_score: float, child_score: float) -> bool:
    """DE survival: a trial prompt replaces its member only when it scores strictly higher on
    the same examples; a tie keeps the member."""
    return child_score > member_score


def pick_donors(rng: random.Random, size: int, member: int) -> tuple[int, int]:
    """Two distinct population indices other than `member`, drawn uniformly."""
    others = [i for i in range(size) if i != member]
    a, b = rng.sample(others, 2)
    return a, b


class EvoPrompt(ABC):
    """The shared frame of both variants: sizing, the initial population, reporting."""

    name = "evoprompt"
    min_popsize = 2

    def __init__(self, params: EvoPromptParams) -> None:
        self.params = params

    def plan(self, sizes: Mapping[str, int]) -> Plan:
        """The most calls the evolution makes with these parameters, before any cap."""
        return self.plan_for_budget(sizes, None, None)

    def plan_for_budget(
        self, sizes: Mapping[str, int], target_calls: int | None, optimizer_calls: int | None
    ) -> Plan:
        """The most calls the evolution makes when sized to these search budgets."""
        sizing = self.size(sizes.get("train", 0), target_calls, optimizer_calls)
        return Plan(
            target_calls=sizing.target_calls,
            optimizer_calls=sizing.optimizer_calls,
            layout=sizing.to_json(),
            notes=(self.describe(sizing),),
        )

    def size(self, train: int, target_left: int | None, optimizer_left: int | None) -> Sizing:
        """The sizing for this variant (see `size_evolution`)."""
        return size_evolution(self.params, train, target_left, optimizer_left, self.min_popsize)

    def describe(self, sizing: Sizing) -> str:
        """One line for `run --dry-run`."""
        if sizing.generations == 0:
            return f"{self.name} plan: the budget cannot score a single generation"
        return (
            f"{self.name} plan: a population of {sizing.popsize} evolved for "
            f"{sizing.generations} generation{'s' if sizing.generations != 1 else ''}, every "
            f"prompt scored on the same "
            f"{sizing.eval_examples} training examples"
        )

    def sampling(self) -> dict[str, Any] | None:
        """The optimizer parameters of the evolution operators."""
        p = self.params
        out: dict[str, Any] = {}
        if p.temperature is not None:
            out["temperature"] = p.temperature
        if p.max_tokens is not None:
            out["max_tokens"] = p.max_tokens
        return out or None

    async def initial_population(
        self, ctx: SearchContext, initial: Candidate, wanted: int
    ) -> list[Candidate]:
        """The initial prompt, paraphrases of it and instructions induced from training
        examples; a proposal that is rejected or a duplicate leaves the population smaller."""
        p = self.params
        paraphrases = min(p.paraphrases, wanted)
        train = list(ctx.train)
        asks: list[Awaitable[list[str]]] = []
        origins: list[tuple[str, dict[str, Any]]] = []
        if paraphrases:
            asks.append(ctx.ask(PARAPHRASE_META_PROMPT, paraphrases, instruction=initial.text))
            origins.append(("paraphrase", {}))
        for _ in range(wanted - paraphrases):
            # One demonstration set per induced instruction, so that they differ.
            demos = ctx.rng.sample(train, min(p.num_demos, len(train)))
            asks.append(ctx.ask(INDUCE_META_PROMPT, 1, demos=format_demos(demos, ctx.render_input)))
            origins.append(("induce", {"demos": [e.id for e in demos]}))
        population = [initial]
        for (kind, feedback), answers in zip(origins, await gather_all(ctx, asks), strict=True):
            parents = [initial.id] if kind == "paraphrase" else []
            for raw in answers:
                cand = ctx.accept_proposal(
                    raw,
                    operator=f"{self.name}/{kind}",
                    parents=parents,
                    feedback=dict(feedback) or None,
                )
                if cand is not None:
                    population.append(cand)
        return population

    def report(
        self,
        name: str,
        scores: Mapping[str, float],
        population: Sequence[Candidate],
        detail: Mapping[str, Any],
    ) -> StepReport:
        """A step's report: every prompt scored so far, best first, and the population."""
        ranking = rank(scores)
        return StepReport(
            name,
            tuple(ranking),
            scores[ranking[0]],
            {
                "population": [c.id for c in population],
                "population_scores": {c.id: round(scores[c.id], 4) for c in population},
                **detail,
            },
        )

    async def search(
        self, ctx: SearchContext, initial: Candidate
    ) -> AsyncGenerator[StepReport, None]:
        """Build and score the initial population, then evolve it generation by generation."""
        if not ctx.train:
            raise UsageError(
                f"{self.name} needs training examples: give the task a data.train split"
            )
        sizing = self.size(
            len(ctx.train), ctx.remaining_target_calls(), ctx.remaining_optimizer_calls()
        )
        subset = draw_subset(ctx, sizing.eval_examples)
        ctx.event(
            "evoprompt_plan",
            strategy=self.name,
            **sizing.to_json(),
            ids=[e.id for e in subset],
        )
        if sizing.generations == 0:
            ctx.event("search_stopped", reason="the budget cannot score a single generation")
            return
        population = await self.initial_population(ctx, initial, sizing.popsize - 1)
        scores = await fitness(ctx, population, subset)
        population = [ctx.candidates[cid] for cid in rank(scores)]
        yield self.report("initial-population", scores, population, {"asked": sizing.popsize - 1})
        for generation in range(1, sizing.generations + 1):
            if len(population) < self.min_popsize:
                ctx.event(
                    "search_stopped",
                    reason=f"the population has {len(population)} member(s); "
                    f"{self.name} needs {self.min_popsize}",
                )
                return
            wanted = self.children_wanted(sizing, population)
            n = affordable(ctx, wanted, len(subset))
            if n == 0:
                ctx.event("search_stopped", reason="the budget left cannot score a child")
                return
            population, detail = await self.generation(
                ctx, generation, population, scores, subset, sizing, n
            )
            yield self.report(f"generation-{generation}", scores, population, detail)

    @abstractmethod
    def children_wanted(self, sizing: Sizing, population: Sequence[Candidate]) -> int:
        """How many children a generation breeds."""

    @abstractmethod
    async def generation(
        self,
        ctx: SearchContext,
        number: int,
        population: list[Candidate],
        scores: dict[str, float],
        subset: Sequence[Example],
        sizing: Sizing,
        n: int,
    ) -> tuple[list[Candidate], dict[str, Any]]:
        """Breed `n` children, score them into `scores`, and return the next population (best
        first) with the step's details."""


class EvoPromptGA(EvoPrompt):
    """EvoPrompt GA: roulette-wheel parents, crossover then mutation, elitist survival."""

    name = "evoprompt-ga"
    min_popsize = 2

    def children_wanted(self, sizing: Sizing, population: Sequence[Candidate]) -> int:
        """A full generation of children: `popsize`."""
        return sizing.popsize

    def choose_parents(
        self,
        ctx: SearchContext,
        population: Sequence[Candidate],
        scores: Mapping[str, float],
        n: int,
    ) -> list[tuple[Candidate, Candidate]]:
        """`n` parent pairs, each two distinct members drawn by roulette wheel on fitness."""
        weights = [scores[c.id] for c in population]
        pairs = []
        for _ in range(n):
            i, j = roulette_select(ctx.rng, weights, 2)
            pairs.append((population[i], population[j]))
        return pairs

    async def generation(
        self,
        ctx: SearchContext,
        number: int,
        population: list[Candidate],
        scores: dict[str, float],
        subset: Sequence[Example],
        sizing: Sizing,
        n: int,
    ) -> tuple[list[Candidate], dict[str, Any]]:
        """Breed `n` children from roulette-selected pairs; keep the best `popsize` of all."""
        pairs = self.choose_parents(ctx, population, scores, n)
        # The same ordered pair drawn twice is one request with two samples: two requests
        # with the same text and sample index would get the same (cached) answer.
        counts: dict[tuple[str, str], int] = {}
        for a, b in pairs:
            counts[(a.id, b.id)] = counts.get((a.id, b.id), 0) + 1
        sampling = self.sampling()
        asks = [
            ctx.ask(
                GA_META_PROMPT,
                k,
                sampling,
                parent_1=ctx.candidates[a].text,
                parent_2=ctx.candidates[b].text,
            )
            for (a, b), k in counts.items()
        ]
        children: list[Candidate] = []
        for (first, second), answers in zip(counts, await gather_all(ctx, asks), strict=True):
            for raw in answers:
                child = ctx.accept_proposal(
                    final_answer(raw),
                    operator=f"{self.name}/crossover-mutate",
                    parents=[first, second],
                    feedback={
                        "generation": number,
                        "parent_fitness": [round(scores[first], 4), round(scores[second], 4)],
                    },
                )
                if child is not None:
                    children.append(child)
        fresh = await fitness(ctx, children, subset) if children else {}
        scores.update(fresh)
        survivors = next_generation(
            scores, [c.id for c in population], [c.id for c in children], sizing.popsize
        )
        dropped = [c.id for c in population + children if c.id not in survivors]
        ctx.event("ga_survivors", generation=number, survivors=survivors, dropped=dropped)
        detail = {
            "asked": n,
            "new": len(children),
            "parents": [[a.id, b.id] for a, b in pairs],
            "scores": {cid: round(s, 4) for cid, s in fresh.items()},
        }
        return [ctx.candidates[cid] for cid in survivors], detail


class EvoPromptDE(EvoPrompt):
    """EvoPrompt DE: a trial per member from two donors and the best, kept only if better."""

    name = "evoprompt-de"
    min_popsize = 3

    def children_wanted(self, sizing: Sizing, population: Sequence[Candidate]) -> int:
        """One trial prompt per member."""
        return len(population)

    async def generation(
        self,
        ctx: SearchContext,
        number: int,
        population: list[Candidate],
        scores: dict[str, float],
        subset: Sequence[Example],
        sizing: Sizing,
        n: int,
    ) -> tuple[list[Candidate], dict[str, Any]]:
        """A trial prompt for each of the first `n` members, each replacing its member only if
        it scores higher on the shared subset."""
        # Every trial of a generation sees the population as it was at the start of the
        # generation (and the same best), so the trials can be asked for concurrently.
        best = population[0]
        trials: list[tuple[Candidate, Candidate, Candidate]] = []
        for i in range(n):
            d1, d2 = pick_donors(ctx.rng, len(population), i)
            trials.append((population[i], population[d1], population[d2]))
        sampling = self.sampling()
        asks = [
            ctx.ask(
                DE_META_PROMPT,
                1,
                sampling,
                donor_1=a.text,
                donor_2=b.text,
                best=best.text,
                member=x.text,
            )
            for x, a, b in trials
        ]
        children: dict[str, Candidate] = {}
        for (x, a, b), answers in zip(trials, await gather_all(ctx, asks), strict=True):
            # The member first, so that a lineage, which follows the first parent, walks back
            # through the prompt the trial would replace.
            parents = list(dict.fromkeys([x.id, a.id, b.id, best.id]))
            for raw in answers:
                child = ctx.accept_proposal(
                    final_answer(raw),
                    operator=f"{self.name}/mutate-crossover",
                    parents=parents,
                    feedback={
                        "generation": number,
                        "member": x.id,
                        "donors": [a.id, b.id],
                        "best": best.id,
                    },
                )
                if child is not None:
                    children[x.id] = child
        fresh = await fitness(ctx, list(children.values()), subset) if children else {}
        scores.update(fresh)
        replaced: dict[str, str] = {}
        nxt: list[Candidate] = []
        for member in population:
            child = children.get(member.id)
            if child is not None:
                won = replaces(scores[member.id], scores[child.id])
                ctx.event(
                    "de_trial",
                    generation=number,
                    member=member.id,
                    child=child.id,
                    member_score=round(scores[member.id], 4),
                    child_score=round(scores[child.id], 4),
                    replaced=won,
                )
                if won:
                    replaced[member.id] = child.id
                    nxt.append(child)
                    continue
            nxt.append(member)
        nxt = [ctx.candidates[cid] for cid in rank({c.id: scores[c.id] for c in nxt})]
        detail = {
            "asked": n,
            "new": len(children),
            "best": best.id,
            "replaced": replaced,
            "scores": {cid: round(s, 4) for cid, s in fresh.items()},
        }
        return nxt, detail


GA_INFO = StrategyInfo(
    name="evoprompt-ga",
    summary="EvoPrompt GA: a population of prompts bred by roulette-wheel parents, crossover "
    "then mutation by the optimizer, and survival of the best (Guo et al., 2024)",
    params=EvoPromptParams,
    build=lambda params: EvoPromptGA(params),
    presets=PRESETS,
)

DE_INFO = StrategyInfo(
    name="evoprompt-de",
    summary="EvoPrompt DE: each prompt is challenged by a trial built from where two others "
    "differ, the best, and itself; the trial replaces it only if better (Guo et al., 2024)",
    params=EvoPromptDEParams,
    build=lambda params: EvoPromptDE(params),
    presets=PRESETS,
)
