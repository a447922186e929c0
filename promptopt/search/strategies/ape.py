"""APE (Zhou et al., 2023): instruction induction from demonstrations, bandit selection that
spends little on bad candidates, then iterative Monte-Carlo resampling around the survivors."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Mapping, Sequence
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from promptopt.search.context import Candidate, Plan, SearchContext, StepReport, StrategyInfo
from promptopt.search.selection import SELECTORS, keep_count, make_selector
from promptopt.task.example import Example


class APEParams(BaseModel):
    """APE's parameters; the defaults fit a budget of a few hundred target calls."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    mode: Literal["forward", "insert", "both"] = Field(
        default="forward", description="meta-prompt template: instruction after or inside demos"
    )
    num_demos: int = Field(default=5, ge=1, description="demonstrations shown per proposal")
    num_subsamples: int = Field(default=3, ge=1, description="demonstration sets drawn")
    proposals_per_subsample: int = Field(default=4, ge=1, description="samples per set")
    selector: str = Field(default="ucb", description="bandit used to choose survivors")
    batch: int = Field(default=8, ge=1, description="training examples per bandit pull")
    selection_budget: int = Field(default=160, ge=1, description="target calls per selection phase")
    top_k: int = Field(default=3, ge=1, description="survivors kept after each selection")
    resample_rounds: int = Field(default=2, ge=0, description="Monte-Carlo resampling rounds")
    variations: int = Field(default=2, ge=1, description="variations asked per survivor")

    @field_validator("selector")
    @classmethod
    def _known_selector(cls, value: str) -> str:
        if value not in SELECTORS:
            raise ValueError(f"unknown selector {value!r}; choose one of: {', '.join(SELECTORS)}")
        return value


def format_demos(examples: Sequence[Example], render: object) -> str:
    """Input/output pairs as shown to the optimizer."""
    assert callable(render)
    return "\n\n".join(f"Input: {render(e)}\nOutput: {e.target}" for e in examples)


class APE:
    """The APE strategy."""

    def __init__(self, params: APEParams) -> None:
        self.params = params

    def _modes(self) -> list[str]:
        return ["forward", "insert"] if self.params.mode == "both" else [self.params.mode]

    def plan(self, sizes: Mapping[str, int]) -> Plan:
        """The most calls APE makes with these parameters."""
        p = self.params
        optimizer = p.num_subsamples * p.proposals_per_subsample * len(self._modes())
        optimizer += p.resample_rounds * p.top_k * p.variations
        target = (1 + p.resample_rounds) * p.selection_budget
        return Plan(target_calls=target, optimizer_calls=optimizer)

    async def _propose(self, ctx: SearchContext, initial: Candidate) -> list[Candidate]:
        p = self.params
        new: list[Candidate] = []
        train = list(ctx.train)
        for _ in range(p.num_subsamples):
            demos = ctx.rng.sample(train, min(p.num_demos, len(train)))
            text = format_demos(demos, ctx.render_input)
            for mode in self._modes():
                answers = await ctx.ask(f"ape/{mode}", p.proposals_per_subsample, demos=text)
                for raw in answers:
                    cand = ctx.accept_proposal(
                        raw,
                        operator=f"ape-{mode}",
                        feedback={"demos": [e.id for e in demos]},
                    )
                    if cand is not None:
                        new.append(cand)
        return new

    async def _select(self, ctx: SearchContext, pool: list[Candidate]) -> list[Candidate]:
        """Keep the top_k of the pool, spending little on bad candidates."""
        p = self.params
        budget = p.selection_budget
        remaining = ctx.remaining_target_calls()
        if remaining is not None:
            budget = min(budget, remaining)
        streams: list[list[Example]] = []
        for cand in pool:
            unseen = [e for e in ctx.train if e.id not in cand.scores.get("train", {})]
            ctx.rng.shuffle(unseen)
            streams.append(unseen)

        async def pull(arm: int, size: int) -> list[float]:
            batch, streams[arm] = streams[arm][:size], streams[arm][size:]
            if not batch:
                return []
            return [r.score for r in await ctx.score(pool[arm], batch)]

        selection = await make_selector(p.selector, batch=p.batch).select(
            len(pool), keep_count(p.top_k, len(pool)), pull, budget, ctx.rng
        )
        ctx.event("selection", pulls={pool[i].id: n for i, n in enumerate(selection.pulls)})
        # Rank on all the training evidence each candidate has, not only this phase's.
        ranked = sorted(
            pool,
            key=lambda c: (c.mean("train") if c.n("train") else -1.0, c.n("train")),
            reverse=True,
        )
        return ranked[: p.top_k]

    async def search(
        self, ctx: SearchContext, initial: Candidate
    ) -> AsyncGenerator[StepReport, None]:
        """Propose, select, then resample around the survivors for a few rounds."""
        p = self.params
        proposals = await self._propose(ctx, initial)
        pool = [initial, *proposals]
        yield StepReport("propose", tuple(c.id for c in pool), None, {"new": len(proposals)})
        survivors = await self._select(ctx, pool)
        yield _report("select", survivors)
        for round_no in range(1, p.resample_rounds + 1):
            fresh: list[Candidate] = []
            for parent in survivors:
                for raw in await ctx.ask("ape/resample", p.variations, instruction=parent.text):
                    cand = ctx.accept_proposal(raw, operator="ape-resample", parents=[parent.id])
                    if cand is not None:
                        fresh.append(cand)
            yield StepReport(
                f"resample-{round_no}",
                tuple(c.id for c in survivors + fresh),
                None,
                {"new": len(fresh)},
            )
            survivors = await self._select(ctx, survivors + fresh)
            yield _report(f"select-{round_no}", survivors)


def _report(name: str, ranked: list[Candidate]) -> StepReport:
    best = ranked[0].mean("train") if ranked else None
    return StepReport(name, tuple(c.id for c in ranked), best)


INFO = StrategyInfo(
    name="ape",
    summary="APE: induce instructions from demonstrations, keep the best with a bandit, "
    "resample variations around the survivors (Zhou et al., 2023)",
    params=APEParams,
    build=lambda params: APE(params),
)
