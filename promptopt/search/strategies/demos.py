"""Few-shot demonstrations alone: the instruction stays as given, only demonstration sets are
searched (`promptopt.search.demos`), and no optimizer model is called.

The task's `prompt.demos` sets k, the number of sets and their source; the strategy's own
parameters override it, so that a task with a plain prompt can use the strategy too.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Mapping

from pydantic import BaseModel, ConfigDict, Field

from promptopt.errors import UsageError
from promptopt.search.context import Candidate, Plan, SearchContext, StepReport, StrategyInfo
from promptopt.search.demos import DEMOS_STRATEGY, search_demos, size_demo_search
from promptopt.task.prompt import FEW_DEMO_SETS, MANY_DEMO_SETS, MAX_DEMOS, DemoSource, DemosSpec

NAME = DEMOS_STRATEGY
DEFAULT_K = 4


class DemosParams(BaseModel):
    """The demonstration search's parameters; unset ones come from the task's `prompt.demos`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    k: int | None = Field(
        default=None,
        ge=1,
        le=MAX_DEMOS,
        description=f"demonstrations per prompt (null: prompt.demos.k, else {DEFAULT_K})",
    )
    candidates: int | None = Field(
        default=None,
        ge=1,
        description="demonstration sets tried (null: prompt.demos.candidates, else as many as "
        f"the budget scores on every comparison example, {FEW_DEMO_SETS} to {MANY_DEMO_SETS})",
    )
    source: DemoSource | None = Field(
        default=None,
        description="bootstrap or labelled (null: prompt.demos.source, else bootstrap)",
    )


def resolve_spec(params: DemosParams, task: DemosSpec | None) -> DemosSpec:
    """The settings the search uses: the strategy's parameters over the task's, over defaults."""
    base = task or DemosSpec(k=DEFAULT_K)
    update = {key: value for key, value in params.model_dump().items() if value is not None}
    return base.model_copy(update=update)


class DemosStrategy:
    """Searches demonstration sets for the initial instruction."""

    def __init__(self, params: DemosParams) -> None:
        self.params = params

    def plan(self, sizes: Mapping[str, int]) -> Plan:
        """The most calls the search makes for these split sizes, before any cap."""
        return self.plan_for_budget(sizes, None, None)

    def plan_for_budget(
        self, sizes: Mapping[str, int], target_calls: int | None, optimizer_calls: int | None
    ) -> Plan:
        """The plan within a target budget (the optimizer is never called). Without k in its
        parameters, the plan assumes the defaults; the search itself uses the task's."""
        sizing = size_demo_search(
            resolve_spec(self.params, None), sizes.get("train", 0), target_calls
        )
        return Plan(target_calls=sizing.target_calls, optimizer_calls=0, layout=sizing.to_json())

    async def search(
        self, ctx: SearchContext, initial: Candidate
    ) -> AsyncGenerator[StepReport, None]:
        """One step: demonstration sets for the initial instruction, ranked with it."""
        if not ctx.train:
            raise UsageError("demos needs training examples: give the task a data.train split")
        spec = resolve_spec(self.params, ctx.demos_spec)
        sizing = size_demo_search(spec, len(ctx.train), ctx.remaining_target_calls())
        report = await search_demos(ctx, initial, spec, sizing)
        if report is not None:
            yield report


INFO = StrategyInfo(
    name=NAME,
    summary="few-shot demonstrations only: sets bootstrapped from training examples the target "
    "answers correctly, ranked on the same examples, instruction unchanged",
    params=DemosParams,
    build=lambda params: DemosStrategy(params),
)
