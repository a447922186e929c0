"""OPRO (Yang et al., 2023): a language model as the optimizer, over a scored trajectory.

Each step shows the optimizer model the best instructions found so far with their scores, in
ascending order so that the best comes last, together with a few random training examples, and
asks for a new instruction that differs from and beats all of them. Several proposals are
sampled per step at a high temperature, and every instruction is scored on one fixed subset of
the training data, so that the scores in the trajectory (and the ranking the engine receives)
all rest on the same examples.
"""

from __future__ import annotations

import math
from collections.abc import AsyncGenerator, Mapping, Sequence
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field

from promptopt.errors import UsageError
from promptopt.search.context import Candidate, Plan, SearchContext, StepReport, StrategyInfo
from promptopt.search.population import affordable, draw_subset, gather_all, rank
from promptopt.task.example import Example

META_PROMPT = "opro/propose"
OPERATOR = "opro"
# Characters of an example's input shown to the optimizer: enough to see the task, not so many
# that three long inputs crowd out the trajectory.
_EXEMPLAR_CHARS = 2000


class OPROParams(BaseModel):
    """OPRO's parameters; the meta-prompt's shape is the paper's, the steps fit small budgets."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    steps: int = Field(default=5, ge=1, description="optimization steps, one meta-prompt each")
    proposals_per_step: int = Field(
        default=8, ge=1, description="instructions sampled from the meta-prompt per step"
    )
    top_instructions: int = Field(
        default=20, ge=1, description="best past instructions shown with their scores"
    )
    exemplars: int = Field(
        default=3, ge=0, description="random training examples shown in each meta-prompt"
    )
    temperature: float | None = Field(
        default=1.0, ge=0, description="optimizer temperature for proposals (null: the model's)"
    )
    eval_examples: int | None = Field(
        default=None,
        ge=1,
        description="training examples every instruction is scored on, a subset drawn once "
        "(null: all of train, shrunk to fit the target budget)",
    )
    min_eval_examples: int = Field(
        default=16,
        ge=1,
        description="the smallest subset the automatic eval_examples shrinks to; below it, "
        "fewer proposals are made instead",
    )


@dataclass(frozen=True)
class Sizing:
    """What a search does within its budgets: the evaluation subset's size, the steps, the
    proposals asked per step, and the proposals asked in all (the last step may ask fewer)."""

    eval_examples: int
    steps: int
    proposals_per_step: int
    proposals: int


def size_search(
    params: OPROParams, train: int, target_left: int | None, optimizer_left: int | None
) -> Sizing:
    """Fit the search to its budgets so that every proposal asked for can be scored.

    Args:
        params: The strategy's parameters.
        train: How many training examples there are.
        target_left: Target calls the search may make (None: uncapped).
        optimizer_left: Optimizer calls the search may make (None: uncapped).

    Returns:
        The sizing. The initial prompt and every proposal are scored on `eval_examples`
        examples, so at most `eval_examples * (1 + proposals)` target calls are made; when
        even one proposal cannot be scored, `steps` is 0.
    """
    if train == 0:
        return Sizing(0, 0, 0, 0)
    wanted = params.steps * params.proposals_per_step
    if optimizer_left is not None:
        wanted = min(wanted, max(0, optimizer_left))
    size = min(params.eval_examples or train, train)
    if target_left is not None:
        if params.eval_examples is None and wanted:
            # Shrink the subset before the number of proposals: OPRO gains from many scored
            # instructions in its trajectory, but only down to a subset that still tells
            # instructions apart.
            share = target_left // (1 + wanted)
            size = max(min(params.min_eval_examples, train), min(train, share))
        wanted = min(wanted, max(0, (target_left - size) // size))
    per_step = min(params.proposals_per_step, wanted)
    steps = math.ceil(wanted / per_step) if per_step else 0
    return Sizing(size, steps, per_step, wanted)


def score_100(score: float) -> int:
    """A mean score in [0, 1] as the integer from 0 to 100 the optimizer is shown."""
    return math.floor(score * 100 + 0.5)


def format_trajectory(entries: Sequence[tuple[Candidate, float]]) -> str:
    """Instructions with their scores, in the order given (ascending, for the meta-prompt)."""
    return "\n\n".join(
        f"Instruction: {cand.text}\nScore: {score_100(score)}" for cand, score in entries
    )


def format_exemplars(examples: Sequence[Example], ctx: SearchContext) -> str:
    """Training examples as the optimizer sees them: the input and the expected answer."""
    if not examples:
        return "(none shown)"
    return "\n\n".join(
        f"Input: {ctx.render_input(e)[:_EXEMPLAR_CHARS]}\nExpected answer: {e.target}"
        for e in examples
    )


class OPRO:
    """The OPRO strategy."""

    def __init__(self, params: OPROParams) -> None:
        self.params = params

    def plan(self, sizes: Mapping[str, int]) -> Plan:
        """The most calls OPRO makes with these parameters and split sizes, before any cap."""
        sizing = size_search(self.params, sizes.get("train", 0), None, None)
        return Plan(
            target_calls=sizing.eval_examples * (1 + sizing.proposals),
            optimizer_calls=sizing.proposals,
        )

    def trajectory(
        self, scores: Mapping[str, float], ctx: SearchContext
    ) -> list[tuple[Candidate, float]]:
        """The best `top_instructions` scored instructions, in ascending order of score."""
        best = rank(scores)[: self.params.top_instructions]
        return [(ctx.candidates[cid], scores[cid]) for cid in reversed(best)]

    async def score_all(
        self, ctx: SearchContext, cands: Sequence[Candidate], subset: Sequence[Example]
    ) -> dict[str, float]:
        """Each candidate's mean score on the shared subset, scored concurrently."""
        results = await gather_all(ctx, [ctx.score(c, subset) for c in cands])
        return {
            c.id: sum(r.score for r in res) / len(res)
            for c, res in zip(cands, results, strict=True)
        }

    async def propose(
        self,
        ctx: SearchContext,
        n: int,
        shown: Sequence[tuple[Candidate, float]],
        step: int,
    ) -> list[Candidate]:
        """Ask for `n` new instructions from the trajectory and fresh random exemplars."""
        p = self.params
        train = list(ctx.train)
        exemplars = ctx.rng.sample(train, min(p.exemplars, len(train)))
        sampling = None if p.temperature is None else {"temperature": p.temperature}
        answers = await ctx.ask(
            META_PROMPT,
            n,
            sampling,
            trajectory=format_trajectory(shown),
            examples=format_exemplars(exemplars, ctx),
        )
        feedback = {
            "step": step,
            "trajectory": {c.id: score_100(s) for c, s in shown},
            "exemplars": [e.id for e in exemplars],
        }
        # Best first, so that a lineage (which follows the first parent) walks back through
        # the best instruction each proposal was asked to beat.
        parents = [c.id for c, _ in reversed(shown)]
        new: list[Candidate] = []
        for raw in answers:
            cand = ctx.accept_proposal(
                raw, operator=OPERATOR, parents=parents, feedback=dict(feedback)
            )
            if cand is not None:
                new.append(cand)
        return new

    async def search(
        self, ctx: SearchContext, initial: Candidate
    ) -> AsyncGenerator[StepReport, None]:
        """Score the initial prompt, then propose and score new instructions step by step."""
        p = self.params
        if not ctx.train:
            raise UsageError("opro needs training examples: give the task a data.train split")
        sizing = size_search(
            p, len(ctx.train), ctx.remaining_target_calls(), ctx.remaining_optimizer_calls()
        )
        subset = draw_subset(ctx, sizing.eval_examples)
        ctx.event(
            "opro_plan",
            eval_examples=len(subset),
            steps=sizing.steps,
            proposals_per_step=sizing.proposals_per_step,
            ids=[e.id for e in subset],
        )
        if sizing.steps == 0:
            ctx.event("search_stopped", reason="the budget cannot score a single proposal")
            return
        scores = await self.score_all(ctx, [initial], subset)
        left = sizing.proposals
        for step in range(1, sizing.steps + 1):
            n = affordable(ctx, min(sizing.proposals_per_step, left), len(subset))
            if n == 0:
                ctx.event("search_stopped", reason="the budget left cannot score a proposal")
                return
            left -= n
            shown = self.trajectory(scores, ctx)
            new = await self.propose(ctx, n, shown, step)
            fresh = await self.score_all(ctx, new, subset)
            scores.update(fresh)
            ranking = rank(scores)
            yield StepReport(
                f"step-{step}",
                tuple(ranking),
                scores[ranking[0]],
                {
                    "asked": n,
                    "new": len(new),
                    "eval_examples": len(subset),
                    "scores": {cid: round(s, 4) for cid, s in fresh.items()},
                },
            )


INFO = StrategyInfo(
    name="opro",
    summary="OPRO: the optimizer sees the best instructions so far with their scores and "
    "proposes better ones, each scored on the same training examples (Yang et al., 2023)",
    params=OPROParams,
    build=lambda params: OPRO(params),
)
