"""Mistakes on the command line that used to be noticed only after a whole run, or never: each
is now refused first, with exit 2 and one sentence naming the flag."""

from __future__ import annotations

import json
from pathlib import Path

from promptopt.cli.main import EXIT_USAGE
from tests.app.test_checks import write
from tests.support.diff import run_cli

BLOCK_PROMPT = "prompt: |\n  Classify the text.\n  Answer yes or no.\n"


def error_line(output: str) -> str:
    assert "Traceback" not in output, output
    (line,) = [line for line in output.splitlines() if line.startswith("error:")]
    return line


def test_resume_refuses_a_task_that_is_not_the_runs(tmp_path: Path) -> None:
    task = write(tmp_path)
    other = tmp_path / "other.yaml"
    other.write_text(task.read_text().replace("name: t", "name: other"))
    out = tmp_path / "runs"
    first = run_cli("run", str(task), "--out", str(out), "--no-cache", "--json")
    assert first.exit_code == 0, first.output
    run_dir = Path(json.loads(first.stdout)["run_dir"])

    refused = run_cli("run", str(other), "--resume", str(run_dir), "--no-cache")
    assert refused.exit_code == EXIT_USAGE
    line = error_line(refused.output)
    assert f"--resume: {run_dir} is a run of {task}, not {other}" in " ".join(line.split())
    # The run's own task, named as the same file, is accepted.
    same = run_cli("run", str(task), "--resume", str(run_dir), "--no-cache", "--json")
    assert same.exit_code == 0, same.output


def test_write_if_better_naming_a_folder_fails_before_the_run(tmp_path: Path) -> None:
    task = write(tmp_path)
    folder = tmp_path / "prompts"
    folder.mkdir()
    out = tmp_path / "runs"
    result = run_cli("run", str(task), "--out", str(out), "--write-if-better", str(folder))
    assert result.exit_code == EXIT_USAGE
    assert error_line(result.output).startswith(f"error: --write-if-better: {folder} is a folder")
    assert not out.exists()


def test_a_cache_dir_that_is_a_file_is_a_usage_error_everywhere(tmp_path: Path) -> None:
    task = write(tmp_path)
    cache = tmp_path / "cache"
    cache.write_text("not a folder")
    out = tmp_path / "runs"
    ran = run_cli("run", str(task), "--out", str(out), "--cache-dir", str(cache))
    assert ran.exit_code == EXIT_USAGE and "--cache-dir" in error_line(ran.output)
    assert not out.exists()
    for args in (["eval", str(task)], ["cache", "stats"], ["cache", "clear"]):
        result = run_cli(*args, "--cache-dir", str(cache))
        assert result.exit_code == EXIT_USAGE, (args, result.output)
        assert f"{cache} is a file" in error_line(result.output), args
    assert cache.read_text() == "not a folder"


def test_eval_sends_the_initial_prompt_as_run_does(tmp_path: Path) -> None:
    # A block scalar ends with a newline; run's candidates are stripped, and eval once sent the
    # newline, so the two scored different prompts and shared no cache entry.
    task = write(tmp_path, **{"prompt: Classify.\n": BLOCK_PROMPT})
    cache = tmp_path / "cache"
    out = tmp_path / "runs"
    ran = run_cli("run", str(task), "--out", str(out), "--cache-dir", str(cache), "--json")
    assert ran.exit_code == 0, ran.output
    summary = json.loads(ran.stdout)
    assert summary["initial_prompt"] == "Classify the text.\nAnswer yes or no."
    for extra in ([], ["--prompt-file", str(Path(summary["run_dir"]) / "best_prompt.txt")]):
        evaluated = run_cli("eval", str(task), "--cache-dir", str(cache), "--json", *extra)
        assert evaluated.exit_code == 0, evaluated.output
        usage = json.loads(evaluated.stdout)["usage"]
        assert (usage["requests"], usage["cache_hits"]) == (0, 2), extra
