from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from promptopt.app.models import apply_default_models, override_models, override_models_from_config
from promptopt.errors import UsageError
from promptopt.scoring.runtime import Runtime, RuntimeOptions
from promptopt.task.loader import load_task
from tests.support.search import write_task


def task_without_models(tmp_path: Path) -> Path:
    path = write_task(tmp_path)
    spec = yaml.safe_load(path.read_text())
    del spec["models"]
    path.write_text(yaml.safe_dump(spec))
    return path


def test_no_models_and_no_key_means_the_embedded_local_models(tmp_path: Path) -> None:
    task, note = apply_default_models(load_task(task_without_models(tmp_path)), {})
    assert task.spec.models.target is not None and task.spec.models.optimizer is not None
    assert task.spec.models.target.model == "local:target"
    assert task.spec.models.optimizer.model == "local:optimizer"
    assert note is not None and "no API key" in note and "local:target" in note


def test_an_api_key_picks_that_provider(tmp_path: Path) -> None:
    task, note = apply_default_models(
        load_task(task_without_models(tmp_path)), {"OPENAI_API_KEY": "sk-test"}
    )
    assert task.spec.models.target is not None
    assert task.spec.models.target.model.startswith("openai:")
    assert note is not None and "OPENAI_API_KEY is set" in note and "sk-test" not in note


def test_named_models_are_kept(tmp_path: Path) -> None:
    original = load_task(write_task(tmp_path))
    task, note = apply_default_models(original, {})
    assert note is None and task is original


def test_flags_replace_the_model_and_keep_sampling_options(tmp_path: Path) -> None:
    task = override_models(
        load_task(write_task(tmp_path)), target="openai:gpt-4o-mini", base_url="http://x/v1"
    )
    target = task.spec.models.target
    assert target is not None and target.model == "openai:gpt-4o-mini"
    assert target.max_tokens == 8 and target.base_url == "http://x/v1"
    assert task.spec.models.optimizer is not None
    assert task.spec.models.optimizer.base_url == "http://x/v1"


def test_resume_uses_the_models_the_run_started_with(tmp_path: Path) -> None:
    task = load_task(write_task(tmp_path))
    models = {"target": {"model": "openai:gpt-4o-mini"}, "judge": None}
    resumed = override_models_from_config(task, models)
    assert resumed.spec.models.target is not None
    assert resumed.spec.models.target.model == "openai:gpt-4o-mini"


async def test_a_role_without_a_model_says_how_to_set_it(tmp_path: Path) -> None:
    task = load_task(task_without_models(tmp_path))
    async with Runtime(task, RuntimeOptions(no_cache=True), env={}) as runtime:
        with pytest.raises(UsageError, match="--target"):
            runtime.client("target")


async def test_the_models_of_a_command_share_one_connection_pool(tmp_path: Path) -> None:
    path = write_task(tmp_path)
    spec = yaml.safe_load(path.read_text())
    server = {"base_url": "http://127.0.0.1:9/v1"}
    spec["models"]["target"] = {"model": "openai:small", **server}
    spec["models"]["optimizer"] = {"model": "openai:large", **server}
    path.write_text(yaml.safe_dump(spec))
    runtime = Runtime(load_task(path), RuntimeOptions(), env={})
    target, optimizer = runtime.client("target"), runtime.client("optimizer")
    pool = runtime.http_client
    assert pool is not None
    assert getattr(target.provider, "_http", None) is pool
    assert getattr(optimizer.provider, "_http", None) is pool
    await runtime.aclose()
    assert bool(getattr(pool, "is_closed", False))
