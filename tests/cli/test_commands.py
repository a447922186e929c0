from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from promptopt.cli.main import EXIT_USAGE, app
from tests.support.search import write_task

runner = CliRunner()

SCRIPT = """
from pathlib import Path
from promptopt.errors import FatalProviderError
from tests.support.search import optimizer_answer, target_answer

CALLS = Path(__file__).with_name("calls.log")


def _log(role):
    with CALLS.open("a") as handle:
        handle.write(role + "\\n")


def target(request):
    _log("target")
    return target_answer(request)


def optimizer(request):
    _log("optimizer")
    return optimizer_answer(request)


def judge(request):
    _log("judge")
    return "Reasonable answer.\\nSCORE: 8"


def unauthorized(request):
    raise FatalProviderError("401 Unauthorized: set OPENAI_API_KEY to a valid key")
"""


@pytest.fixture
def task(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("PROMPTOPT_CACHE_DIR", str(tmp_path / "cache"))
    (tmp_path / "script.py").write_text(SCRIPT)
    path = write_task(tmp_path)
    spec = yaml.safe_load(path.read_text())
    spec["models"]["target"]["model"] = "scripted:script.py:target"
    spec["models"]["optimizer"]["model"] = "scripted:script.py:optimizer"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def calls(tmp_path: Path) -> list[str]:
    log = tmp_path / "calls.log"
    return log.read_text().split() if log.exists() else []


def test_validate_ok(task: Path) -> None:
    result = runner.invoke(app, ["validate", str(task)])
    assert result.exit_code == 0, result.output
    assert "ok" in result.output and "dev 20" in result.output


def test_validate_reports_file_and_field_without_traceback(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "name: t\nprompt: hi\ndata: {dev: missing.jsonl}\n"
        "metric: {type: label}\nmodels: {target: {model: x, temperature: 9}}\n"
    )
    result = runner.invoke(app, ["validate", str(bad)])
    assert result.exit_code == EXIT_USAGE
    out = result.output
    assert "Traceback" not in out
    assert "metric" in out and "labels" in out
    assert "models.target" in out
    assert "data.dev" in out and "missing.jsonl" in out
    assert str(bad) in out


def test_eval_json_contract_and_cached_rerun(task: Path, tmp_path: Path) -> None:
    args = ["eval", str(task), "--split", "test", "--json"]
    first = runner.invoke(app, args)
    assert first.exit_code == 0, first.output
    data = json.loads(first.stdout)
    assert set(data) >= {"split", "n", "score", "ci95", "usage", "examples"}
    assert set(data["usage"]) >= {
        "requests",
        "cache_hits",
        "input_tokens",
        "output_tokens",
        "cost_usd",
    }
    assert set(data["examples"][0]) >= {"id", "output", "score"}
    assert data["split"] == "test" and data["n"] == 20 and data["score"] == 0.5
    lo, hi = data["ci95"]
    assert lo <= 0.5 <= hi
    assert data["usage"]["requests"] == 20
    n_calls = len(calls(tmp_path))

    second = json.loads(runner.invoke(app, args).stdout)
    assert len(calls(tmp_path)) == n_calls  # zero requests the second time
    assert second["usage"]["requests"] == 0 and second["usage"]["cache_hits"] == 20
    assert second["score"] == data["score"] and second["examples"] == data["examples"]


def test_eval_prompt_file_and_table(task: Path, tmp_path: Path) -> None:
    prompt = tmp_path / "p.txt"
    prompt.write_text("Reply with the label only.")
    result = runner.invoke(app, ["eval", str(task), "--prompt-file", str(prompt), "--no-cache"])
    assert result.exit_code == 0, result.output
    assert "1.000" in result.stdout and "95% CI" in result.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--split", "holdout"], "--split"),
        (["--prompt-file", "/nonexistent/p.txt"], "--prompt-file"),
        (["--prompt", "a", "--prompt-file", "b"], "either --prompt or --prompt-file"),
    ],
)
def test_eval_usage_errors(task: Path, args: list[str], message: str) -> None:
    result = runner.invoke(app, ["eval", str(task), *args])
    assert result.exit_code == EXIT_USAGE
    assert message in result.output and "Traceback" not in result.output


def test_fatal_provider_error_is_one_clear_line(task: Path) -> None:
    result = runner.invoke(
        app, ["eval", str(task), "--target", "scripted:script.py:unauthorized", "--no-cache"]
    )
    assert result.exit_code == 1
    assert "OPENAI_API_KEY" in result.output and "Traceback" not in result.output


def test_run_json_contract_and_run_folder(task: Path, tmp_path: Path) -> None:
    out = tmp_path / "runs"
    result = runner.invoke(app, ["run", str(task), "--out", str(out), "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    for key in (
        "run_dir",
        "task",
        "strategy",
        "seed",
        "initial_prompt",
        "best_prompt",
        "scores",
        "usage",
        "wall_s",
    ):
        assert key in summary
    assert set(summary["scores"]) == {"initial", "best"}
    assert set(summary["scores"]["best"]) == {"dev", "test"}
    assert set(summary["usage"]) >= {"target", "optimizer"}
    assert summary["scores"]["best"]["test"] == 1.0
    # The toy optimizer refuses and answers empty now and then: counted by reason.
    assert summary["rejected"] and {"degenerate", "empty"} <= set(summary["rejected"])
    run_dir = Path(summary["run_dir"])
    for name in (
        "config.json",
        "events.jsonl",
        "candidates.jsonl",
        "best_prompt.txt",
        "summary.json",
        "report.md",
    ):
        assert (run_dir / name).is_file(), name
    assert (
        json.loads((run_dir / "summary.json").read_text())["best_prompt"] == summary["best_prompt"]
    )


def test_run_table_output(task: Path, tmp_path: Path) -> None:
    result = runner.invoke(app, ["run", str(task), "--out", str(tmp_path / "runs")])
    assert result.exit_code == 0, result.output
    assert "initial" in result.stdout and "best" in result.stdout and "test" in result.stdout
    assert re.search(r"rejected proposals: \d+ \(degenerate: \d+, empty: \d+", result.stdout)


def test_dry_run_sends_no_request(task: Path, tmp_path: Path) -> None:
    result = runner.invoke(app, ["run", str(task), "--dry-run", "--budget", "400", "--json"])
    assert result.exit_code == 0, result.output
    plan = json.loads(result.stdout)
    assert plan["target_calls"] <= 400 and plan["final_eval_calls"] == 4 * 20 + 2 * 20
    assert plan["optimizer_calls"] > 0
    assert calls(tmp_path) == []
    assert not (tmp_path / "runs").exists()


def test_unknown_strategy_lists_the_valid_ones(task: Path) -> None:
    result = runner.invoke(app, ["run", str(task), "--strategy", "nope", "--dry-run"])
    assert result.exit_code == EXIT_USAGE
    assert "ape" in result.output


def test_bad_strategy_param_names_it(task: Path) -> None:
    result = runner.invoke(app, ["run", str(task), "--param", "top_k=0", "--dry-run"])
    assert result.exit_code == EXIT_USAGE
    assert "--param top_k: ape: " in result.output


def test_resume_of_a_folder_that_is_not_a_run(tmp_path: Path) -> None:
    result = runner.invoke(app, ["run", "--resume", str(tmp_path)])
    assert result.exit_code == EXIT_USAGE
    assert "not a run folder" in " ".join(result.output.split())


def test_budget_too_small_for_the_final_evaluation(task: Path, tmp_path: Path) -> None:
    result = runner.invoke(app, ["run", str(task), "--budget", "50", "--out", str(tmp_path)])
    assert result.exit_code == EXIT_USAGE
    assert "--budget: 50 target calls leave nothing for the search" in result.output


def test_strategies_lists_parameters() -> None:
    result = runner.invoke(app, ["strategies", "--json"])
    assert result.exit_code == 0
    listing = json.loads(result.stdout)
    ape = next(s for s in listing if s["name"] == "ape")
    assert any(p["name"] == "num_demos" and p["default"] == 5 for p in ape["params"])


def test_cache_stats_and_clear(task: Path, tmp_path: Path) -> None:
    runner.invoke(app, ["eval", str(task), "--limit", "3"])
    stats = json.loads(runner.invoke(app, ["cache", "stats", "--json"]).stdout)
    assert stats["entries"] == 3
    cleared = runner.invoke(app, ["cache", "clear"])
    assert cleared.exit_code == 0 and "removed 3" in cleared.stdout


def test_options_can_come_from_the_environment(
    task: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PROMPTOPT_RUN_BUDGET", "50")
    result = runner.invoke(app, ["run", str(task), "--dry-run"])
    assert result.exit_code == EXIT_USAGE and "--budget: 50 target calls" in result.output
    monkeypatch.setenv("PROMPTOPT_CACHE_DIR", str(tmp_path / "elsewhere"))
    runner.invoke(app, ["eval", str(task), "--limit", "2"])
    assert (tmp_path / "elsewhere").is_dir()


def test_a_second_ctrl_c_is_an_abort_message_not_a_traceback() -> None:
    import asyncio

    import typer

    from promptopt.cli.common import EXIT_INTERRUPTED
    from promptopt.cli.common import run_async as _run_async

    async def cancelled() -> None:
        raise asyncio.CancelledError

    with pytest.raises(typer.Exit) as exit_info:
        _run_async(cancelled)
    assert exit_info.value.exit_code == EXIT_INTERRUPTED


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--budget", "100"], "--budget: 100 target calls"),
        (["--param", "selector=nope"], "unknown selector"),
        (["--target", "openai:gpt-4o-mini"], "OPENAI_API_KEY"),
        (["--target", "openai:some-unpriced-model", "--max-cost", "1"], "price"),
    ],
)
def test_run_checks_fail_before_a_run_folder_is_made(
    task: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, args: list[str], message: str
) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    if "--max-cost" in args:
        monkeypatch.setenv("OPENAI_API_KEY", "sk-test-not-a-real-key")
    out = tmp_path / "runs"
    result = runner.invoke(app, ["run", str(task), "--out", str(out), *args])
    assert result.exit_code != 0
    assert message in " ".join(result.output.split()) and "Traceback" not in result.output
    assert not out.exists() or not any(out.iterdir())
    assert calls(tmp_path) == []


def test_resume_of_a_broken_config_is_a_usage_error(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{not json")
    result = runner.invoke(app, ["run", "--resume", str(tmp_path)])
    assert result.exit_code == EXIT_USAGE and "Traceback" not in result.output


def test_eval_with_a_judge_metric_reports_the_judge_calls(task: Path, tmp_path: Path) -> None:
    spec = yaml.safe_load(task.read_text())
    spec["metric"] = {"type": "judge", "rubric": "Names the sentiment."}
    spec["models"]["judge"] = {"model": "scripted:script.py:judge"}
    task.write_text(yaml.safe_dump(spec))
    result = runner.invoke(app, ["eval", str(task), "--limit", "4", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["score"] == pytest.approx(0.8)
    assert data["judge_usage"]["requests"] == 4
    assert calls(tmp_path).count("judge") == 4


def label_free(task: Path) -> Path:
    """The fixture's task without a metric or targets, searched by apohf with a judge."""
    spec = yaml.safe_load(task.read_text())
    del spec["metric"]
    for split in ("train", "dev", "test"):
        for row in spec["data"][split]:
            del row["target"]
    spec["search"] = {
        "strategy": "apohf",
        "params": {"feedback": "judge", "rubric": "Right sentiment wins.", "comparisons": 4},
        "budget": {"judge_calls": 100},
    }
    task.write_text(yaml.safe_dump(spec, sort_keys=False))
    return task


def test_eval_and_diff_refuse_a_task_without_a_metric_in_one_sentence(
    task: Path, tmp_path: Path
) -> None:
    path = label_free(task)
    result = runner.invoke(app, ["eval", str(path)])
    assert result.exit_code == EXIT_USAGE
    assert "metric: eval scores answers against expected ones, but the task has no metric" in (
        result.output
    )
    assert "Traceback" not in result.output
    (tmp_path / "a.txt").write_text("A\n")
    (tmp_path / "b.txt").write_text("B\n")
    result = runner.invoke(
        app, ["diff", str(tmp_path / "a.txt"), str(tmp_path / "b.txt"), "--task", str(path)]
    )
    assert result.exit_code == EXIT_USAGE and "diff scores answers" in result.output
    assert calls(tmp_path) == []


def test_dry_run_of_a_judged_search_counts_the_judge_and_its_final_reserve(task: Path) -> None:
    path = label_free(task)
    result = runner.invoke(app, ["run", str(path), "--dry-run", "--json"])
    assert result.exit_code == 0, result.output
    plan = json.loads(result.output)
    # Two judge calls per comparison, and two per dev and test input for the final judging.
    assert plan["final_judge_calls"] == 2 * 20 + 2 * 20
    assert plan["judge_calls"] == 2 * 4 + plan["final_judge_calls"]
    small = runner.invoke(app, ["run", str(path), "--judge-budget", "50", "--dry-run"])
    assert small.exit_code == EXIT_USAGE
    assert "budget.judge_calls (50) is too small" in small.output


def test_dry_run_under_a_cost_cap_shows_what_the_final_evaluation_keeps(task: Path) -> None:
    spec = yaml.safe_load(task.read_text())
    spec["models"]["target"]["price"] = {"input": 2.0, "output": 8.0}
    spec["models"]["optimizer"]["price"] = {"input": 0.0, "output": 0.0}
    task.write_text(yaml.safe_dump(spec))
    # Refused before: the final evaluation alone was reserved at ~$1.94 (every call as long as
    # the longest proposal); it costs about a cent.
    result = runner.invoke(app, ["run", str(task), "--dry-run", "--max-cost", "0.1"])
    assert result.exit_code == 0, result.output
    (line,) = [s for s in result.stdout.splitlines() if "set aside for the final" in s]
    assert 0 < float(line.split("$")[1].split()[0]) < 0.05


def test_dry_run_with_only_a_target_budget_says_the_optimizer_cap(task: Path) -> None:
    result = runner.invoke(app, ["run", str(task), "--dry-run", "--budget", "400"])
    assert result.exit_code == 0, result.output
    text = " ".join(result.stdout.split())
    cap = re.search(r"optimizer calls are capped at (\d+)", text)
    assert cap is not None, text
    assert f"at most {cap.group(1)} optimizer calls" in text


def test_the_result_of_a_task_without_a_metric_is_its_win_rate_not_a_score_table(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from promptopt.cli.run import print_run_result
    from promptopt.run.records import SummaryRecord

    judged = {
        "source": "judge",
        "n": 30,
        "wins": 12,
        "losses": 2,
        "ties": 16,
        "win_rate": 0.6667,
        "ci95": [0.5667, 0.7667],
        "sign_p": 0.0129,
        "verdict": "improved",
    }
    summary = SummaryRecord.model_validate(
        {
            "run_dir": "runs/x",
            "task": "review-gist",
            "strategy": "apohf",
            "seed": 0,
            "initial_prompt": "Rewrite the text.",
            "best_prompt": "Summarize the review.",
            "dev_preference": {**judged, "n": 10},
            "test_preference": judged,
            "usage": {"judge": {"requests": 106, "cache_hits": 10}},
        }
    )
    print_run_result(summary, as_json=False)
    out = " ".join(capsys.readouterr().out.split())
    assert "won 12, lost 2 and tied 16: win rate 0.67" in out and "improved" in out
    assert "judge 106 sent + 10 cached" in out
    assert "test 95% CI" not in out  # no table of scores that do not exist
