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
from promptopt.search.demos import DEMOS_STRATEGY, search_demos, size_demo_search, step_spec
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
        description="demonstration sets tried (null: prompt.demos.candidates, else "
        f"{FEW_DEMO_SETS}, or under a target budget and no cost cap as many as the calls left "
        f"after bootstrapping score on every comparison example, up to {MANY_DEMO_SETS})",
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

    def __init__(
        self, params: DemosParams, task_demos: DemosSpec | None = None, cost_capped: bool = False
    ) -> None:
        self.params = params
        self.task_demos = task_demos
        self.cost_capped = cost_capped

    def for_run(self, demos: DemosSpec | None, cost_capped: bool) -> DemosStrategy:
        """The strategy for a run whose task has these `prompt.demos`, with or without a cost
        cap."""
        return DemosStrategy(self.params, demos, cost_capped)

    def spec(self, task: DemosSpec | None) -> DemosSpec:
        """The settings the search uses (`resolve_spec`). Under a cost cap an unset number of
        sets stays `FEW_DEMO_SETS`: the count grows with target calls, and dollars can run out
        before calls do, midway through the one comparison that decides."""
        spec = resolve_spec(self.params, task)
        return step_spec(spec) if self.cost_capped else spec

    def plan(self, sizes: Mapping[str, int]) -> Plan:
        """The most calls the search makes for these split sizes, before any cap."""
        return self.plan_for_budget(sizes, None, None)

    def plan_for_budget(
        self, sizes: Mapping[str, int], target_calls: int | None, optimizer_calls: int | None
    ) -> Plan:
        """The plan within a target budget (the optimizer is never called), for the task's
        `prompt.demos` when the run handed them over (`for_run`), else for the defaults."""
        sizing = size_demo_search(self.spec(self.task_demos), sizes.get("train", 0), target_calls)
        return Plan(target_calls=sizing.target_calls, optimizer_calls=0, layout=sizing.to_json())

    async def search(
        self, ctx: SearchContext, initial: Candidate
    ) -> AsyncGenerator[StepReport, None]:
        """One step: demonstration sets for the initial instruction, ranked with it."""
        if not ctx.train:
            raise UsageError("demos needs training examples: give the task a data.train split")
        # The task's prompt.demos as the run handed them over (and planned with), if it did.
        spec = self.spec(self.task_demos if self.task_demos is not None else ctx.demos_spec)
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
