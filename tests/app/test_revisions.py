"""Git revisions as diff sources: REV:path and --rev, their commits in the provenance, the
messages outside a repository or for an unknown revision, and `git difftool -x`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from promptopt.app.compare import read_sides
from promptopt.app.revisions import RepoFile, split_revision
from promptopt.errors import UsageError
from tests.support.diff import BEST_PROMPT, NEW_PROMPT, OLD_PROMPT, run_cli
from tests.support.history import PROMPT_PATH, REVISIONS, SHORT_PROMPT, Repo, git, make_repo


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Repo:
    return make_repo(tmp_path_factory.mktemp("revisions") / "repo")


def diff_json(repo: Repo, *args: str) -> dict[str, object]:
    result = run_cli(
        "diff",
        *args,
        "--task",
        str(repo.task),
        "--cache-dir",
        str(repo.root.parent / "cache"),
        "--format",
        "json",
    )
    assert result.exit_code == 0, result.output
    data: dict[str, object] = json.loads(result.stdout)
    return data


def test_repo_file_lists_commits_oldest_first_with_their_text(repo: Repo) -> None:
    repo_file = RepoFile.locate(repo.prompt)
    assert repo_file.path == PROMPT_PATH
    commits = repo_file.commits()
    assert [c.hash for c in commits] == list(repo.commits)
    assert [c.subject for c in commits] == [subject for _, subject in REVISIONS]
    assert commits[0].author == "Ada Tester <ada@example.com>"
    assert commits[0].date.startswith("2026-01-01T12:00:00")
    assert repo_file.text_at(commits[1]) == NEW_PROMPT + "\n"
    assert [c.hash for c in repo_file.commits(revs=2)] == list(repo.commits[2:])
    assert [c.hash for c in repo_file.commits(rev_range="HEAD~2..HEAD")] == list(repo.commits[2:])
    assert [c.hash for c in repo_file.commits(since="2026-01-02T18:00:00+00:00")] == list(
        repo.commits[2:]
    )


def test_split_revision_prefers_existing_files(repo: Repo, tmp_path: Path) -> None:
    assert split_revision(f"HEAD~1:{repo.prompt}") == ("HEAD~1", str(repo.prompt))
    odd = tmp_path / "a:b.txt"
    odd.write_text("x")
    assert split_revision(str(odd)) is None
    assert split_revision("plain.txt") is None


def test_diff_of_a_revision_and_the_working_tree_names_the_commit(repo: Repo) -> None:
    data = diff_json(repo, f"HEAD~3:{repo.prompt}", str(repo.prompt))
    provenance = data["provenance"]
    assert isinstance(provenance, dict)
    old, new = provenance["old"], provenance["new"]
    assert old["commit"] == {
        "hash": repo.commits[0],
        "author": "Ada Tester <ada@example.com>",
        "date": "2026-01-01T12:00:00+00:00",
        "subject": "Add the support prompt",
    }
    assert repo.commits[0][:8] in old["label"] and new["commit"] is None
    prompts = data["prompts"]
    assert isinstance(prompts, dict)
    assert prompts["old"] == OLD_PROMPT and prompts["new"] == SHORT_PROMPT


def test_two_revisions_and_rev_option(repo: Repo, monkeypatch: pytest.MonkeyPatch) -> None:
    # From a folder inside the repository, paths relative to it.
    monkeypatch.chdir(repo.root / "prompts")
    data = diff_json(repo, "HEAD~2:support.txt", f"{repo.commits[2][:10]}:support.txt")
    prompts, provenance = data["prompts"], data["provenance"]
    assert isinstance(prompts, dict) and isinstance(provenance, dict)
    assert (prompts["old"], prompts["new"]) == (NEW_PROMPT, BEST_PROMPT)
    assert provenance["new"]["commit"]["subject"] == "Label only"
    assert data["verdict"] == "no significant change"

    data = diff_json(repo, "support.txt", "--rev", "main~2")
    prompts, provenance = data["prompts"], data["provenance"]
    assert isinstance(prompts, dict) and isinstance(provenance, dict)
    assert (prompts["old"], prompts["new"]) == (NEW_PROMPT, SHORT_PROMPT)
    assert provenance["old"]["commit"]["hash"] == repo.commits[1]
    assert "working tree" in provenance["new"]["label"]
    assert data["verdict"] == "regressed"


def test_markdown_provenance_shows_both_commits(repo: Repo) -> None:
    result = run_cli(
        "diff",
        f"HEAD~3:{repo.prompt}",
        f"HEAD:{repo.prompt}",
        "--task",
        str(repo.task),
        "--cache-dir",
        str(repo.root.parent / "cache"),
        "--format",
        "md",
    )
    assert result.exit_code == 0, result.output
    assert f"| old commit | {repo.commits[0]} (2026-01-01T12:00:00+00:00, Ada Tester" in (
        result.stdout.replace("\\<", "<").replace("\\>", ">")
    )
    assert "| new commit | " + repo.commits[3] in result.stdout


def test_unknown_revision_and_missing_file_exit_2(repo: Repo) -> None:
    for args, message in (
        ((f"nosuchrev:{repo.prompt}", str(repo.prompt)), "unknown revision 'nosuchrev'"),
        ((str(repo.prompt), "--rev", "v9.9"), "unknown revision 'v9.9'"),
        ((f"HEAD:{repo.root / 'prompts/other.txt'}", str(repo.prompt)), "does not exist at HEAD"),
        ((str(repo.prompt), str(repo.prompt), "--rev", "HEAD"), "--rev compares"),
    ):
        result = run_cli("diff", *args, "--task", str(repo.task))
        assert result.exit_code == 2, result.output
        assert message in " ".join(result.output.split()), result.output


def test_outside_a_repository_says_so(tmp_path: Path) -> None:
    (tmp_path / "p.txt").write_text("hi\n")
    with pytest.raises(UsageError, match="is not inside a git repository"):
        read_sides(f"HEAD:{tmp_path / 'p.txt'}", str(tmp_path / "p.txt"))
    result = run_cli("diff", str(tmp_path / "p.txt"), "--rev", "HEAD", "--task", "t.yaml")
    assert result.exit_code == 2
    assert "not inside a git repository" in " ".join(result.output.split())


def test_works_as_git_difftool(repo: Repo) -> None:
    # git passes two temporary files ($LOCAL and $REMOTE) to the command.
    env = {**os.environ, "PYTHONPATH": str(Path.cwd())}
    command = (
        f"{sys.executable} -m promptopt diff --task {repo.task} "
        f"--cache-dir {repo.root.parent / 'cache'} --format json"
    )
    result = subprocess.run(
        ["git", "difftool", "-y", "-x", command, "HEAD~3", "HEAD~2", "--", PROMPT_PATH],
        cwd=repo.root,
        capture_output=True,
        text=True,
        env=env,
        check=False,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert (data["prompts"]["old"], data["prompts"]["new"]) == (OLD_PROMPT, NEW_PROMPT)
    assert data["verdict"] == "improved"
    assert git(repo.root, "status", "--porcelain") == ""
