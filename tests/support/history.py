"""A temporary git repository holding a task and four revisions of its prompt file.

The revisions of prompts/support.txt, oldest first, scored on the test split of
tests.support.diff's task (20 examples):
1. OLD_PROMPT: 0.5;
2. NEW_PROMPT: 0.9, a significant improvement (10 flips up, 2 down);
3. BEST_PROMPT: 1.0, better but not significantly (2 flips up) and the best revision;
4. SHORT_PROMPT: 0.5, a significant regression (10 flips down).
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

from tests.support.diff import BEST_PROMPT, NEW_PROMPT, OLD_PROMPT, make_task

SHORT_PROMPT = "Classify the review. Be brief."
PROMPT_PATH = "prompts/support.txt"
REVISIONS = (
    (OLD_PROMPT, "Add the support prompt"),
    (NEW_PROMPT, "Ask for care"),
    (BEST_PROMPT, "Label only"),
    (SHORT_PROMPT, "Shorter prompt"),
)


@dataclass(frozen=True)
class Repo:
    """The repository, its task file (whose target model counts its calls) and its commits."""

    root: Path
    task: Path
    prompt: Path
    commits: tuple[str, ...]
    """Full hashes, oldest first, one per revision of REVISIONS."""

    def calls(self) -> int:
        """Target model calls made so far (the scripted model logs each one)."""
        log = self.task.parent / "calls.log"
        return len(log.read_text().splitlines()) if log.exists() else 0


def git(root: Path, *args: str) -> str:
    """Run git in `root` and return its output."""
    result = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, check=True)
    return result.stdout.strip()


def make_repo(root: Path, revisions: tuple[tuple[str, str], ...] = REVISIONS) -> Repo:
    """A git repository at `root` with the task (not committed) and one commit per revision."""
    root.mkdir(parents=True, exist_ok=True)
    git(root, "init", "-q", "-b", "main")
    git(root, "config", "user.name", "Ada Tester")
    git(root, "config", "user.email", "ada@example.com")
    git(root, "config", "commit.gpgsign", "false")
    task = make_task(root / "task", target="counted")
    (root / ".gitignore").write_text("task/\n")
    prompt = root / PROMPT_PATH
    prompt.parent.mkdir(parents=True, exist_ok=True)
    commits = []
    for i, (text, subject) in enumerate(revisions):
        prompt.write_text(text + "\n")
        git(root, "add", "-A")
        date = f"2026-01-{i + 1:02d}T12:00:00+00:00"
        subprocess.run(
            ["git", "commit", "-q", "-m", subject],
            cwd=root,
            check=True,
            capture_output=True,
            env={**os.environ, "GIT_AUTHOR_DATE": date, "GIT_COMMITTER_DATE": date},
        )
        commits.append(git(root, "rev-parse", "HEAD"))
    return Repo(root, task, prompt, tuple(commits))
