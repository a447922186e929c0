"""Honest prices in a run: a model behind a gateway is priced (or refused under a cost cap) by
`run --dry-run` and `run` alike, a local server is free, a task-file price wins over the price
library, an unknown cost is reported as unknown (null), never $0, and --target replaces the
whole model. No network: the gateway models are answered by scripted providers, and prices come
from the data genai-prices ships."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from promptopt.app.models import override_models
from promptopt.app.run import dry_run_plan, execute_run, prepare_run
from promptopt.cli.main import EXIT_USAGE, app
from promptopt.cli.run import print_run_result
from promptopt.errors import UsageError
from promptopt.llm.cache import NullCache
from promptopt.llm.messages import Usage
from promptopt.llm.pricing import cost_usd, price_for
from promptopt.run.folder import EVENTS, RunFolder
from promptopt.run.records import SummaryRecord
from promptopt.task.loader import load_task
from promptopt.task.modelspec import ModelSpec, Price
from tests.support.search import providers, write_task

runner = CliRunner()

OPENROUTER = "https://openrouter.ai/api/v1"
DEEPINFRA = "https://api.deepinfra.com/v1/openai"
GATEWAY_TARGET = "openai:meta-llama/llama-3.1-8b-instruct"
GATEWAY_OPTIMIZER = "openai:openai/gpt-4o-mini"
UNPRICED = "openai:meta-llama/Meta-Llama-3.1-8B-Instruct"


def task_with(
    tmp_path: Path, target: dict[str, Any], optimizer: dict[str, Any] | None = None
) -> Path:
    """The toy task with these target (and optimizer) models; the optimizer defaults to a
    priced OpenRouter model."""
    path = write_task(tmp_path)
    spec: dict[str, Any] = yaml.safe_load(path.read_text())
    spec["models"]["target"] = {"temperature": 0, "max_tokens": 8, **target}
    spec["models"]["optimizer"] = optimizer or {
        "model": GATEWAY_OPTIMIZER,
        "base_url": OPENROUTER,
        "temperature": 0.9,
        "max_tokens": 256,
    }
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def dry_run_cli(path: Path, *args: str) -> Any:
    return runner.invoke(app, ["run", str(path), "--dry-run", "--budget", "300", *args])


async def run_app(path: Path, tmp_path: Path, max_cost: float | None) -> RunFolder:
    prepared = prepare_run(load_task(path), target_calls=300, max_cost=max_cost)
    folders: list[RunFolder] = []
    # The providers are scripted, the specs (base_url, price) are the gateway's: what is priced
    # is exactly what a real run would price.
    await execute_run(
        prepared,
        out=tmp_path / "runs",
        on_folder=folders.append,
        providers=providers(),
        store=NullCache(),
    )
    return folders[0]


def summary_of(folder: RunFolder) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((folder.path / "summary.json").read_text())
    return data


async def test_a_gateway_model_under_a_cost_cap_is_priced_by_dry_run_and_run_alike(
    tmp_path: Path,
) -> None:
    path = task_with(tmp_path, {"model": GATEWAY_TARGET, "base_url": OPENROUTER})
    result = dry_run_cli(path, "--max-cost", "5", "--json")
    assert result.exit_code == 0, result.output
    plan = json.loads(result.stdout)
    assert plan["estimated_cost_usd"] > 0
    assert not any("unknown" in note for note in plan["notes"])

    task = load_task(path)
    assert dry_run_plan(prepare_run(task, target_calls=300, max_cost=5)).estimated_cost_usd == (
        pytest.approx(plan["estimated_cost_usd"])
    )
    folder = await run_app(path, tmp_path, max_cost=5)
    usage = summary_of(folder)["usage"]
    # The run bills the tokens it used at the gateway's list price of the routed model.
    target_price = price_for(ModelSpec(model=GATEWAY_TARGET, base_url=OPENROUTER))
    assert target_price is not None and target_price.input > 0
    tokens = Usage(input=usage["target"]["input_tokens"], output=usage["target"]["output_tokens"])
    assert usage["target"]["cost_usd"] == pytest.approx(cost_usd(tokens, target_price), abs=1e-8)
    assert usage["target"]["cost_usd"] + usage["optimizer"]["cost_usd"] > 0
    assert (
        usage["target"]["cost_usd"] + usage["optimizer"]["cost_usd"] <= plan["estimated_cost_usd"]
    )


@pytest.mark.parametrize("base_url", [DEEPINFRA, "https://llm-proxy.example.com/v1"])
def test_an_unpriced_model_under_a_cost_cap_is_refused_by_dry_run_and_run_alike(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, base_url: str
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-not-a-real-key")
    monkeypatch.setenv("PROMPTOPT_CACHE_DIR", str(tmp_path / "cache"))
    path = task_with(tmp_path, {"model": UNPRICED, "base_url": base_url})
    out = tmp_path / "runs"
    dry = dry_run_cli(path, "--max-cost", "5", "--out", str(out))
    real = runner.invoke(
        app, ["run", str(path), "--budget", "300", "--max-cost", "5", "--out", str(out)]
    )
    for result in (dry, real):
        assert result.exit_code == EXIT_USAGE, result.output
        assert "Traceback" not in result.output
    assert dry.output == real.output
    assert f"models.target: the price of {UNPRICED} at {base_url} is unknown" in dry.output
    assert f"      model: {UNPRICED}\n      price: {{input: ..., output: ...}}" in dry.output
    assert not out.exists()
    # The same check guards the Python API, before any folder exists.
    with pytest.raises(UsageError, match=re.escape("price: {input: ..., output: ...}")):
        prepare_run(load_task(path), target_calls=300, max_cost=5)
    # A task-wide cap (search.budget.cost_usd) is a cap too.
    spec = yaml.safe_load(path.read_text())
    spec["search"]["budget"] = {"cost_usd": 5}
    path.write_text(yaml.safe_dump(spec))
    assert dry_run_cli(path).exit_code == EXIT_USAGE


async def test_a_local_server_is_free(tmp_path: Path) -> None:
    local = {"model": "openai:qwen2.5-0.5b", "base_url": "http://127.0.0.1:8080/v1"}
    path = task_with(tmp_path, local, {**local, "temperature": 0.9})
    result = dry_run_cli(path, "--max-cost", "1", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["estimated_cost_usd"] == 0.0
    usage = summary_of(await run_app(path, tmp_path, max_cost=1))["usage"]
    assert usage["target"]["requests"] > 0
    assert usage["target"]["cost_usd"] == 0.0 and usage["optimizer"]["cost_usd"] == 0.0


async def test_a_price_in_the_task_file_wins_over_the_library(tmp_path: Path) -> None:
    own = {"input": 3.0, "output": 15.0}
    path = task_with(tmp_path, {"model": GATEWAY_TARGET, "base_url": OPENROUTER, "price": own})
    task = load_task(path)
    assert task.spec.models.target is not None
    assert price_for(task.spec.models.target) == Price(**own)
    folder = await run_app(path, tmp_path, max_cost=50)
    target = summary_of(folder)["usage"]["target"]
    tokens = Usage(input=target["input_tokens"], output=target["output_tokens"])
    assert target["cost_usd"] == pytest.approx(cost_usd(tokens, Price(**own)), abs=1e-8)
    # An unpriced gateway model priced under `prices:` runs under a cap too.
    spec = yaml.safe_load(path.read_text())
    spec["models"]["target"] = {"model": UNPRICED, "base_url": DEEPINFRA, "max_tokens": 8}
    spec["prices"] = {UNPRICED: {"input": 0.03, "output": 0.05}}
    path.write_text(yaml.safe_dump(spec))
    result = dry_run_cli(path, "--max-cost", "5", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["estimated_cost_usd"] > 0


async def test_without_a_cap_an_unknown_cost_is_reported_as_unknown(tmp_path: Path) -> None:
    path = task_with(tmp_path, {"model": UNPRICED, "base_url": DEEPINFRA})
    text = dry_run_cli(path)
    assert text.exit_code == 0, text.output
    assert "estimated cost at most unknown" in text.stdout
    assert text.stdout.count(f"the price of {UNPRICED} at {DEEPINFRA} is unknown") == 1
    assert "$0" not in text.stdout
    plan = json.loads(dry_run_cli(path, "--json").stdout)
    assert plan["estimated_cost_usd"] is None

    prepared = prepare_run(load_task(path), target_calls=300)
    (note,) = [n for n in prepared.notes if "optimizer calls are capped" not in n]
    assert "cost is reported as unknown" in note
    folder = await run_app(path, tmp_path, max_cost=None)
    summary = summary_of(folder)
    assert summary["usage"]["target"]["requests"] > 0
    assert summary["usage"]["target"]["cost_usd"] is None  # JSON null, not 0
    assert summary["usage"]["optimizer"]["cost_usd"] > 0  # the priced model still counts
    steps = [e for e in folder.read_jsonl(EVENTS) if e["event"] == "step"]
    assert steps and all(e["cost_usd"] is None for e in steps)
    report = (folder.path / "report.md").read_text()
    assert "unknown" in report and "| $0.0000 |" not in report


def test_the_terminal_summary_shows_an_unknown_cost(capsys: pytest.CaptureFixture[str]) -> None:
    summary = SummaryRecord.model_validate(
        {
            "run_dir": "runs/x",
            "task": "t",
            "strategy": "ape",
            "seed": 0,
            "initial_prompt": "a",
            "best_prompt": "b",
            "usage": {
                "target": {"requests": 3, "cost_usd": None},
                "optimizer": {"requests": 1, "cost_usd": 0.5},
            },
        }
    )
    print_run_result(summary, as_json=False)
    out = capsys.readouterr().out
    assert "cost unknown" in out and "$0.5" not in out
    print_run_result(summary, as_json=True)
    assert json.loads(capsys.readouterr().out)["usage"]["target"]["cost_usd"] is None


def test_target_on_the_command_line_replaces_the_whole_model(tmp_path: Path) -> None:
    own = {"input": 0.01, "output": 0.02}
    path = task_with(
        tmp_path,
        {"model": UNPRICED, "base_url": DEEPINFRA, "api_key_env": "DEEPINFRA_KEY", "price": own},
    )
    task = override_models(load_task(path), target="openai:gpt-4o-mini")
    target = task.spec.models.target
    assert target is not None
    assert (target.model, target.base_url, target.api_key_env, target.price) == (
        "openai:gpt-4o-mini",
        None,
        None,
        None,
    )
    assert (target.temperature, target.max_tokens) == (0, 8)  # the role's sampling options stay
    assert price_for(target) == Price(input=0.15, output=0.6, cache_read=0.075)

    # In the dry run: the new model is priced as itself, not at the old model's price...
    mini = dry_run_cli(path, "--max-cost", "5", "--json", "--target", "openai:gpt-4o-mini")
    kept = dry_run_cli(path, "--max-cost", "5", "--json")
    assert mini.exit_code == 0 and kept.exit_code == 0, mini.output + kept.output
    assert (
        json.loads(mini.stdout)["estimated_cost_usd"]
        != json.loads(kept.stdout)["estimated_cost_usd"]
    )
    # ...and an unpriced one is refused, the task's price for another model notwithstanding.
    other = dry_run_cli(path, "--max-cost", "5", "--target", "openai:some-unpriced-model")
    assert other.exit_code == EXIT_USAGE
    assert "the price of openai:some-unpriced-model is unknown" in other.output
    # --optimizer likewise, and --base-url still moves the new model to a server.
    task = override_models(
        load_task(path), optimizer="openai:qwen", optimizer_base_url="http://localhost:8000/v1"
    )
    optimizer = task.spec.models.optimizer
    assert optimizer is not None and optimizer.base_url == "http://localhost:8000/v1"
    assert optimizer.temperature == 0.9 and optimizer.price is None


async def test_eval_json_has_a_null_cost_for_an_unpriced_model(tmp_path: Path) -> None:
    from promptopt.app.evaluate import evaluate_prompt

    path = task_with(tmp_path, {"model": UNPRICED, "base_url": DEEPINFRA})
    evaluation = await evaluate_prompt(
        load_task(path), "Classify.", limit=3, providers=providers(), store=NullCache()
    )
    usage = evaluation.to_json()["usage"]
    assert usage["requests"] == 3 and usage["cost_usd"] is None
    priced = task_with(tmp_path, {"model": GATEWAY_TARGET, "base_url": OPENROUTER})
    evaluation = await evaluate_prompt(
        load_task(priced), "Classify.", limit=3, providers=providers(), store=NullCache()
    )
    assert evaluation.to_json()["usage"]["cost_usd"] > 0


def test_a_cap_too_small_for_the_final_evaluation_is_refused_by_dry_run_and_run_alike(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Priced at its gateway's list price, the final evaluation alone costs more than the cap:
    # the dry run says so, as the run does, and neither leaves a folder.
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-not-a-real-key")
    path = task_with(tmp_path, {"model": GATEWAY_TARGET, "base_url": OPENROUTER})
    out = tmp_path / "runs"
    args = ["run", str(path), "--budget", "300", "--max-cost", "0.0001", "--out", str(out)]
    dry = runner.invoke(app, [*args, "--dry-run"])
    real = runner.invoke(app, args)
    for result in (dry, real):
        assert result.exit_code == EXIT_USAGE, result.output
        # Found by the checks validate makes too, located at the flag.
        assert "--max-cost: $0.0001 does not cover the final evaluation" in result.output
    assert not out.exists()
