"""`promptopt diff` on the command line: --max-flips caps the flips; a refused comparison names
what differs; --old-demos and --new-demos send demos files with a side."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.diff import NEW_PROMPT, OLD_PROMPT, make_run, make_task, run_cli


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("diff-cli")
    task = make_task(root / "task")
    for name, text in (("old", OLD_PROMPT), ("new", NEW_PROMPT)):
        (root / f"{name}.txt").write_text(text + "\n")
    return {"root": root, "task": task, "cache": root / "cache"}


def diff_files(env: dict[str, Path], old: str, new: str, *args: str) -> Any:
    """`promptopt diff` of two of the fixture's prompt files, on its task and cache."""
    root = env["root"]
    return run_cli(
        "diff",
        str(root / old),
        str(root / new),
        "--task",
        str(env["task"]),
        "--cache-dir",
        str(env["cache"]),
        *args,
        env={"COLUMNS": "250"},
    )


def terminal_diff(env: dict[str, Path], *args: str) -> str:
    result = diff_files(env, "old.txt", "new.txt", *args)
    assert result.exit_code == 0, result.output
    return str(result.stdout)


def test_max_flips_caps_the_terminal_view(env: dict[str, Path]) -> None:
    # 2 regressions and 10 improvements (tests.support.diff).
    capped = terminal_diff(env, "--max-flips", "3")
    assert capped.count("regression 1.00→0.00") == 2 and capped.count("improvement 0.00→1.00") == 1
    assert "… and 9 more" in capped
    every = terminal_diff(env, "--max-flips", "0")
    assert every.count("improvement 0.00→1.00") == 10 and "more (--max-flips" not in every


def test_the_default_cap_lists_a_few_flips_in_full(env: dict[str, Path]) -> None:
    shown = terminal_diff(env)
    assert shown.count("improvement 0.00→1.00") == 10 and "… and" not in shown


def test_improvements_are_listed_in_natural_id_order(env: dict[str, Path]) -> None:
    shown = terminal_diff(env, "--max-flips", "0")
    ids = [line.split("│")[2].strip() for line in shown.splitlines() if "improvement 0.00" in line]
    assert ids == sorted(ids, key=lambda i: int(i[1:]))


def test_a_bad_max_flips_names_the_flag(env: dict[str, Path]) -> None:
    result = run_cli("diff", "a.txt", "b.txt", "--max-flips", "-1")
    assert result.exit_code == 2 and "--max-flips" in result.output


def test_a_refused_comparison_names_the_metric(env: dict[str, Path]) -> None:
    run = make_run(env["task"], env["root"] / "runs", env["cache"])
    spec = yaml.safe_load(env["task"].read_text())
    spec["metric"] = {"type": "exact"}
    (env["root"] / "task" / "other.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    other = env["root"] / "task" / "other.yaml"
    result = run_cli("diff", str(run), "--task", str(other), "--cache-dir", str(env["cache"]))
    assert result.exit_code == 2
    text = " ".join(result.output.split())
    assert "cannot be compared" in text and "differs from" in text
    assert text.count(f"{other} in its metric") == 2
    assert "input template" not in text and "data," not in text


def test_demos_files_are_sent_with_a_prompt_file_side(env: dict[str, Path]) -> None:
    root = env["root"]
    demos = [{"id": "r1", "input": "review 1: a dull film", "output": "negative"}]
    (root / "demos.json").write_text(json.dumps({"id": "c0003", "demos": demos}))
    result = diff_files(
        env, "old.txt", "old.txt", "--new-demos", str(root / "demos.json"), "--format", "json"
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["demos"] == {"old": [], "new": demos}
    assert report["provenance"]["new"]["label"].endswith("+ 1 demos (r1)")
    # The same system prompt, but the new side's requests carried the demonstration.
    assert report["prompts"]["old"] == report["prompts"]["new"]
    assert report["usage"]["delta"]["input_tokens"] > 0


def test_an_unreadable_demos_file_names_the_flag(env: dict[str, Path]) -> None:
    root = env["root"]
    (root / "bad-demos.json").write_text('{"demos": [{"id": "r1"}]}')
    result = diff_files(env, "old.txt", "new.txt", "--old-demos", str(root / "bad-demos.json"))
    assert result.exit_code == 2
    assert "--old-demos" in result.output and "id, input and output" in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
