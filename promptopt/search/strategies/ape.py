"""APE (Zhou et al., 2023): instruction induction from demonstrations, bandit selection that
spends little on bad candidates, then iterative Monte-Carlo resampling around the survivors.

Every selection scores its arms on the same examples, and the proposals, survivors, variations
and resampling rounds are sized at the start so that each selection can score every arm within
the budget (`APE.layout`).
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from promptopt.search.context import Candidate, Plan, SearchContext, StepReport, StrategyInfo
from promptopt.search.selection import (
    SELECTORS,
    fit_layout,
    ladder,
    make_selector,
    min_evidence,
    select_paired,
)
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


@dataclass(frozen=True)
class Layout:
    """APE's parameters sized to a budget, and the worst case of what they spend."""

    subsamples: int
    proposals: int
    """Proposals asked per demonstration set and mode."""
    resample_rounds: int
    top_k: int
    variations: int
    per_arm: int
    """Examples every arm of a selection can be scored on at least."""
    selection_budget: int
    """Target calls planned for each selection (a later one may get more if earlier ones
    spent less)."""
    target_calls: int
    optimizer_calls: int
    fits: bool
    """Whether the budget covers this plan; when not even the smallest plan fits, the search
    runs it anyway and each selection gets what is left."""

    def sizes(self) -> dict[str, int]:
        """The sizes in effect, as `fit_layout` weighs them (rounds counted as phases)."""
        return {
            "subsamples": self.subsamples,
            "proposals": self.proposals,
            "phases": self.resample_rounds + 1,
            "top_k": self.top_k,
            "variations": self.variations,
        }

    def params(self) -> dict[str, int]:
        """The sized values as APE parameters."""
        return {
            "num_subsamples": self.subsamples,
            "proposals_per_subsample": self.proposals,
            "resample_rounds": self.resample_rounds,
            "top_k": self.top_k,
            "variations": self.variations,
        }

    def to_json(self) -> dict[str, Any]:
        """As recorded in the "plan" event and shown by `run --dry-run --json`."""
        return {
            **self.params(),
            "per_arm": self.per_arm,
            "selection_budget": self.selection_budget,
            "target_calls": self.target_calls,
            "optimizer_calls": self.optimizer_calls,
            "fits": self.fits,
        }

    def describe(self) -> str:
        """One line for `run --dry-run`."""
        text = (
            f"ape plan: {self.subsamples} demonstration sets x {self.proposals} proposals, "
            f"{self.resample_rounds} resampling rounds of {self.variations} variations around "
            f"the top {self.top_k}, {self.selection_budget} target calls per selection (at "
            f"least {self.per_arm} examples per candidate)"
        )
        if not self.fits:
            text += "; the budget is too small even for this plan, selection gets what is left"
        return text


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
        return self.plan_for_budget(sizes, None, None)

    def plan_for_budget(
        self, sizes: Mapping[str, int], target_calls: int | None, optimizer_calls: int | None
    ) -> Plan:
        """The most calls APE makes when sized to these search budgets (see `layout`)."""
        layout = self.layout(sizes.get("train", 0), target_calls, optimizer_calls)
        return Plan(
            target_calls=layout.target_calls,
            optimizer_calls=layout.optimizer_calls,
            layout=layout.to_json(),
            notes=(layout.describe(),),
        )

    def layout(self, train: int, target_calls: int | None, optimizer_calls: int | None) -> Layout:
        """The parameters sized so that every selection can score every arm.

        Each selection (the proposals, then each resampling round) gets an equal share of the
        target calls, which must give every arm of its pool at least `per_arm` examples (one
        pull of `batch`, at most `MIN_EVIDENCE`); the proposals and variations must fit the
        optimizer calls. What does not fit is shrunk together (`fit_layout`); only when nothing
        fits is `per_arm` lowered, down to 1.

        Args:
            train: Training examples.
            target_calls: Target calls the search may make, or None when uncapped.
            optimizer_calls: Optimizer calls the search may make, or None when uncapped.
        """
        p = self.params
        options = {
            "subsamples": ladder(p.num_subsamples),
            "proposals": ladder(p.proposals_per_subsample),
            "phases": ladder(p.resample_rounds + 1),
            "top_k": ladder(p.top_k),
            "variations": ladder(p.variations),
        }

        def sized(o: Mapping[str, int], per_arm: int) -> Layout:
            return self._layout(
                train,
                o["subsamples"],
                o["proposals"],
                o["phases"] - 1,
                o["top_k"],
                o["variations"],
                per_arm,
                target_calls,
                optimizer_calls,
            )

        def assess(per_arm: int) -> Callable[[Mapping[str, int]], Mapping[str, int] | None]:
            def effect(o: Mapping[str, int]) -> Mapping[str, int] | None:
                layout = sized(o, per_arm)
                return layout.sizes() if layout.fits else None

            return effect

        for per_arm in ladder(min_evidence(p.batch, train)):
            chosen = fit_layout(options, assess(per_arm))
            if chosen is not None:
                return sized(chosen, per_arm)
        return self._layout(train, 1, 1, 0, 1, 1, 1, target_calls, optimizer_calls)

    def _layout(
        self,
        train: int,
        subsamples: int,
        proposals: int,
        rounds: int,
        top_k: int,
        variations: int,
        per_arm: int,
        target: int | None,
        optimizer: int | None,
    ) -> Layout:
        """The worst case of one choice of sizes, and whether it fits."""
        p = self.params
        asked = subsamples * proposals * len(self._modes())
        pools = [1 + asked]
        survivors = min(top_k, pools[0])
        asks = asked
        for _ in range(rounds):
            asks += survivors * variations
            pools.append(survivors * (1 + variations))
            survivors = min(top_k, pools[-1])
        selection = p.selection_budget
        if target is not None:
            selection = min(selection, target // len(pools))
        need = max((n * per_arm for n in pools if n >= 2), default=0)
        fits = selection >= need and (optimizer is None or asks <= optimizer)
        return Layout(
            subsamples=subsamples,
            proposals=proposals,
            resample_rounds=rounds,
            # Survivors beyond what the proposals can fill are not in effect.
            top_k=min(top_k, asked + 1),
            variations=variations,
            per_arm=per_arm,
            selection_budget=selection,
            target_calls=sum(min(selection, n * train) for n in pools if n >= 2),
            optimizer_calls=asks,
            fits=fits,
        )

    async def _propose(
        self, ctx: SearchContext, initial: Candidate, p: APEParams | None = None
    ) -> list[Candidate]:
        p = self.params if p is None else p
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

    async def _select(
        self, ctx: SearchContext, pool: list[Candidate], budget: int, keep: int
    ) -> list[Candidate]:
        """The whole pool, best first, as the bandit ranks it within `budget` target calls,
        every arm scored on the same examples; the first `keep` are the survivors."""
        p = self.params
        chosen = await select_paired(
            ctx, pool, keep, selector=make_selector(p.selector, batch=p.batch), budget=budget
        )
        return list(chosen.ranking)

    def _selection_budget(self, ctx: SearchContext, selections_left: int) -> int:
        """This selection's share of what is left, equal with the selections still to come."""
        p = self.params
        remaining = ctx.remaining_target_calls()
        if remaining is None:
            return p.selection_budget
        return max(0, min(p.selection_budget, remaining // selections_left))

    async def search(
        self, ctx: SearchContext, initial: Candidate
    ) -> AsyncGenerator[StepReport, None]:
        """Propose, select, then resample around the survivors for a few rounds."""
        layout = self.layout(
            len(ctx.train), ctx.remaining_target_calls(), ctx.remaining_optimizer_calls()
        )
        ctx.event("plan", strategy="ape", **layout.to_json())
        p = self.params.model_copy(update=layout.params())
        proposals = await self._propose(ctx, initial, p)
        pool = [initial, *proposals]
        yield StepReport("propose", tuple(c.id for c in pool), None, {"new": len(proposals)})
        ranking = await self._select(
            ctx, pool, self._selection_budget(ctx, 1 + p.resample_rounds), p.top_k
        )
        survivors = ranking[: p.top_k]
        # The engine gets the selector's whole ranking, so that its dev gate can take more
        # finalists than top_k.
        yield _report("select", ranking)
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
            budget = self._selection_budget(ctx, 1 + p.resample_rounds - round_no)
            ranking = await self._select(ctx, survivors + fresh, budget, p.top_k)
            survivors = ranking[: p.top_k]
            yield _report(f"select-{round_no}", ranking)


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
