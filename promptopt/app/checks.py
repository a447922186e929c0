"""Every check a run makes before it calls a model, as a list of located problems.

`validate`, `run --dry-run` and `run` share these checks, so that what validate accepts a run
does not refuse after making its folder: the strategy and its parameters, the metric (regex
compiled, python function imported and its signature), the models' providers and prices, and
the budget left for the final evaluation. Each problem names the task file, the field and its
line; a value that came from a command-line flag is reported under the flag.
"""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml
from pydantic import ValidationError

from promptopt.errors import Problem, PromptoptError
from promptopt.task.example import Example
from promptopt.task.locate import yaml_line
from promptopt.util import yamlcore

if TYPE_CHECKING:
    from promptopt.search.context import StrategyInfo
    from promptopt.task.loader import LoadedTask
    from promptopt.task.modelspec import ModelSpec

ROLES = ("target", "optimizer")


@dataclass(frozen=True)
class RunOverrides:
    """What the command line sets instead of the task file (None: the task's)."""

    strategy: str | None = None
    params: Mapping[str, Any] = field(default_factory=dict)
    target_calls: int | None = None
    max_cost: float | None = None
    finalists: int = 3
    models: frozenset[str] = frozenset()
    """The roles whose model a flag (--target, --optimizer) set."""


def run_problems(task: LoadedTask, overrides: RunOverrides | None = None) -> list[Problem]:
    """Every problem a run of `task` would hit before calling a model; empty when none."""
    overrides = overrides or RunOverrides()
    where = _Locator(task.path)
    problems = _strategy_problems(task, overrides, where)
    problems += _metric_problems(task, where)
    problems += _preference_problems(task, overrides, where)
    problems += _model_problems(task, overrides, where)
    problems += _budget_problems(task, overrides, where)
    return problems


class _Locator:
    """Lines of fields in the task file (None when the task was not read from a file)."""

    def __init__(self, path: Path) -> None:
        self.file = str(path)
        self._root: yaml.Node | None = None
        try:
            self._root = yamlcore.compose(path.read_text(encoding="utf-8-sig"))
        except (OSError, ValueError, yaml.YAMLError):
            # A task built in Python has no file, and a file may change after loading: the
            # problems are then reported without lines.
            self._root = None

    def problem(self, loc: tuple[str | int, ...], message: str) -> Problem:
        line = yaml_line(self._root, loc) if self._root is not None else None
        return Problem(self.file, ".".join(str(k) for k in loc), message, line)

    def flag(self, flag: str, message: str) -> Problem:
        return Problem(self.file, flag, message)


def _suggest(name: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(name, choices, n=1)
    return f"did you mean {close[0]!r}? " if close else ""


def _strategy_problems(task: LoadedTask, overrides: RunOverrides, where: _Locator) -> list[Problem]:
    from promptopt.search.strategies.registry import STRATEGIES

    own = task.spec.search.strategy
    name = overrides.strategy or own
    info = STRATEGIES.get(name)
    if info is None:
        names = sorted(STRATEGIES)
        message = (
            f"unknown strategy {name!r}; {_suggest(name, names)}"
            f"the strategies are {', '.join(names)} (promptopt strategies describes them)"
        )
        if overrides.strategy is not None:
            return [where.flag("--strategy", message)]
        return [where.problem(("search", "strategy"), message)]
    return _param_problems(info, task.spec.search.params, overrides, own, where)


def _param_problems(
    info: StrategyInfo,
    task_params: Mapping[str, Any],
    overrides: RunOverrides,
    own: str,
    where: _Locator,
) -> list[Problem]:
    cli = dict(overrides.params)
    values = {**task_params, **cli}
    preset = values.pop("preset", None)
    if preset is not None:
        if preset not in info.presets:
            valid = ", ".join(sorted(info.presets)) or "none"
            message = f"{info.name} has no preset {preset!r} (its presets: {valid})"
            if "preset" in cli:
                return [where.flag("--param preset", message)]
            return [where.problem(("search", "params", "preset"), message)]
        values = {**info.presets[preset], **values}
    try:
        info.params.model_validate(values)
    except ValidationError as exc:
        errors = exc.errors()
    else:
        return []
    known = sorted(info.params.model_fields)
    switched = overrides.strategy is not None and overrides.strategy != own
    foreign: list[str] = []
    problems: list[Problem] = []
    for error in errors:
        loc = tuple(error["loc"])
        key = str(loc[0]) if loc else ""
        if error["type"] == "extra_forbidden":
            if switched and key in task_params and key not in cli:
                foreign.append(key)
                continue
            message = (
                f"{info.name} has no parameter {key!r}; {_suggest(key, known)}"
                f"its parameters are {', '.join(known) or 'none'}"
            )
        else:
            message = f"{info.name}: {error['msg']}"
        if key in cli:
            problems.append(where.flag(f"--param {key}", message))
        else:
            problems.append(where.problem(("search", "params", *loc), message))
    if foreign:
        listed = ", ".join(sorted(foreign))
        problems.insert(
            0,
            where.problem(
                ("search", "params"),
                f"--strategy {info.name} replaces the task's strategy {own}, whose parameters "
                f"({listed}) {info.name} does not take: remove them from search.params or set "
                f"search.strategy: {info.name} in the task file",
            ),
        )
    return problems


PREFERENCE_FEEDBACK = ("judge", "human")
"""The feedback that needs no metric: a judge model's or a person's preferences."""


def _preference_problems(
    task: LoadedTask, overrides: RunOverrides, where: _Locator
) -> list[Problem]:
    """What a task without a metric needs: a preference search whose preferences come from a
    judge (with a rubric saying what makes an answer better) or from a person (--human), and
    no few-shot demonstrations (they are bootstrapped and chosen by the metric's scores)."""
    if task.spec.metric is not None or task.metric_function is not None:
        return []
    problems = _feedback_problems(task, overrides, where)
    if task.spec.prompt_layout().demos is not None:
        problems.append(
            where.problem(
                ("prompt", "demos"),
                "needs a metric: demonstrations are bootstrapped from answers the metric "
                "scores right and chosen by their scores, and the task has none; remove "
                "prompt.demos (or set its k to 0), or give the task a metric and expected "
                "answers",
            )
        )
    return problems


def _feedback_problems(task: LoadedTask, overrides: RunOverrides, where: _Locator) -> list[Problem]:
    """The preference feedback of a task without a metric: a judge with a rubric, or a
    person."""
    from promptopt.search.strategies.registry import STRATEGIES

    name = overrides.strategy or task.spec.search.strategy
    info = STRATEGIES.get(name)
    if info is None:  # reported with the strategy
        return []
    params = {**task.spec.search.params, **overrides.params}
    if "feedback" not in info.params.model_fields:
        return [
            where.problem(
                ("metric",),
                f"the task has no metric, and {name} needs scores; a task without expected "
                "answers is optimized by preferences: set search.strategy: apohf with "
                "search.params.feedback: judge and a search.params.rubric, or run it with "
                "--strategy apohf --human",
            )
        ]
    feedback = params.get("feedback", info.params.model_fields["feedback"].default)
    if feedback not in PREFERENCE_FEEDBACK:
        return [
            where.problem(
                ("search", "params", "feedback"),
                f"is {feedback}, but the task has no metric to prefer answers by: set it to "
                "judge (with a search.params.rubric) or run with --human",
            )
        ]
    if feedback == "judge" and not params.get("rubric"):
        return [
            where.problem(
                ("search", "params", "rubric"),
                "is needed: a task without a metric is judged by its rubric alone; say what "
                "makes one answer better than another (e.g. 'keeps the meaning, is polite, "
                "fits in one sentence')",
            )
        ]
    return []


def _metric_problems(task: LoadedTask, where: _Locator) -> list[Problem]:
    from promptopt.scoring.metrics import build_metric

    spec = task.spec.metric
    if task.metric_function is not None or spec is None:
        return []
    if spec.type == "python":
        return _python_metric_problems(task, where)
    if spec.type == "judge":
        # Its model is checked with the others; without one, the optimizer's (or the default
        # model a run picks) judges.
        return []
    try:
        build_metric(spec, base_dir=task.path.parent)
    except PromptoptError as exc:
        return [_located(where, "metric", str(exc))]
    return []


def _located(where: _Locator, section: str, message: str) -> Problem:
    """A problem from an error message that starts with its dotted field (`metric.pattern: …`)."""
    head, sep, rest = message.partition(": ")
    if sep and head.startswith(section + ".") and " " not in head:
        return where.problem(tuple(head.split(".")), rest)
    return where.problem((section,), message)


def _python_metric_problems(task: LoadedTask, where: _Locator) -> list[Problem]:
    from promptopt.util.user_code import load_function

    reference = (task.spec.metric.function if task.spec.metric else None) or ""
    file_part, sep, name = reference.rpartition(":")
    if not sep or not file_part or not name:
        return [
            where.problem(
                ("metric", "function"), f"{reference!r} must look like 'file.py:function'"
            )
        ]
    try:
        function = load_function(
            (task.path.parent / file_part).resolve(), name, what="metric.function"
        )
    except PromptoptError as exc:
        return [_located(where, "metric", str(exc))]
    try:
        inspect.signature(function).bind("output", Example(id="x", fields={}, targets=()))
    except TypeError:
        return [
            where.problem(
                ("metric", "function"),
                f"{name}{_signature(function)} must take two arguments, (output, example): "
                "the model's output (str) and the example (with .fields and .targets)",
            )
        ]
    except ValueError:  # no signature to inspect (a builtin): the call will tell
        return []
    return []


def _signature(function: Any) -> str:
    try:
        return str(inspect.signature(function))
    except (TypeError, ValueError):
        return "(...)"


def _model_problems(task: LoadedTask, overrides: RunOverrides, where: _Locator) -> list[Problem]:
    from promptopt.llm.pricing import price_for, unknown_price_text
    from promptopt.llm.providers.registry import PROVIDERS

    models = task.spec.models
    metric = task.spec.metric
    roles = [*ROLES, "judge"] if metric is not None and metric.type == "judge" else list(ROLES)
    cost_cap = (
        overrides.max_cost if overrides.max_cost is not None else task.spec.search.budget.cost_usd
    )
    problems: list[Problem] = []
    for role in roles:
        spec = getattr(models, role)
        if spec is None:
            continue

        def problem(message: str, role: str = role) -> Problem:
            if role in overrides.models:
                return where.flag(f"--{role}", message)
            return where.problem(("models", role), message)

        if spec.provider not in PROVIDERS:
            problems.append(
                problem(
                    f"unknown model provider {spec.provider!r} in {spec.model!r}; "
                    f"{_suggest(spec.provider, sorted(PROVIDERS))}"
                    f"the providers are {', '.join(sorted(PROVIDERS))}"
                )
            )
            continue
        if cost_cap is not None and price_for(spec, task.spec.prices or {}) is None:
            text = unknown_price_text(role, spec, cost_cap, from_flag=role in overrides.models)
            problems.append(problem(text))
        if spec.provider == "scripted":
            problems += _scripted_problems(task, spec, problem)
    if models.embedding is not None:
        problems += _embedding_problems(task, models.embedding, cost_cap, where)
    return problems


def _embedding_problems(
    task: LoadedTask, spec: ModelSpec, cost_cap: float | None, where: _Locator
) -> list[Problem]:
    """models.embedding must name a provider with embeddings, priced under a cost cap."""
    from promptopt.llm.pricing import price_for, unknown_price_text
    from promptopt.llm.providers.registry import EMBEDDERS, build_embedder

    def problem(message: str) -> Problem:
        return where.problem(("models", "embedding"), message)

    if spec.provider not in EMBEDDERS:
        return [
            problem(
                f"{spec.model!r} cannot embed: {spec.provider} has no embeddings endpoint; "
                f"providers that embed: {', '.join(sorted(EMBEDDERS))}"
            )
        ]
    problems: list[Problem] = []
    if cost_cap is not None and price_for(spec, task.spec.prices or {}) is None:
        problems.append(problem(unknown_price_text("embedding", spec, cost_cap)))
    if spec.provider == "scripted":
        try:
            build_embedder(spec, base_dir=task.path.parent)
        except PromptoptError as exc:
            problems.append(problem(str(exc)))
    return problems


def _scripted_problems(
    task: LoadedTask, spec: ModelSpec, problem: Callable[[str], Problem]
) -> list[Problem]:
    """A scripted model is the user's own code or table: loading it calls no model."""
    from promptopt.llm.providers.registry import build_provider

    try:
        build_provider(spec, base_dir=task.path.parent)
    except PromptoptError as exc:
        return [problem(str(exc))]
    return []


def _budget_problems(task: LoadedTask, overrides: RunOverrides, where: _Locator) -> list[Problem]:
    if "dev" not in task.splits:
        return []
    return (
        _target_budget_problems(task, overrides, where)
        + _judge_budget_problems(task, overrides, where)
        + _cost_budget_problems(task, overrides, where)
    )


def _judge_budget_problems(
    task: LoadedTask, overrides: RunOverrides, where: _Locator
) -> list[Problem]:
    """A judge cap that leaves nothing for the search once the final judging is set aside."""
    from promptopt.search.plan import final_judge_reserve

    cap = task.spec.search.budget.judge_calls
    params = {**task.spec.search.params, **overrides.params}
    if cap is None or params.get("feedback") != "judge":
        return []
    reserve = final_judge_reserve(
        len(task.splits["dev"]),
        len(task.splits.get("test", ())),
        labelled=task.spec.metric is not None,
    )
    if cap > reserve:
        return []
    return [
        where.problem(
            ("search", "budget", "judge_calls"),
            f"{cap} judge calls leave nothing for the search: judging the best prompt against "
            f"the initial one on held-out inputs (two calls each) needs {reserve}; raise it "
            f"above {reserve}, or use smaller splits",
        )
    ]


def _cost_budget_problems(
    task: LoadedTask, overrides: RunOverrides, where: _Locator
) -> list[Problem]:
    """A cost cap that does not cover the final evaluation as a run sets it aside (an unknown
    price is reported with the models)."""
    from promptopt.llm.pricing import price_for
    from promptopt.search.plan import final_eval_cost, initial_system_prompt

    cap = overrides.max_cost if overrides.max_cost is not None else task.spec.search.budget.cost_usd
    spec = task.spec.models.target
    if cap is None or spec is None:
        return []
    price = price_for(spec, task.spec.prices or {})
    if price is None:
        return []
    needed = final_eval_cost(task, spec, price, overrides.finalists).usd(
        initial_system_prompt(task)
    )
    if cap > needed:
        return []
    message = (
        f"${cap:g} does not cover the final evaluation on dev and test, which sets aside "
        f"${needed:.4f} at {spec.model}'s price; raise it, use smaller splits, or lower the "
        "target's max_tokens"
    )
    if overrides.max_cost is not None:
        return [where.flag("--max-cost", message)]
    return [where.problem(("search", "budget", "cost_usd"), message)]


def _target_budget_problems(
    task: LoadedTask, overrides: RunOverrides, where: _Locator
) -> list[Problem]:
    from promptopt.search.plan import final_reserve

    cap = overrides.target_calls or task.spec.search.budget.target_calls
    if cap is None:
        return []
    reserve = final_reserve(
        len(task.splits["dev"]), len(task.splits.get("test", ())), overrides.finalists
    )
    if cap > reserve:
        return []
    message = (
        f"{cap} target calls leave nothing for the search: the final evaluation of "
        f"{overrides.finalists} finalists and the initial prompt on dev "
        f"({len(task.splits['dev'])} examples) and of the initial and the best prompt on test "
        f"({len(task.splits.get('test', ()))}) needs {reserve}; raise it above {reserve}, or "
        "use smaller splits or fewer --finalists"
    )
    if overrides.target_calls is not None:
        return [where.flag("--budget", message)]
    return [where.problem(("search", "budget", "target_calls"), message)]
