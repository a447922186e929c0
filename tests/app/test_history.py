"""`promptopt history`: every revision of a prompt file in a temporary git repository scored
once on the same examples, the better revision found, the regression flagged and gated."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest
import yaml

from promptopt.app.history import find_revisions
from promptopt.errors import UsageError
from tests.support import REPO
from tests.support.diff import BEST_PROMPT, OLD_PROMPT, external_references, run_cli
from tests.support.history import REVISIONS, SHORT_PROMPT, Repo, git, make_repo

N_TEST = 20


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Repo:
    return make_repo(tmp_path_factory.mktemp("history") / "repo")


def history(repo: Repo, *args: str, env: dict[str, str] | None = None) -> Any:
    return run_cli(
        "history",
        str(repo.prompt),
        "--task",
        str(repo.task),
        "--cache-dir",
        str(repo.root.parent / "cache"),
        *args,
        env=env,
    )


@pytest.fixture(scope="module")
def report(repo: Repo) -> dict[str, Any]:
    """The JSON history of every revision, scored from an empty cache."""
    before = repo.calls()
    result = history(repo, "--format", "json")
    assert result.exit_code == 0, result.output
    data: dict[str, Any] = json.loads(result.stdout)
    # Every revision scored once on every test example: four distinct prompts.
    assert repo.calls() - before == len(REVISIONS) * N_TEST
    return data


def test_every_revision_scored_with_its_ci(repo: Repo, report: dict[str, Any]) -> None:
    assert report["schema"] == "promptopt.history/1"
    assert report["provenance"]["file"] == "prompts/support.txt"
    assert report["provenance"]["n"] == N_TEST and report["provenance"]["split"] == "test"
    revisions = report["revisions"]
    assert [r["commit"]["hash"] for r in revisions] == list(repo.commits)
    assert [r["score"] for r in revisions] == [0.5, 0.9, 1.0, 0.5]
    assert [r["prompt"] for r in revisions] == [text for text, _ in REVISIONS]
    for r in revisions:
        lo, hi = r["ci95"]
        assert lo <= r["score"] <= hi
        assert r["requests"] == N_TEST and r["cache_hits"] == 0
    assert revisions[0]["ci95"][0] < 0.5 < revisions[0]["ci95"][1]


def test_steps_find_the_improvement_the_regression_and_the_best(
    repo: Repo, report: dict[str, Any]
) -> None:
    steps = report["steps"]
    assert [s["verdict"] for s in steps] == ["improved", "no significant change", "regressed"]
    assert [(s["from"], s["to"]) for s in steps] == list(pairwise(repo.commits))
    assert steps[0]["mcnemar"] == {"b": 2, "c": 10, "p_value": pytest.approx(0.0386, abs=1e-3)}
    assert steps[2]["delta"] == -0.5 and steps[2]["delta_ci95"][1] < 0
    assert steps[2]["mcnemar"]["b"] == 10 and steps[2]["mcnemar"]["p_value"] < 0.05
    segments = [(seg["op"], seg["text"]) for seg in steps[2]["word_diff"]]
    assert ("insert", "brief.") in segments and ("delete", "with the label only.") in segments
    assert report["best"]["hash"] == repo.commits[2]
    assert report["improvements"] == [repo.commits[1]]
    assert report["regressions"] == [repo.commits[3]]
    assert report["newest_regressed"] is True and report["baseline"] is None


def test_a_second_history_sends_no_request(repo: Repo, report: dict[str, Any]) -> None:
    before = repo.calls()
    result = history(repo, "--format", "json")
    assert result.exit_code == 0, result.output
    assert repo.calls() == before
    again = json.loads(result.stdout)
    assert all(r["requests"] == 0 and r["cache_hits"] == N_TEST for r in again["revisions"])
    assert [s["verdict"] for s in again["steps"]] == [s["verdict"] for s in report["steps"]]


def test_fail_on_regression_exits_4(repo: Repo, report: dict[str, Any]) -> None:
    result = history(repo, "--format", "md", "--fail-on-regression")
    assert result.exit_code == 4, result.output
    assert "significantly worse" in result.output
    # Without the newest commit, the newest revision is the best one: no regression.
    result = history(repo, "HEAD~1", "--fail-on-regression", "--format", "json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["newest_regressed"] is False


def test_baseline_gates_the_newest_against_a_revision(repo: Repo, report: dict[str, Any]) -> None:
    result = history(repo, "--revs", "1", "--baseline", "HEAD~1", "--format", "json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert [r["commit"]["hash"] for r in data["revisions"]] == [repo.commits[3]]
    assert data["steps"] == []
    baseline = data["baseline"]
    assert baseline["commit"]["hash"] == repo.commits[2] and baseline["score"] == 1.0
    assert baseline["comparison"]["verdict"] == "regressed" and data["newest_regressed"]
    result = history(repo, "--revs", "1", "--baseline", repo.commits[0], "--fail-on-regression")
    assert result.exit_code == 0, result.output  # 0.5 against 0.5


def test_terminal_and_markdown(repo: Repo, report: dict[str, Any]) -> None:
    result = history(repo)
    assert result.exit_code == 0, result.output
    out = result.stdout
    short = [c[:8] for c in repo.commits]
    assert all(s in out for s in short) and f"{short[2]} ★" in out
    assert "Significant regressions: " + short[3] in " ".join(out.split())
    md = history(repo, "--format", "md").stdout
    assert md.startswith("# Prompt history: prompts/support.txt")
    assert f"**Best revision: {short[2]} (Label only)" in md
    assert f"| 4 | `{short[3]}` | 2026-01-04 | Ada Tester | Shorter prompt | 0.500 |" in md
    assert "**regressed**" in md and "[-with the label only.-]{+brief.+}" in md
    assert "Changes between revisions" in md and "<details>" in md


def test_html_is_self_contained_with_the_plot(
    repo: Repo, report: dict[str, Any], tmp_path: Path
) -> None:
    page = tmp_path / "history.html"
    result = history(repo, "-o", str(page))
    assert result.exit_code == 0, result.output
    html = page.read_text()
    assert external_references(html) == []
    assert '<svg class="history"' in html and 'class="ci-band"' in html
    assert html.count('class="rev regressed"') == 1 and "regression</text>" in html
    assert html.count('class="rev improved"') == 1
    assert "<del>with the label only.</del><ins>brief.</ins>" in html


def test_dry_run_calls_no_model(repo: Repo) -> None:
    before = repo.calls()
    result = history(repo, "--dry-run", "--format", "json")
    assert result.exit_code == 0, result.output
    plan = json.loads(result.stdout)
    assert plan["revisions"] == 4 and plan["target_calls"] == 4 * N_TEST
    assert plan["estimated_cost_usd"] > 0
    assert repo.calls() == before
    text = history(repo, "--dry-run", "--since", "2026-01-02T18:00:00+00:00").stdout
    assert "2 revisions on 20 examples" in text and "at most 40 target calls" in text


def test_max_cost_stops_a_dear_history(repo: Repo, tmp_path: Path) -> None:
    result = run_cli(
        "history",
        str(repo.prompt),
        "--task",
        str(repo.task),
        "--no-cache",
        "--max-cost",
        "0.000001",
    )
    assert result.exit_code != 0
    assert "cost" in result.output.lower()


def test_usage_errors(repo: Repo, tmp_path: Path) -> None:
    (tmp_path / "p.txt").write_text(OLD_PROMPT)
    result = run_cli("history", str(tmp_path / "p.txt"), "--task", str(repo.task))
    assert result.exit_code == 2 and "not inside a git repository" in result.output
    result = history(repo, "nosuch..HEAD")
    assert result.exit_code == 2 and "nosuch" in result.output
    result = history(repo, "--baseline", "nosuch")
    assert result.exit_code == 2 and "unknown revision 'nosuch'" in result.output
    with pytest.raises(UsageError, match="no commit with a prompt"):
        find_revisions(repo.root / "prompts/never.txt")


def test_commits_that_delete_the_file_are_skipped(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", ((OLD_PROMPT, "one"), (BEST_PROMPT, "two")))
    git(repo.root, "rm", "-q", "prompts/support.txt")
    git(repo.root, "commit", "-q", "-m", "drop it")
    repo.prompt.parent.mkdir(exist_ok=True)
    repo.prompt.write_text(SHORT_PROMPT + "\n")
    git(repo.root, "add", "-A")
    git(repo.root, "commit", "-q", "-m", "back")
    plan = find_revisions(repo.prompt)
    assert [r.text for r in plan.revisions] == [OLD_PROMPT, BEST_PROMPT, SHORT_PROMPT]
    assert len(plan.skipped) == 1 and "deletes" in plan.skipped[0]
    assert not plan.uncommitted
    repo.prompt.write_text("Something new.\n")
    assert find_revisions(repo.prompt).uncommitted


def test_the_github_actions_example_gates_on_the_base_branch(repo: Repo, tmp_path: Path) -> None:
    # The example workflow's scoring step, run as written against the test repository with
    # origin/main at the best revision: the newest revision is worse, so exit_code=4.
    workflow = yaml.safe_load((REPO / "examples/github-actions/prompt-history.yml").read_text())
    steps = workflow["jobs"]["history"]["steps"]
    assert steps[0]["with"]["fetch-depth"] == 0
    script = next(s for s in steps if s.get("id") == "history")["run"]
    comment = next(s for s in steps if "gh pr comment" in s.get("run", ""))
    assert "promptopt-history.md" in comment["run"] and "exit_code == '4'" in comment["if"]
    git(repo.root, "update-ref", "refs/remotes/origin/main", repo.commits[2])
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    shim = bin_dir / "promptopt"
    shim.write_text(f'#!/bin/sh\nexec {sys.executable} -m promptopt "$@"\n')
    shim.chmod(0o755)
    env = {
        **os.environ,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "PYTHONPATH": str(REPO),
        "PROMPT": "prompts/support.txt",
        "TASK": str(repo.task),
        "GITHUB_BASE_REF": "main",
        "GITHUB_OUTPUT": str(tmp_path / "output"),
        "GITHUB_STEP_SUMMARY": str(tmp_path / "summary.md"),
        "PROMPTOPT_CACHE_DIR": str(repo.root.parent / "cache"),
    }
    done = subprocess.run(
        ["bash", "-e", "-c", script],
        cwd=repo.root,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert (tmp_path / "output").read_text() == "exit_code=4\n"
    comment_md = (repo.root / "promptopt-history.md").read_text()
    assert comment_md.startswith("# Prompt history") and "Newest against the baseline" in comment_md
    assert (tmp_path / "summary.md").read_text() == comment_md
    (repo.root / "promptopt-history.md").unlink()


def test_the_readme_shows_this_history(repo: Repo, report: dict[str, Any]) -> None:
    # Commits with fixed authors, dates and trees have fixed hashes: the README's example is
    # this repository's history, as an 80-column terminal shows it.
    section = (REPO / "README.md").read_text(encoding="utf-8").split("#### A prompt's history")[1]
    shown = section.split("```text\n")[1].split("```")[0]
    result = history(repo, env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    lines = [line.rstrip() for line in result.stdout.splitlines()]
    assert lines[: len(shown.splitlines())] == shown.splitlines()
