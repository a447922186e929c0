"""Which models a command uses: the task's, as overridden by flags, filled in with defaults when
the task names none, or as a resumed run recorded them."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from pydantic import ValidationError

from promptopt.errors import UsageError
from promptopt.task.loader import LoadedTask
from promptopt.task.modelspec import ModelSpec


def override_models(
    task: LoadedTask,
    *,
    target: str | None = None,
    optimizer: str | None = None,
    base_url: str | None = None,
    optimizer_base_url: str | None = None,
) -> LoadedTask:
    """The task with its models replaced from command-line flags.

    A model flag replaces the whole model: its endpoint (base_url, api_key_env) and its price
    go with the task's model, since they describe that model, not the new one (a gateway's
    price must not bill another provider's model, nor its URL receive another's requests).
    The task's sampling options (temperature, max_tokens, params, timeout) are kept: they are
    the role's. A `prices:` entry for the new id still applies. `base_url` applies to the
    target and, unless `optimizer_base_url` is given, to the optimizer too (one
    OpenAI-compatible server serving both).
    """
    models = task.spec.models
    updates: dict[str, ModelSpec] = {}
    urls = {"target": base_url, "optimizer": optimizer_base_url or base_url}
    for role, value in (("target", target), ("optimizer", optimizer)):
        current: ModelSpec | None = getattr(models, role)
        new = current
        if value is not None:
            new = ModelSpec.model_validate(value)
            if current is not None:
                new = new.model_copy(update=_role_options(current))
        if urls[role] is not None and new is not None:
            new = new.model_copy(update={"base_url": urls[role]})
        if new is not None and new is not current:
            updates[role] = new
    if not updates:
        return task
    spec = task.spec.model_copy(update={"models": models.model_copy(update=updates)})
    return replace(task, spec=spec)


def set_rate_limits(
    task: LoadedTask, role: str, *, rpm: float | None = None, tpm: float | None = None
) -> LoadedTask:
    """The task with a role's model given requests and tokens per minute (the --target-rpm
    style flags); a limit not given keeps the model's own. UsageError when the task has no
    model for the role."""
    if rpm is None and tpm is None:
        return task
    current: ModelSpec | None = getattr(task.spec.models, role)
    if current is None:
        raise UsageError(f"--{role}-rpm/--{role}-tpm: the task has no {role} model")
    update = {name: value for name, value in (("rpm", rpm), ("tpm", tpm)) if value is not None}
    models = task.spec.models.model_copy(update={role: current.model_copy(update=update)})
    return replace(task, spec=task.spec.model_copy(update={"models": models}))


def _role_options(spec: ModelSpec) -> dict[str, Any]:
    """The options of a spec that belong to its role rather than to its model."""
    return {
        "temperature": spec.temperature,
        "max_tokens": spec.max_tokens,
        "params": dict(spec.params),
        "timeout_s": spec.timeout_s,
    }


def override_models_from_config(task: LoadedTask, models: Mapping[str, Any]) -> LoadedTask:
    """The task with the models a run was started with (its config.json's task.models), so
    that a resumed run talks to the same models even when flags had overridden the task file."""
    try:
        updates = {
            role: ModelSpec.model_validate(value)
            for role, value in models.items()
            if value is not None
        }
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise UsageError(
            f"--resume: config.json records an invalid model ({where}: {first['msg']}); "
            "start a new run"
        ) from None
    if not updates:
        return task
    spec = task.spec.model_copy(update={"models": task.spec.models.model_copy(update=updates)})
    return replace(task, spec=spec)


# Used when a task names no models: what an API key in the environment points to, else the
# embedded local models (`promptopt-cli[local]`), so that a first run works offline.
_DEFAULT_MODELS: tuple[tuple[str, dict[str, Any], dict[str, Any]], ...] = (
    (
        "OPENAI_API_KEY",
        {"model": "openai:gpt-4o-mini", "temperature": 0, "max_tokens": 64},
        {"model": "openai:gpt-4o", "temperature": 0.7, "max_tokens": 512},
    ),
    (
        "ANTHROPIC_API_KEY",
        {"model": "anthropic:claude-haiku-4-5", "temperature": 0, "max_tokens": 64},
        {"model": "anthropic:claude-haiku-4-5", "temperature": 0.7, "max_tokens": 512},
    ),
)
_LOCAL_MODELS = (
    {"model": "local:target", "temperature": 0, "max_tokens": 8},
    {"model": "local:optimizer", "temperature": 0.7, "max_tokens": 128},
)


def apply_default_models(task: LoadedTask, env: Mapping[str, str]) -> tuple[LoadedTask, str | None]:
    """Fill in the target and optimizer a task does not name; returns the task and a sentence
    saying what was chosen (None when the task named both)."""
    models = task.spec.models
    if models.target is not None and models.optimizer is not None:
        return task, None
    target, optimizer = _LOCAL_MODELS
    why = "no API key is set, so the embedded local models are used"
    for key, key_target, key_optimizer in _DEFAULT_MODELS:
        if env.get(key):
            target, optimizer, why = key_target, key_optimizer, f"{key} is set"
            break
    updates: dict[str, ModelSpec] = {}
    if models.target is None:
        updates["target"] = ModelSpec.model_validate(target)
    if models.optimizer is None:
        updates["optimizer"] = ModelSpec.model_validate(optimizer)
    spec = task.spec.model_copy(update={"models": models.model_copy(update=updates)})
    chosen = ", ".join(f"{role} {value.model}" for role, value in updates.items())
    return replace(
        task, spec=spec
    ), f"the task names no {' or '.join(updates)} model; {why}: {chosen}"
