"""Plum (Pan et al., 2024): metaheuristics over phrase-level edits of the instruction.

The instruction is split into phrases (`promptopt.search.phrases`) and edited by four operators
drawn at random with the run's seeded rng: delete a phrase, swap two, paraphrase one with the
optimizer model (the only edit that costs an optimizer call), and add a phrase from a pool. The
pool is every phrase of every candidate seen so far, so it holds phrases that were deleted
(adding one back is how a deletion is undone) and the paraphrases the optimizer wrote (a good
wording found for one place can be tried in another). Each step makes `candidates_per_step`
edited candidates, one edit each, and scores them on one training subset drawn once, so every
comparison is paired. Four searches use them:

- `plum-hc`, hill climbing: move to the best neighbour when it scores higher than the current
  prompt; stop after `patience` steps without a move.
- `plum-sa`, simulated annealing: move to the best neighbour when it is better, and when it is
  worse by Δ with probability exp(-Δ/T), where T = t_max·exp(-i/decay) at step i (from 0).
- `plum-tabu`, tabu search: move to the best neighbour even when it is worse, but never make an
  edit in the tabu list (the `tabu_size` most recent moves, each with the edit that undoes it).
- `plum-ga`, a genetic algorithm without crossover: a population (the initial prompt and edits
  of it), parents chosen by tournament, children made by one edit each, and the next
  generation the `elitism` best parents plus the best children.

All of them keep every scored candidate in the ranking they report, so the best prompt ever
seen leads it whatever the walk did after finding it. Scores are means on [0, 1], so Δ and the
temperature are on that scale (a drop of 0.05 is one example in 20).
"""

from __future__ import annotations

import math
import random
import re
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import AsyncGenerator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from promptopt.errors import UsageError
from promptopt.search.context import (
    Candidate,
    Plan,
    SearchContext,
    StepReport,
    StrategyInfo,
    is_truncated,
    normalize_prompt,
)
from promptopt.search.extract import echo_pieces, extract_instruction
from promptopt.search.phrases import (
    OPERATORS,
    PARAPHRASE,
    Edit,
    Phrase,
    apply_edit,
    draw_edit,
    fit_paraphrase,
    phrase_key,
    render_edit,
    split_phrases,
)
from promptopt.search.population import (
    affordable,
    draw_subset,
    fitness,
    gather_all,
    rank,
    tournament_select,
)
from promptopt.task.example import Example

META_PROMPT = "plum/paraphrase"
# Draws of an edit for one child before its slot is left empty: an edit can fail (the phrase
# held a label, the edit gives a prompt already in the pool, the optimizer's answer was unusable).
_ATTEMPTS = 8
# A paraphrase may be this many times longer than its phrase (plus a margin for short ones);
# longer answers rewrote more than the phrase (small models often return a whole instruction).
_PARAPHRASE_GROWTH = 2
_PARAPHRASE_MARGIN = 40
# Markup in a paraphrase is a tag the model half-copied ("<PHRASE>", "</CLASSIFY>"), not wording.
_MARKUP = re.compile(r"</?[A-Za-z][^<>]*>?|<|>")


class PlumParams(BaseModel):
    """What every Plum search shares: steps, neighbours per step, the edits, the subset."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    steps: int = Field(default=8, ge=1, description="search steps (generations for plum-ga)")
    candidates_per_step: int = Field(
        default=6, ge=1, description="edited candidates made and scored per step (5-10 in Plum)"
    )
    operators: tuple[str, ...] = Field(
        default=OPERATORS,
        description="edit operators drawn from: " + ", ".join(OPERATORS),
    )
    min_words: int = Field(
        default=3, ge=1, description="clauses with fewer words join a neighbouring phrase"
    )
    temperature: float | None = Field(
        default=1.0, ge=0, description="optimizer temperature for paraphrases (null: the model's)"
    )
    eval_examples: int | None = Field(
        default=None,
        ge=1,
        description="training examples every candidate is scored on, a subset drawn once "
        "(null: all of train, shrunk to fit the target budget)",
    )
    min_eval_examples: int = Field(
        default=16,
        ge=1,
        description="the smallest subset the automatic eval_examples shrinks to; below it, "
        "fewer candidates are made instead",
    )

    @field_validator("operators")
    @classmethod
    def _known_operators(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        unknown = [op for op in value if op not in OPERATORS]
        if unknown:
            raise ValueError(
                f"unknown operator(s) {', '.join(unknown)}; choose from: {', '.join(OPERATORS)}"
            )
        if not value:
            raise ValueError("at least one operator is needed")
        return tuple(dict.fromkeys(value))


class HillClimbingParams(PlumParams):
    """Hill climbing over phrase edits."""

    patience: int = Field(
        default=3, ge=1, description="steps without a better neighbour before stopping (2-7)"
    )


class AnnealingParams(PlumParams):
    """Simulated annealing over phrase edits."""

    t_max: float = Field(
        default=0.05,
        gt=0,
        description="starting temperature, on the scale of mean scores in [0, 1]",
    )
    decay: float = Field(default=4.0, gt=0, description="K in T = t_max * exp(-step / K), in steps")


class TabuParams(PlumParams):
    """Tabu search over phrase edits."""

    tabu_size: int = Field(
        default=5, ge=0, description="recent moves whose edits (and their undoing) are tabu"
    )


class GeneticParams(PlumParams):
    """A genetic algorithm without crossover over phrase edits."""

    steps: int = Field(default=5, ge=1, description="generations after the first")
    population: int = Field(
        default=4, ge=1, description="members per generation (the first: the initial + edits)"
    )
    tournament_size: int = Field(
        default=3, ge=1, description="members drawn per tournament (3-5 in Plum)"
    )
    elitism: int = Field(
        default=1, ge=0, description="best members carried into the next generation unchanged"
    )

    @model_validator(mode="after")
    def _elites_fit(self) -> GeneticParams:
        if self.elitism > self.population:
            raise ValueError("elitism cannot exceed the population")
        return self


PRESETS: dict[str, dict[str, Any]] = {
    # About 200 target calls (12 edits on 16 examples) and at most 12 optimizer calls.
    "light": {"steps": 3, "candidates_per_step": 4, "eval_examples": 16},
    # The paper's neighbourhood (10 per step) over more steps, for budgets in the thousands.
    "paper": {"steps": 15, "candidates_per_step": 10},
}
GA_PRESETS: dict[str, dict[str, Any]] = {
    "light": {"steps": 3, "candidates_per_step": 3, "population": 3, "eval_examples": 16},
    "paper": {"steps": 10, "candidates_per_step": 10, "population": 10, "tournament_size": 5},
}


# --- the rules of the searches ---------------------------------------------------------------


def temperature(t_max: float, decay: float, step: int) -> float:
    """The annealing temperature at step `step` (from 0): t_max·exp(-step/decay)."""
    return t_max * math.exp(-step / decay)


def acceptance_probability(delta: float, temp: float) -> float:
    """How likely a move that lowers the score by `delta` is accepted at temperature `temp`:
    1 for a move that does not lower it, exp(-delta/temp) for one that does (0 at temp 0)."""
    if delta <= 0:
        return 1.0
    if temp <= 0:
        return 0.0
    return math.exp(-delta / temp)


def accept_move(rng: random.Random, delta: float, temp: float) -> tuple[bool, float]:
    """Whether the Metropolis rule accepts a move that lowers the score by `delta`, and the
    probability it had; the rng is drawn from only for a worse move."""
    p = acceptance_probability(delta, temp)
    if p >= 1.0:
        return True, p
    return rng.random() < p, p


class TabuList:
    """The most recent moves, each forbidding its edit and the edit that undoes it; when full,
    a new move pushes out the oldest."""

    def __init__(self, size: int) -> None:
        self._moves: deque[tuple[tuple[str, ...], ...]] = deque(maxlen=size)
        self.size = size

    def add(self, edit: Edit) -> None:
        """Remember a move made by `edit`."""
        if self.size == 0:
            return
        keys = [edit.key]
        inverse = edit.inverse_key
        if inverse is not None and inverse != edit.key:
            keys.append(inverse)
        self._moves.append(tuple(keys))

    def forbids(self, edit: Edit) -> bool:
        """Whether `edit` is tabu."""
        return any(edit.key in keys for keys in self._moves)

    def __len__(self) -> int:
        return len(self._moves)

    def to_json(self) -> list[list[str]]:
        """The tabu edits' keys, oldest move first."""
        return [list(key) for keys in self._moves for key in keys]


def next_generation(
    population: Sequence[str],
    children: Sequence[str],
    scores: Mapping[str, float],
    *,
    size: int,
    elitism: int,
) -> list[str]:
    """The GA's next population, best first: the `elitism` best members of `population`, then
    the best of `children`, then (when too few children were made) the best remaining members.

    Ties go to the older candidate (`rank`)."""
    parents = rank({m: scores[m] for m in population})
    chosen = parents[:elitism]
    fresh = rank({c: scores[c] for c in children if c not in chosen})
    chosen += fresh[: size - len(chosen)]
    chosen += [m for m in parents if m not in chosen][: size - len(chosen)]
    return rank({m: scores[m] for m in chosen})


# --- sizing ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Sizing:
    """What a search does within its target budget: the subset's size, the steps, the edited
    candidates per step and in all, and how many of them seed the GA's first generation."""

    eval_examples: int
    steps: int
    per_step: int
    children: int
    seeded: int = 0

    def to_json(self) -> dict[str, int]:
        """The sizing as `run --dry-run` shows it."""
        return {
            "eval_examples": self.eval_examples,
            "steps": self.steps,
            "candidates_per_step": self.per_step,
            "candidates": self.children,
            "first_generation_edits": self.seeded,
        }


def size_search(
    params: PlumParams, train: int, target_left: int | None, *, seeded: int = 0
) -> Sizing:
    """Fit a search to its target budget so that every edited candidate can be scored.

    The optimizer budget does not shrink the search: a paraphrase is one operator of four, and
    when the optimizer calls run out the others are drawn instead.

    Args:
        params: The search's parameters.
        train: How many training examples there are.
        target_left: Target calls the search may make (None: uncapped).
        seeded: Edited candidates made before the steps (the GA's first generation).

    Returns:
        The sizing; the initial prompt and every candidate are scored on `eval_examples`
        examples, so at most `eval_examples * (1 + children)` target calls are made.
    """
    if train == 0:
        return Sizing(0, 0, 0, 0)
    wanted = seeded + params.steps * params.candidates_per_step
    size = min(params.eval_examples or train, train)
    if target_left is not None:
        if params.eval_examples is None:
            # Shrink the subset before the walk: many small steps are what these searches
            # are, but only down to a subset that still tells two prompts apart.
            share = target_left // (1 + wanted)
            size = max(min(params.min_eval_examples, train), min(train, share))
        wanted = min(wanted, max(0, (target_left - size) // size))
    first = min(seeded, wanted)
    rest = wanted - first
    per_step = min(params.candidates_per_step, rest)
    steps = math.ceil(rest / per_step) if per_step else 0
    return Sizing(size, steps, per_step, wanted, first)


# --- making edited candidates ----------------------------------------------------------------


@dataclass(frozen=True)
class Child:
    """An edited candidate, the candidate it was edited from and the edit."""

    candidate: Candidate
    parent: Candidate
    edit: Edit


@dataclass
class _Slot:
    parent: Candidate
    phrases: list[Phrase]
    tried: set[tuple[str, ...]]
    edit: Edit | None = None
    child: Child | None = None
    revisits: list[Child] = field(default_factory=list)


Allowed = Callable[[Candidate, Edit], bool]


class PhraseSearch(ABC):
    """What the four searches share: sizing, the subset, and making and scoring edited
    candidates. A subclass implements `walk`."""

    name = "plum"
    seeded_members = 0

    def __init__(self, params: PlumParams) -> None:
        self.params = params
        # Paraphrase requests sent, as (prompt, phrase, wordings shown as tried): the same
        # request again would get the cached answer and still cost a call.
        self._asked: set[tuple[str, str, tuple[str, ...]]] = set()
        # The wordings the optimizer gave so far for a phrase of a prompt, shown when it is
        # asked again so that it writes another.
        self._wordings: dict[tuple[str, str], list[str]] = {}
        self._subset: frozenset[str] = frozenset()

    # plans

    def sizing(self, train: int, target_left: int | None) -> Sizing:
        """The search's sizing for a training split and target budget."""
        return size_search(self.params, train, target_left, seeded=self.seeded_members)

    def plan(self, sizes: Mapping[str, int]) -> Plan:
        """The most calls the search makes with these parameters and split sizes."""
        return self.plan_for_budget(sizes, None, None)

    def plan_for_budget(
        self, sizes: Mapping[str, int], target_calls: int | None, optimizer_calls: int | None
    ) -> Plan:
        """The most calls the search makes within these budgets: every candidate scored on the
        subset, and at most one paraphrase (one optimizer call) per candidate."""
        s = self.sizing(sizes.get("train", 0), target_calls)
        optimizer = s.children if PARAPHRASE in self.params.operators else 0
        if optimizer_calls is not None:
            optimizer = min(optimizer, max(0, optimizer_calls))
        return Plan(
            target_calls=s.eval_examples * (1 + s.children) if s.children else 0,
            optimizer_calls=optimizer,
            layout=s.to_json(),
            notes=(
                f"{self.name}: {s.steps} step(s) of {s.per_step} edited candidate(s)"
                + (f" after {s.seeded} for the first generation" if s.seeded else "")
                + f", each scored on the same {s.eval_examples} training examples",
            ),
        )

    # the search

    async def search(
        self, ctx: SearchContext, initial: Candidate
    ) -> AsyncGenerator[StepReport, None]:
        """Score the initial prompt, then walk (`walk`) as far as the budget allows."""
        if not ctx.train:
            raise UsageError(
                f"{self.name} needs training examples: give the task a data.train split"
            )
        self._asked = set()
        self._wordings = {}
        sizing = self.sizing(len(ctx.train), ctx.remaining_target_calls())
        subset = draw_subset(ctx, sizing.eval_examples)
        self._subset = frozenset(e.id for e in subset)
        ctx.event(
            "plum_plan",
            method=self.name,
            eval_examples=len(subset),
            steps=sizing.steps,
            candidates_per_step=sizing.per_step,
            first_generation=sizing.seeded,
            ids=[e.id for e in subset],
        )
        if sizing.children == 0:
            ctx.event("search_stopped", reason="the budget cannot score a single edit")
            return
        scores = await fitness(ctx, [initial], subset)
        async for report in self.walk(ctx, initial, subset, scores, sizing):
            yield report

    @abstractmethod
    def walk(
        self,
        ctx: SearchContext,
        initial: Candidate,
        subset: Sequence[Example],
        scores: dict[str, float],
        sizing: Sizing,
    ) -> AsyncGenerator[StepReport, None]:
        """The search proper, after the initial prompt was scored into `scores`."""

    def affordable(self, ctx: SearchContext, wanted: int, subset: Sequence[Example]) -> int:
        """How many of `wanted` candidates the target budget left can score; paraphrases are
        limited separately (`make_children`)."""
        return affordable(ctx, wanted, len(subset), optimizer_per_child=0)

    async def score(
        self,
        ctx: SearchContext,
        children: Sequence[Child],
        subset: Sequence[Example],
        scores: dict[str, float],
    ) -> dict[str, float]:
        """Score the children's candidates on the subset (a revisited one costs nothing) and
        add them to `scores`; returns the children's scores."""
        unique = list({c.candidate.id: c.candidate for c in children}.values())
        fresh = await fitness(ctx, unique, subset)
        scores.update(fresh)
        return fresh

    def report(
        self,
        name: str,
        scores: Mapping[str, float],
        fresh: Mapping[str, float],
        subset: Sequence[Example],
        **detail: Any,
    ) -> StepReport:
        """A step's report: every scored candidate ranked, the step's scores and `detail`."""
        ranking = rank(scores)
        return StepReport(
            name,
            tuple(ranking),
            scores[ranking[0]],
            {
                "eval_examples": len(subset),
                "scores": {cid: round(s, 4) for cid, s in fresh.items()},
                **detail,
            },
        )

    async def make_children(
        self,
        ctx: SearchContext,
        parents: Sequence[Candidate],
        allowed: Allowed = lambda parent, edit: True,
    ) -> list[Child]:
        """One new edited candidate per entry of `parents`, in that order (fewer when an
        entry's edits all fail), plus any existing candidates the edits led back to.

        Edits are drawn with the run's rng in parent order. An edit of the same parent already
        drawn this step is not drawn again (it would give the same prompt). A paraphrase
        request shows the wordings the optimizer already gave for the phrase, so that asking
        again gets another, and the same request is never sent twice (its answer would be the
        cached one); several paraphrases of one phrase in a step are samples of one request.
        Paraphrases are asked for together after the draws, as long as optimizer calls are
        left; one that is unusable is replaced by an edit that needs no model. An edit that
        gives a prompt already in the pool is kept as a neighbour with the scores it has, at
        no cost, and the entry's edits go on until one gives a new prompt: the number of new
        candidates is what the target budget was sized for.
        """
        optimizer_left = ctx.remaining_optimizer_calls()
        paraphrases_left = math.inf if optimizer_left is None else optimizer_left
        slots: list[_Slot] = []
        asked_before = set(self._asked)
        # Edits already drawn per parent this step: the same edit would make the same prompt.
        tried: dict[str, set[tuple[str, ...]]] = {}
        for parent in parents:
            phrases = split_phrases(parent.text, self.params.min_words)
            slot = _Slot(parent, phrases, tried.setdefault(parent.id, set()))
            slots.append(slot)
            wants_model = paraphrases_left > 0
            self._fill(ctx, slot, allowed, asked_before, with_model=wants_model)
            if slot.edit is not None:
                paraphrases_left -= 1
        await self._paraphrase(ctx, [s for s in slots if s.edit is not None])
        for slot in slots:
            if slot.child is None and slot.edit is not None:
                self._fill(ctx, slot, allowed, asked_before, with_model=False)
        return [c for s in slots for c in (*s.revisits, *([s.child] if s.child else []))]

    def _fill(
        self,
        ctx: SearchContext,
        slot: _Slot,
        allowed: Allowed,
        asked_before: set[tuple[str, str, tuple[str, ...]]],
        *,
        with_model: bool,
    ) -> None:
        """Draw edits for a slot until one gives a new candidate, or a paraphrase is drawn
        (left in `slot.edit` to be asked for), or the attempts run out."""
        operators = [op for op in self.params.operators if with_model or op != PARAPHRASE]
        pool = self._phrase_pool(ctx)
        slot.edit = None
        parent_key = normalize_prompt(slot.parent.text)

        def may(edit: Edit) -> bool:
            if edit.op == PARAPHRASE:
                return self._request(parent_key, edit) not in asked_before and allowed(
                    slot.parent, edit
                )
            return edit.key not in slot.tried and allowed(slot.parent, edit)

        for _ in range(_ATTEMPTS):
            edit = draw_edit(ctx.rng, slot.phrases, operators=operators, pool=pool, allowed=may)
            if edit is None:
                return
            if edit.op == PARAPHRASE:
                self._asked.add(self._request(parent_key, edit))
                slot.edit = edit
                return
            slot.tried.add(edit.key)
            if self._realize(ctx, slot, edit):
                return

    def _request(self, parent_key: str, edit: Edit) -> tuple[str, str, tuple[str, ...]]:
        """What identifies a paraphrase request: the prompt, the phrase, the wordings shown."""
        key = (parent_key, phrase_key(edit.phrases[0]))
        return (*key, tuple(self._wordings.get(key, ())))

    def _phrase_pool(self, ctx: SearchContext) -> list[str]:
        """Every phrase of every candidate so far (a phrase `add` may insert)."""
        seen: dict[str, str] = {}
        for cand in ctx.candidates.values():
            if cand.demos:
                continue
            for phrase in split_phrases(cand.text, self.params.min_words):
                seen.setdefault(phrase_key(phrase.text), phrase.text.strip())
        return list(seen.values())

    def _realize(self, ctx: SearchContext, slot: _Slot, edit: Edit) -> bool:
        """Make the candidate an edit of the slot's parent gives, and say whether it is new (in
        `slot.child`). An existing candidate with the same text, scored on the subset, goes to
        `slot.revisits`; nothing is kept when the edit changes nothing or the new prompt is
        refused (it no longer names a label)."""
        text = render_edit(apply_edit(slot.phrases, edit))
        key = normalize_prompt(text)
        if not text or key == normalize_prompt(slot.parent.text):
            return False
        for cand in ctx.candidates.values():
            if not cand.demos and normalize_prompt(cand.text) == key:
                if not self._subset <= set(cand.scores.get("train", {})):
                    # A prompt the pool held before this search, never scored on its subset:
                    # scoring it would cost calls the step was not sized for.
                    return False
                ctx.event(
                    "plum_revisit",
                    method=self.name,
                    id=cand.id,
                    parent=slot.parent.id,
                    edit=edit.to_json(),
                )
                slot.revisits.append(Child(cand, slot.parent, edit))
                return False
        new = ctx.add_candidate(
            text,
            parents=[slot.parent.id],
            operator=f"{self.name}/{edit.op}",
            feedback={"edit": edit.to_json()},
        )
        if new is None:
            return False
        slot.child = Child(new, slot.parent, edit)
        return True

    async def _paraphrase(self, ctx: SearchContext, slots: Sequence[_Slot]) -> None:
        """Ask for the slots' paraphrases, one request per (prompt, phrase) with a sample per
        slot, and turn the usable answers into candidates."""
        groups: dict[tuple[str, int], list[_Slot]] = {}
        for slot in slots:
            assert slot.edit is not None
            groups.setdefault((slot.parent.id, slot.edit.positions[0]), []).append(slot)
        if not groups:
            return
        p = self.params
        sampling = None if p.temperature is None else {"temperature": p.temperature}
        asks = []
        for members in groups.values():
            first = members[0]
            assert first.edit is not None
            tried = self._wordings.get(
                (normalize_prompt(first.parent.text), phrase_key(first.edit.phrases[0])), []
            )
            asks.append(
                ctx.ask(
                    META_PROMPT,
                    len(members),
                    sampling,
                    phrase=first.edit.phrases[0].strip(),
                    instruction=first.parent.text,
                    tried="\n".join(f"- {w}" for w in tried) or "(none yet)",
                )
            )
        answers = await gather_all(ctx, asks)
        literal = ctx.meta_prompts.get(META_PROMPT).literal_lines()
        operator = f"{self.name}/{PARAPHRASE}"
        for members, got in zip(groups.values(), answers, strict=True):
            for slot, raw in zip(members, got, strict=False):
                assert slot.edit is not None
                original = slot.edit.phrases[0]
                extraction = extract_instruction(
                    raw,
                    min_chars=2,
                    max_chars=_PARAPHRASE_GROWTH * len(original) + _PARAPHRASE_MARGIN,
                    echo_of=echo_pieces(literal, keep=[slot.parent.text]),
                    truncated=is_truncated(raw),
                )
                if not extraction.accepted:
                    ctx.reject(operator, extraction.reason or "rejected", extraction.message, raw)
                    continue
                new = fit_paraphrase(original, extraction.text)
                wordings = self._wordings.setdefault(
                    (normalize_prompt(slot.parent.text), phrase_key(original)), []
                )
                if new not in wordings:
                    wordings.append(new)
                if phrase_key(new) == phrase_key(original):
                    ctx.reject(operator, "unchanged", "the paraphrase repeats the phrase", raw)
                    continue
                if _MARKUP.search(new) and not _MARKUP.search(original):
                    ctx.reject(operator, "degenerate", "the paraphrase holds markup", raw)
                    continue
                edit = Edit(PARAPHRASE, slot.edit.positions, slot.edit.phrases, replacement=new)
                self._realize(ctx, slot, edit)


# --- the four searches -----------------------------------------------------------------------


def _best_child(children: Sequence[Child], scores: Mapping[str, float]) -> Child:
    """The best-scoring child (ties: the older candidate, then the first made)."""
    return min(
        enumerate(children),
        key=lambda ic: (-scores[ic[1].candidate.id], ic[1].candidate.id, ic[0]),
    )[1]


class HillClimbing(PhraseSearch):
    """Plum's hill climbing: move to the best neighbour when it improves; stop after
    `patience` steps without a move."""

    name = "plum-hc"

    def __init__(self, params: HillClimbingParams) -> None:
        super().__init__(params)
        self.patience = params.patience

    async def walk(
        self,
        ctx: SearchContext,
        initial: Candidate,
        subset: Sequence[Example],
        scores: dict[str, float],
        sizing: Sizing,
    ) -> AsyncGenerator[StepReport, None]:
        """Climb from the initial prompt."""
        current = initial
        stale = 0
        left = sizing.children
        for step in range(1, sizing.steps + 1):
            n = self.affordable(ctx, min(sizing.per_step, left), subset)
            if n == 0:
                ctx.event("search_stopped", reason="the budget left cannot score an edit")
                return
            left -= n
            children = await self.make_children(ctx, [current] * n)
            if not children:
                ctx.event("search_stopped", reason="no edit of the current prompt applies")
                return
            fresh = await self.score(ctx, children, subset, scores)
            best = _best_child(children, scores)
            moved = scores[best.candidate.id] > scores[current.id]
            ctx.event(
                "plum_move" if moved else "plum_stay",
                method=self.name,
                current=current.id,
                best_neighbour=best.candidate.id,
                score=round(scores[current.id], 4),
                neighbour_score=round(scores[best.candidate.id], 4),
            )
            previous = current.id
            if moved:
                current, stale = best.candidate, 0
            else:
                stale += 1
            yield self.report(
                f"step-{step}",
                scores,
                fresh,
                subset,
                current=current.id,
                previous=previous,
                moved=moved,
                stale=stale,
            )
            if stale >= self.patience:
                ctx.event(
                    "search_stopped",
                    reason=f"no better neighbour for {stale} step(s) (patience {self.patience})",
                )
                return


class SimulatedAnnealing(PhraseSearch):
    """Plum's simulated annealing: the best neighbour is accepted when better, and when worse
    by Δ with probability exp(-Δ/T), T = t_max·exp(-i/decay)."""

    name = "plum-sa"

    def __init__(self, params: AnnealingParams) -> None:
        super().__init__(params)
        self.t_max = params.t_max
        self.decay = params.decay

    async def walk(
        self,
        ctx: SearchContext,
        initial: Candidate,
        subset: Sequence[Example],
        scores: dict[str, float],
        sizing: Sizing,
    ) -> AsyncGenerator[StepReport, None]:
        """Anneal from the initial prompt."""
        current = initial
        left = sizing.children
        for step in range(1, sizing.steps + 1):
            n = self.affordable(ctx, min(sizing.per_step, left), subset)
            if n == 0:
                ctx.event("search_stopped", reason="the budget left cannot score an edit")
                return
            left -= n
            children = await self.make_children(ctx, [current] * n)
            if not children:
                ctx.event("search_stopped", reason="no edit of the current prompt applies")
                return
            fresh = await self.score(ctx, children, subset, scores)
            best = _best_child(children, scores)
            temp = temperature(self.t_max, self.decay, step - 1)
            delta = scores[current.id] - scores[best.candidate.id]
            accepted, p = accept_move(ctx.rng, delta, temp)
            # A neighbour that scores the same is a sideways move; it is taken, so the walk
            # can cross plateaus, which small subsets make common.
            ctx.event(
                "plum_move" if accepted else "plum_stay",
                method=self.name,
                current=current.id,
                best_neighbour=best.candidate.id,
                delta=round(delta, 4),
                temperature=round(temp, 6),
                probability=round(p, 4),
            )
            previous = current.id
            if accepted:
                current = best.candidate
            yield self.report(
                f"step-{step}",
                scores,
                fresh,
                subset,
                current=current.id,
                previous=previous,
                moved=accepted,
                temperature=round(temp, 6),
                probability=round(p, 4),
            )


class TabuSearch(PhraseSearch):
    """Plum's tabu search: move to the best neighbour not made by a tabu edit, even when it is
    worse; each move makes its edit (and the edit that undoes it) tabu for `tabu_size` moves."""

    name = "plum-tabu"

    def __init__(self, params: TabuParams) -> None:
        super().__init__(params)
        self.tabu_size = params.tabu_size

    async def walk(
        self,
        ctx: SearchContext,
        initial: Candidate,
        subset: Sequence[Example],
        scores: dict[str, float],
        sizing: Sizing,
    ) -> AsyncGenerator[StepReport, None]:
        """Walk from the initial prompt, the tabu list steering it away from recent moves."""
        tabu = TabuList(self.tabu_size)
        current = initial
        left = sizing.children
        for step in range(1, sizing.steps + 1):
            n = self.affordable(ctx, min(sizing.per_step, left), subset)
            if n == 0:
                ctx.event("search_stopped", reason="the budget left cannot score an edit")
                return
            left -= n
            children = await self.make_children(
                ctx, [current] * n, lambda parent, edit: not tabu.forbids(edit)
            )
            if not children:
                ctx.event("search_stopped", reason="every edit of the current prompt is tabu")
                return
            fresh = await self.score(ctx, children, subset, scores)
            best = _best_child(children, scores)
            tabu.add(best.edit)
            ctx.event(
                "plum_move",
                method=self.name,
                current=current.id,
                best_neighbour=best.candidate.id,
                delta=round(scores[current.id] - scores[best.candidate.id], 4),
                edit=best.edit.to_json(),
                tabu=tabu.to_json(),
            )
            previous, current = current.id, best.candidate
            yield self.report(
                f"step-{step}",
                scores,
                fresh,
                subset,
                current=current.id,
                previous=previous,
                moved=True,
                tabu=len(tabu),
            )


class GeneticSearch(PhraseSearch):
    """Plum's GA without crossover: tournament selection, one edit per child, elitism."""

    name = "plum-ga"

    def __init__(self, params: GeneticParams) -> None:
        super().__init__(params)
        self.population = params.population
        self.tournament_size = params.tournament_size
        self.elitism = params.elitism
        self.seeded_members = params.population - 1

    async def walk(
        self,
        ctx: SearchContext,
        initial: Candidate,
        subset: Sequence[Example],
        scores: dict[str, float],
        sizing: Sizing,
    ) -> AsyncGenerator[StepReport, None]:
        """Build the first generation from edits of the initial prompt, then breed."""
        population = [initial.id]
        fresh: dict[str, float] = {}
        if sizing.seeded:
            firsts = await self.make_children(ctx, [initial] * sizing.seeded)
            fresh = await self.score(ctx, firsts, subset, scores)
            population = rank({cid: scores[cid] for cid in [initial.id, *fresh]})
        ctx.event("plum_generation", method=self.name, generation=0, population=population)
        yield self.report("generation-0", scores, fresh, subset, population=population)
        left = sizing.children - sizing.seeded
        for gen in range(1, sizing.steps + 1):
            n = self.affordable(ctx, min(sizing.per_step, left), subset)
            if n == 0:
                ctx.event("search_stopped", reason="the budget left cannot score an edit")
                return
            left -= n
            weights = [scores[m] for m in population]
            picks = [
                population[tournament_select(ctx.rng, weights, self.tournament_size)]
                for _ in range(n)
            ]
            children = await self.make_children(ctx, [ctx.candidates[m] for m in picks])
            fresh = await self.score(ctx, children, subset, scores)
            population = next_generation(
                population,
                [c.candidate.id for c in children],
                scores,
                size=self.population,
                elitism=self.elitism,
            )
            ctx.event(
                "plum_generation",
                method=self.name,
                generation=gen,
                parents=picks,
                population=population,
            )
            yield self.report(
                f"generation-{gen}", scores, fresh, subset, population=population, parents=picks
            )


_SUMMARY = (
    "Plum phrase-edit {}: delete, swap, paraphrase or add phrases of the instruction, "
    "each edit scored on the same training examples (Pan et al., 2024)"
)

HC_INFO = StrategyInfo(
    name=HillClimbing.name,
    summary=_SUMMARY.format("hill climbing"),
    params=HillClimbingParams,
    build=lambda params: HillClimbing(params),
    presets=PRESETS,
)
SA_INFO = StrategyInfo(
    name=SimulatedAnnealing.name,
    summary=_SUMMARY.format("simulated annealing"),
    params=AnnealingParams,
    build=lambda params: SimulatedAnnealing(params),
    presets=PRESETS,
)
TABU_INFO = StrategyInfo(
    name=TabuSearch.name,
    summary=_SUMMARY.format("tabu search"),
    params=TabuParams,
    build=lambda params: TabuSearch(params),
    presets=PRESETS,
)
GA_INFO = StrategyInfo(
    name=GeneticSearch.name,
    summary=_SUMMARY.format("genetic algorithm without crossover"),
    params=GeneticParams,
    build=lambda params: GeneticSearch(params),
    presets=GA_PRESETS,
)
