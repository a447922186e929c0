"""Progress on stderr: bars on a terminal, a plain line at every tenth otherwise; `eval` says
which model and prompt it scores."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
import yaml
from rich.console import Console
from typer.testing import CliRunner

from promptopt.app.run import RunProgress
from promptopt.cli.main import app
from promptopt.cli.progress import RunProgressDisplay
from tests.support.search import write_task

runner = CliRunner()

SCRIPT = """
from tests.support.search import optimizer_answer, target_answer


def target(request):
    return target_answer(request)


def optimizer(request):
    return optimizer_answer(request)
"""


@pytest.fixture
def task(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("PROMPTOPT_CACHE_DIR", str(tmp_path / "cache"))
    (tmp_path / "script.py").write_text(SCRIPT)
    path = write_task(tmp_path, budget={"target_calls": 300}, params={"selection_budget": 40})
    spec = yaml.safe_load(path.read_text())
    spec["models"]["target"]["model"] = "scripted:script.py:target"
    spec["models"]["optimizer"]["model"] = "scripted:script.py:optimizer"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def test_run_in_a_log_prints_search_and_final_evaluation_lines(task: Path, tmp_path: Path) -> None:
    result = runner.invoke(app, ["run", str(task), "--out", str(tmp_path / "runs")])
    assert result.exit_code == 0, result.output
    lines = result.stderr.splitlines()
    search = [line for line in lines if line.startswith("search: ")]
    final = [line for line in lines if line.startswith("final evaluation: ")]
    assert search and final
    assert search[0] == "search: 0/180 target calls (0%)"  # 300 less 4 x 20 dev + 2 x 20 test
    assert final[0] == "final evaluation: 0/120 target calls (0%)"
    assert lines.index(search[-1]) < lines.index(final[0])
    assert "\x1b[" not in result.stderr  # no terminal control codes in a log


def log(reports: list[RunProgress]) -> list[str]:
    out = io.StringIO()
    with RunProgressDisplay(Console(file=out, force_terminal=False, width=100)) as show:
        for report in reports:
            show(report)
    return out.getvalue().splitlines()


def test_a_log_gets_a_line_per_tenth() -> None:
    lines = log([RunProgress("search", done, 50) for done in range(51)])
    assert len(lines) == 11
    assert lines[0] == "search: 0/50 target calls (0%)"
    assert lines[-1] == "search: 50/50 target calls (100%)"


def test_an_uncapped_search_gets_a_line_per_hundred_calls() -> None:
    lines = log([RunProgress("search", done, None) for done in range(0, 260, 7)])
    assert lines == [
        "search: 0 target calls",
        "search: 105 target calls",
        "search: 203 target calls",
    ]


def test_a_terminal_gets_bars_for_both_phases() -> None:
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=100)
    with RunProgressDisplay(console) as show:
        show(RunProgress("search", 30, 90))
        show(RunProgress("final", 12, 40))
        console.print("a line printed meanwhile")
    text = out.getvalue()
    assert "search" in text and "final evaluation" in text and "12/40" in text
    assert "a line printed meanwhile" in text
    assert "target calls (" not in text  # bars, not log lines


def test_eval_says_which_model_and_prompt_it_scores(task: Path) -> None:
    result = runner.invoke(app, ["eval", str(task), "--limit", "3", "--prompt", "Say it [now]."])
    assert result.exit_code == 0, result.output
    assert (
        "eval: scripted:script.py:target on dev (3 examples), prompt: Say it [now]."
        in result.stderr
    )
