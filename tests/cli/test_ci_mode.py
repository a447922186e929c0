from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from tests.support import REPO
from tests.support.diff import BEST_PROMPT, OLD_PROMPT, make_task, run_cli


@pytest.fixture
def task(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)
    monkeypatch.setenv("PROMPTOPT_CACHE_DIR", str(tmp_path / "cache"))
    return make_task(tmp_path / "task")


def ci_run(task: Path, prompt: Path, *extra: str, env: dict[str, str] | None = None) -> object:
    return run_cli(
        "run",
        str(task),
        "--out",
        str(task.parent / "runs"),
        "--baseline",
        str(prompt),
        "--write-if-better",
        str(prompt),
        "--json",
        *extra,
        env=env,
    )


def test_improved_writes_the_prompt_and_exits_0(task: Path, tmp_path: Path) -> None:
    prompt = tmp_path / "prompt.txt"
    prompt.write_text(OLD_PROMPT + "\n")
    step_summary = tmp_path / "step_summary.md"
    step_summary.write_text("earlier step\n")
    summary_md = tmp_path / "summary.md"
    result = ci_run(
        task,
        prompt,
        "--summary-md",
        str(summary_md),
        env={"GITHUB_STEP_SUMMARY": str(step_summary)},
    )
    assert result.exit_code == 0, result.output  # type: ignore[attr-defined]
    summary = json.loads(result.stdout)  # type: ignore[attr-defined]
    assert summary["initial_prompt"] == OLD_PROMPT  # the baseline was the starting point
    assert summary["test_comparison"]["verdict"] == "improved"
    assert prompt.read_text() == summary["best_prompt"] + "\n"
    assert "label only" in summary["best_prompt"]
    text = summary_md.read_text()
    assert "**Improved**" in text and f"`{prompt}`" in text
    assert "Prompt diff" in text and "Verdict: improved" in text and "Flips" in text
    # Appended to GitHub's step summary, not written over it.
    assert step_summary.read_text() == "earlier step\n" + text
    config = json.loads((Path(summary["run_dir"]) / "config.json").read_text())
    assert config["task"]["prompt"] == OLD_PROMPT


def test_no_significant_gain_exits_3_and_leaves_the_file_alone(task: Path, tmp_path: Path) -> None:
    prompt = tmp_path / "prompt.txt"
    original = (BEST_PROMPT + "\r\n\n").encode()  # already perfect; odd line ends on purpose
    prompt.write_bytes(original)
    summary_md = tmp_path / "summary.md"
    result = ci_run(task, prompt, "--summary-md", str(summary_md))
    assert result.exit_code == 3, result.output  # type: ignore[attr-defined]
    assert prompt.read_bytes() == original
    assert "No significant gain" in summary_md.read_text()
    assert "untouched" in summary_md.read_text()


def test_gain_below_min_improvement_exits_3(task: Path, tmp_path: Path) -> None:
    prompt = tmp_path / "prompt.txt"
    prompt.write_text(OLD_PROMPT + "\n")
    original = prompt.read_bytes()
    result = ci_run(task, prompt, "--min-improvement", "0.9")
    assert result.exit_code == 3, result.output  # type: ignore[attr-defined]
    assert prompt.read_bytes() == original
    assert "--min-improvement" in " ".join(result.output.split())  # type: ignore[attr-defined]


def test_error_exits_1_and_leaves_the_file_alone(task: Path, tmp_path: Path) -> None:
    prompt = tmp_path / "prompt.txt"
    prompt.write_text(OLD_PROMPT + "\n")
    original = prompt.read_bytes()
    summary_md = tmp_path / "summary.md"
    result = ci_run(
        task,
        prompt,
        "--summary-md",
        str(summary_md),
        "--target",
        "scripted:script.py:unauthorized",
    )
    assert result.exit_code == 1, result.output  # type: ignore[attr-defined]
    assert "OPENAI_API_KEY" in result.output  # type: ignore[attr-defined]
    assert prompt.read_bytes() == original
    assert not summary_md.exists()


def test_missing_baseline_is_a_usage_error(task: Path, tmp_path: Path) -> None:
    result = ci_run(task, tmp_path / "missing.txt")
    assert result.exit_code == 2  # type: ignore[attr-defined]
    assert "missing.txt" in result.output  # type: ignore[attr-defined]


def test_help_documents_the_exit_codes() -> None:
    text = " ".join(run_cli("run", "--help").output.split())
    assert "--write-if-better" in text and "--min-improvement" in text
    assert "3 with --write-if-better" in text
    diff_help = " ".join(run_cli("diff", "--help").output.split())
    assert "4 with --fail-on-regression" in diff_help


def test_github_actions_example_wires_the_exit_codes() -> None:
    import yaml

    path = REPO / "examples/github-actions/nightly-optimize.yml"
    workflow = yaml.safe_load(path.read_text())
    steps = workflow["jobs"]["optimize"]["steps"]
    uses = [s.get("uses", "") for s in steps]
    assert any(u.startswith("actions/cache@") for u in uses)
    cache = next(s for s in steps if s.get("uses", "").startswith("actions/cache@"))
    assert cache["with"]["path"] == "${{ env.PROMPTOPT_CACHE_DIR }}"
    run = next(s for s in steps if s.get("id") == "optimize")["run"]
    for flag in ("--baseline", "--write-if-better", "--summary-md promptopt-summary.md"):
        assert flag in run
    assert '3) echo "No significant gain' in run
    pr = next(s for s in steps if s.get("uses", "").startswith("peter-evans/create-pull-request@"))
    assert pr["if"] == "steps.optimize.outputs.exit_code == '0'"
    assert pr["with"]["body-path"] == "promptopt-summary.md"


def test_a_structured_prompt_round_trips_through_the_prompt_file(
    task: Path, tmp_path: Path
) -> None:
    # The task's format is kept as written; the file holds the full prompt a user deploys, and
    # the next run splits the format off again, so it edits the instruction only.
    fmt = "Reply with one word."
    spec = yaml.safe_load(task.read_text())
    spec["prompt"] = {"instruction": OLD_PROMPT, "output_format": fmt}
    task.write_text(yaml.safe_dump(spec, sort_keys=False))
    prompt = tmp_path / "prompt.txt"
    prompt.write_text(OLD_PROMPT + "\n")  # an instruction only, to begin with

    first = ci_run(task, prompt)
    assert first.exit_code == 0, first.output  # type: ignore[attr-defined]
    summary = json.loads(first.stdout)  # type: ignore[attr-defined]
    assert summary["initial_prompt"] == f"{OLD_PROMPT}\n\n{fmt}"
    assert summary["best_prompt"] == f"{summary['best_instruction']}\n\n{fmt}"
    assert prompt.read_text() == summary["best_prompt"] + "\n"
    assert fmt in (Path(summary["run_dir"]) / "report.md").read_text()

    second = ci_run(task, prompt)
    assert second.exit_code == 3, second.output  # type: ignore[attr-defined]
    again = json.loads(second.stdout)  # type: ignore[attr-defined]
    assert again["initial_prompt"] == summary["best_prompt"]
    assert again["initial_instruction"] == summary["best_instruction"]
    config = json.loads((Path(again["run_dir"]) / "config.json").read_text())
    assert config["task"]["prompt"] == {
        "instruction": summary["best_instruction"],
        "output_format": fmt,
        "demos": None,
    }


KEYED_TARGET = """

def keyed(request):
    # Right on every review once a demonstration's review says "superb"; else always positive.
    shown = [m["content"] for m in request.messages[1:-1] if m["role"] == "user"]
    review = request.messages[-1]["content"]
    if any("superb" in text for text in shown):
        return "positive" if any(w in review for w in WORDS_GOOD) else "negative"
    return "positive"
"""


def test_demonstrations_round_trip_through_the_demos_file(tmp_path: Path) -> None:
    # Night one finds demonstrations and writes them with the prompt; night two starts from
    # both, finds nothing better and leaves both files alone.
    task = make_task(tmp_path / "task", target="keyed")
    with (task.parent / "script.py").open("a") as script:
        script.write(KEYED_TARGET)
    spec = yaml.safe_load(task.read_text())
    spec["prompt"] = {"instruction": OLD_PROMPT, "demos": {"k": 2}}
    task.write_text(yaml.safe_dump(spec, sort_keys=False))
    prompt, demos = tmp_path / "prompt.txt", tmp_path / "prompt.demos.json"
    prompt.write_text(OLD_PROMPT + "\n")
    strategy = ("--strategy", "demos")

    refused = ci_run(task, prompt, *strategy)
    assert refused.exit_code == 3, refused.output  # type: ignore[attr-defined]
    assert "--demos-file" in " ".join(refused.output.split())  # type: ignore[attr-defined]

    first = ci_run(task, prompt, *strategy, "--demos-file", str(demos))
    assert first.exit_code == 0, first.output  # type: ignore[attr-defined]
    summary = json.loads(first.stdout)  # type: ignore[attr-defined]
    assert summary["scores"]["best"]["test"] == 1.0 and "initial_demos" not in summary
    assert prompt.read_text() == OLD_PROMPT + "\n"  # the same text: the demos made the gain
    written = json.loads(demos.read_text())
    assert written == json.loads((Path(summary["run_dir"]) / "best_demos.json").read_text())
    assert [d["id"] for d in written["demos"]] == summary["best_demos"]
    assert "few-shot demonstrations to" in " ".join(first.output.split())  # type: ignore[attr-defined]

    # A summary alone (no --write-if-better) says the gain, since the demos file carries the
    # demonstrations.
    summary_md = tmp_path / "summary.md"
    other = tmp_path / "other.demos.json"
    alone = run_cli(
        "run",
        str(task),
        "--out",
        str(task.parent / "runs"),
        *strategy,
        "--demos-file",
        str(other),
        "--summary-md",
        str(summary_md),
    )
    assert alone.exit_code == 0, alone.output
    assert "**Improved**" in summary_md.read_text() and not other.exists()

    before = demos.read_bytes()
    second = ci_run(task, prompt, *strategy, "--demos-file", str(demos))
    assert second.exit_code == 3, second.output  # type: ignore[attr-defined]
    again = json.loads(second.stdout)  # type: ignore[attr-defined]
    assert again["initial_demos"] == summary["best_demos"]
    assert again["scores"]["initial"]["test"] == 1.0
    assert demos.read_bytes() == before and prompt.read_text() == OLD_PROMPT + "\n"


def test_a_demos_file_of_held_out_examples_is_a_usage_error(task: Path, tmp_path: Path) -> None:
    prompt, demos = tmp_path / "prompt.txt", tmp_path / "demos.json"
    prompt.write_text(OLD_PROMPT + "\n")
    demos.write_text(json.dumps([{"id": "r205", "input": "review 205", "output": "negative"}]))
    result = ci_run(task, prompt, "--demos-file", str(demos))
    assert result.exit_code == 2, result.output  # type: ignore[attr-defined]
    text = " ".join(result.output.split())  # type: ignore[attr-defined]
    assert "--demos-file" in text and "'r205' is a test example" in text
    assert "Traceback" not in text


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "--demos-file: cannot read the demonstrations file"),
        ('[{"id": "r1"}]', "a demonstration needs id, input and output"),
        (
            json.dumps([{"id": "r1", "input": "a", "output": "b"}] * 2),
            "'r1' is there twice",
        ),
    ],
)
def test_a_bad_demos_file_is_a_usage_error_naming_the_flag(
    task: Path, tmp_path: Path, content: str, message: str
) -> None:
    prompt, demos = tmp_path / "prompt.txt", tmp_path / "demos.json"
    prompt.write_text(OLD_PROMPT + "\n")
    demos.write_text(content)
    result = ci_run(task, prompt, "--demos-file", str(demos))
    assert result.exit_code == 2, result.output  # type: ignore[attr-defined]
    text = " ".join(result.output.split())  # type: ignore[attr-defined]
    assert message in text and "Traceback" not in text
    assert not (task.parent / "runs").exists()  # refused before any run folder


@pytest.mark.parametrize(
    ("where", "message"),
    [
        ("same", "name the same file"),
        ("missing/demos.json", "does not exist"),
    ],
)
def test_demos_file_paths_are_checked_before_the_run(
    task: Path, tmp_path: Path, where: str, message: str
) -> None:
    prompt = tmp_path / "prompt.txt"
    prompt.write_text(OLD_PROMPT + "\n")
    demos = prompt if where == "same" else tmp_path / where
    result = ci_run(task, prompt, "--demos-file", str(demos))
    assert result.exit_code == 2, result.output  # type: ignore[attr-defined]
    assert message in " ".join(result.output.split())  # type: ignore[attr-defined]
    assert not (task.parent / "runs").exists()


def test_written_files_keep_normal_modes(task: Path, tmp_path: Path) -> None:
    import os
    import stat

    def mode(path: Path) -> int:
        return stat.S_IMODE(path.stat().st_mode)

    prompt = tmp_path / "prompt.txt"
    prompt.write_text(OLD_PROMPT + "\n")
    prompt.chmod(0o664)
    old_umask = os.umask(0o022)
    try:
        result = ci_run(task, prompt, "--summary-md", str(tmp_path / "summary.md"))
    finally:
        os.umask(old_umask)
    assert result.exit_code == 0, result.output  # type: ignore[attr-defined]
    assert mode(prompt) == 0o664
    run_dir = Path(json.loads(result.stdout)["run_dir"])  # type: ignore[attr-defined]
    for name in ("report.md", "report.html", "summary.json", "best_prompt.txt", "config.json"):
        assert mode(run_dir / name) == 0o644, name
    assert mode(tmp_path / "summary.md") == 0o644


FLAKY = """

from promptopt.errors import TransientProviderError


def flaky(request):
    # Two test reviews never get an answer: the endpoint times out on them.
    if request.messages[-1]["content"].startswith(("review 200:", "review 201:")):
        raise TransientProviderError("timed out", kind="timed out")
    return target(request)


def flaky_dev(request):
    if request.messages[-1]["content"].startswith(("review 100:", "review 101:")):
        raise TransientProviderError("timed out", kind="timed out")
    return target(request)
"""


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("flaky", "example(s) of the final test evaluation failed"),
        ("flaky_dev", "example(s) of the final dev evaluation failed"),
    ],
)
def test_errors_in_the_final_evaluation_fail_the_gate_not_no_gain(
    tmp_path: Path, target: str, message: str
) -> None:
    task = make_task(tmp_path / "flaky", target=target)
    with (task.parent / "script.py").open("a") as script:
        script.write(FLAKY)
    spec = yaml.safe_load(task.read_text())
    spec["errors"] = {"max_retries": 0}
    task.write_text(yaml.safe_dump(spec, sort_keys=False))
    prompt = tmp_path / "prompt.txt"
    prompt.write_text(BEST_PROMPT + "\n")  # already perfect: without errors, "no gain" (3)
    result = ci_run(task, prompt, env={"PROMPTOPT_CACHE_DIR": str(tmp_path / "cache")})
    assert result.exit_code == 1, result.output  # type: ignore[attr-defined]
    assert "no significant gain" not in result.output  # type: ignore[attr-defined]
    assert message in result.stderr  # type: ignore[attr-defined]
    assert prompt.read_text() == BEST_PROMPT + "\n"


def test_a_resumed_run_refuses_a_demos_file_it_did_not_start_from(
    task: Path, tmp_path: Path
) -> None:
    run = run_cli("run", str(task), "--out", str(tmp_path / "runs"), "--json")
    assert run.exit_code == 0, run.output
    run_dir = json.loads(run.stdout)["run_dir"]
    demos = tmp_path / "demos.json"
    demos.write_text('[{"id": "r1", "input": "review 1", "output": "negative"}]')
    resumed = run_cli("run", "--resume", run_dir, "--demos-file", str(demos))
    assert resumed.exit_code == 2, resumed.output
    assert "holds other demonstrations than the run started from" in " ".join(
        resumed.output.split()
    )
    # The demonstrations it did start from (none: an empty list) are accepted.
    demos.write_text("[]")
    same = run_cli("run", "--resume", run_dir, "--demos-file", str(demos))
    assert same.exit_code == 0, same.output


def test_a_relative_prompt_path_in_the_working_folder_is_written(
    task: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    Path("prompt.txt").write_text(OLD_PROMPT + "\n")
    result = ci_run(task, Path("prompt.txt"))
    assert result.exit_code == 0, result.output  # type: ignore[attr-defined]
    assert "label only" in Path("prompt.txt").read_text()
