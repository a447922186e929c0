"""The strategy registry: a plain dict from name to entry."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ValidationError

from promptopt.errors import UsageError
from promptopt.search.context import Strategy, StrategyInfo
from promptopt.search.strategies import (
    ape,
    apohf,
    demos,
    evoprompt,
    opro,
    plum,
    promptbreeder,
    protegi,
)

STRATEGIES: dict[str, StrategyInfo] = {
    ape.INFO.name: ape.INFO,
    protegi.INFO.name: protegi.INFO,
    opro.INFO.name: opro.INFO,
    demos.INFO.name: demos.INFO,
    evoprompt.GA_INFO.name: evoprompt.GA_INFO,
    evoprompt.DE_INFO.name: evoprompt.DE_INFO,
    apohf.INFO.name: apohf.INFO,
    plum.HC_INFO.name: plum.HC_INFO,
    plum.SA_INFO.name: plum.SA_INFO,
    plum.TABU_INFO.name: plum.TABU_INFO,
    plum.GA_INFO.name: plum.GA_INFO,
    promptbreeder.INFO.name: promptbreeder.INFO,
}


def strategy_info(name: str) -> StrategyInfo:
    """The entry for a strategy name; an unknown name lists the valid ones."""
    try:
        return STRATEGIES[name]
    except KeyError:
        raise UsageError(
            f"unknown strategy {name!r}; choose one of: {', '.join(sorted(STRATEGIES))}"
        ) from None


def resolve_params(info: StrategyInfo, params: Mapping[str, Any]) -> BaseModel:
    """Validate parameters; a `preset` key names one of the strategy's presets, which the
    remaining keys override."""
    values = dict(params)
    preset = values.pop("preset", None)
    if preset is not None:
        if preset not in info.presets:
            valid = ", ".join(sorted(info.presets)) or "none"
            raise UsageError(
                f"search.params.preset: {info.name} has no preset {preset!r} ({valid})"
            )
        values = {**info.presets[preset], **values}
    try:
        return info.params.model_validate(values)
    except ValidationError as exc:
        problems = "; ".join(
            f"search.params.{'.'.join(str(x) for x in e['loc'])}: {e['msg']}" for e in exc.errors()
        )
        raise UsageError(f"{info.name}: {problems}") from None


def make_strategy(name: str, params: Mapping[str, Any]) -> tuple[Strategy, BaseModel]:
    """Build a strategy from its name and raw parameters."""
    info = strategy_info(name)
    validated = resolve_params(info, params)
    return info.build(validated), validated
