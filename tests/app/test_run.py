"""The run use case with a structured prompt: eval sends the full prompt, a resumed run keeps
the prompt and the edit_output_format its config.json recorded."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from promptopt.app.run import prepare_resume, with_baseline, with_prompt
from promptopt.task.loader import load_task
from promptopt.task.prompt import PromptSpec
from tests.support.diff import make_run, make_task, run_cli
from tests.support.search import write_task

FORMAT = "Answer with the label only."


def structured(folder: Path, **search: object) -> Path:
    path = make_task(folder)
    spec = yaml.safe_load(path.read_text())
    spec["prompt"] = {"instruction": "Classify the review.", "output_format": FORMAT}
    spec["search"].update(search)
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def test_eval_scores_the_instruction_with_its_format(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The scripted target answers right only when its system message asks for the label only,
    # which only the output format does.
    monkeypatch.setenv("PROMPTOPT_CACHE_DIR", str(tmp_path / "cache"))
    task = structured(tmp_path / "task")
    result = run_cli("eval", str(task), "--split", "test", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["score"] == 1.0
    alone = run_cli("eval", str(task), "--split", "test", "--json", "--prompt", "Classify.")
    assert json.loads(alone.stdout)["score"] == 0.5


def test_with_prompt_takes_a_recorded_mapping(tmp_path: Path) -> None:
    task = load_task(structured(tmp_path / "task"))
    again = with_prompt(task, {"instruction": "New.", "output_format": FORMAT})
    assert again.spec.prompt == PromptSpec(instruction="New.", output_format=FORMAT)
    assert again.spec.system_prompt == f"New.\n\n{FORMAT}"
    assert with_prompt(task, task.spec.prompt.model_dump()) is task  # type: ignore[union-attr]
    assert with_baseline(task, f"Mine.\n\n{FORMAT}\n").spec.system_prompt == f"Mine.\n\n{FORMAT}"


def test_a_resumed_run_keeps_its_recorded_prompt_and_format_setting(tmp_path: Path) -> None:
    task = structured(tmp_path / "task", edit_output_format=True)
    run = make_run(task, tmp_path / "runs", tmp_path / "cache")
    # The task file changes after the run started; the run goes on as it began.
    spec = yaml.safe_load(task.read_text())
    spec["prompt"] = "Something else."
    spec["search"].pop("edit_output_format")
    task.write_text(yaml.safe_dump(spec, sort_keys=False))
    prepared = prepare_resume(run)
    assert prepared.task.spec.prompt == PromptSpec(
        instruction="Classify the review.", output_format=FORMAT
    )
    assert prepared.task.spec.search.edit_output_format
    config = json.loads((run / "config.json").read_text())
    assert prepared.task.task_hash == config["task_hash"]


@pytest.mark.parametrize("strategy", ["ape", "protegi", "opro", "promptbreeder"])
async def test_a_target_budget_alone_caps_optimizer_calls_at_the_plan(
    tmp_path: Path, strategy: str
) -> None:
    from promptopt.app.run import dry_run_plan, execute_run, prepare_run
    from promptopt.llm.cache import NullCache
    from promptopt.run.folder import SUMMARY, RunFolder
    from tests.support.search import Counter, optimizer_answer, providers

    task = load_task(write_task(tmp_path))
    prepared = prepare_run(task, strategy=strategy, target_calls=300, seed=0)
    plan = dry_run_plan(prepared)
    cap = prepared.settings.caps.optimizer_calls
    assert cap is not None and cap == plan.optimizer_calls > 0
    (note,) = [n for n in prepared.notes if "optimizer calls are capped" in n]
    assert f"capped at {cap}" in note and note in plan.notes
    optimizer = Counter(optimizer_answer)
    folders: list[RunFolder] = []
    await execute_run(
        prepared,
        out=tmp_path / "runs",
        on_folder=folders.append,
        providers=providers(optimizer=optimizer),
        store=NullCache(),
    )
    assert optimizer.calls <= cap
    summary = folders[0].read_json(SUMMARY)
    assert summary is not None and summary["status"] == "finished"


def test_an_optimizer_budget_that_is_set_is_kept(tmp_path: Path) -> None:
    from promptopt.app.run import prepare_run

    task = load_task(write_task(tmp_path))
    prepared = prepare_run(task, target_calls=300, optimizer_calls=5)
    assert prepared.settings.caps.optimizer_calls == 5
    assert not any("optimizer calls are capped" in n for n in prepared.notes)
    assert prepare_run(task).settings.caps.optimizer_calls is None  # nothing to plan for
