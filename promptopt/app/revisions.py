"""Prompt files at git revisions: which repository a file is in, the commits that changed it,
and its text at a commit.

Git is read with the `git` command (never by parsing .git), from the repository's top folder,
with no command that can reach the network. Every failure is a UsageError that says what to
fix: not a repository, an unknown revision, a file the revision does not have.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

from promptopt.errors import UsageError
from promptopt.reporting.diff import Commit

# Fields of one commit in `git log`/`git show` output, separated by NUL (a subject may hold any
# other character).
_FORMAT = "%H%x00%an <%ae>%x00%aI%x00%s"


def _git(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "GIT_TERMINAL_PROMPT": "0", "GIT_PAGER": "cat", "LC_ALL": "C"}
    try:
        return subprocess.run(
            ["git", "-c", "core.quotepath=off", *args],
            cwd=root,
            capture_output=True,
            text=True,
            encoding="utf-8",
            errors="replace",
            env=env,
            check=False,
        )
    except FileNotFoundError:
        raise UsageError("git revisions need the git command, which is not installed") from None


def _first_error_line(result: subprocess.CompletedProcess[str]) -> str:
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    return lines[0].removeprefix("fatal: ") if lines else f"git exited with {result.returncode}"


@dataclass(frozen=True)
class RepoFile:
    """A file of a git repository: the repository's top folder and the path inside it."""

    root: Path
    path: str
    """Relative to `root`, with forward slashes, as git names it."""

    @classmethod
    def locate(cls, path: Path | str) -> RepoFile:
        """The repository a file (which need not exist in the working tree) belongs to.

        Args:
            path: The file, relative to the current folder or absolute.

        Returns:
            Its repository and its path there.

        Raises:
            UsageError: The file is in no git repository, or git is not installed.
        """
        absolute = Path(os.path.abspath(path))
        start = absolute.parent
        while not start.is_dir() and start != start.parent:
            start = start.parent
        result = _git(start, "rev-parse", "--show-toplevel")
        if result.returncode != 0:
            raise UsageError(
                f"{path} is not inside a git repository (git: {_first_error_line(result)}); "
                "git revisions (REV:path, --rev, history) need one"
            )
        root = Path(result.stdout.strip())
        # git reports the top folder with symbolic links resolved; so must the file's folder be.
        real = Path(os.path.realpath(start)) / absolute.relative_to(start)
        try:
            relative = real.relative_to(Path(os.path.realpath(root)))
        except ValueError:
            raise UsageError(f"{path} is outside the git repository {root}") from None
        return cls(root, relative.as_posix())

    def commit(self, rev: str) -> Commit:
        """The commit `rev` names (a hash, branch, tag, HEAD~3, ...).

        Raises:
            UsageError: The repository has no such revision.
        """
        if rev.startswith("-"):
            raise UsageError(f"unknown revision {rev!r}")
        # ^{commit}: a tag is followed to its commit; a tree or a blob is no revision of a file.
        result = _git(
            self.root, "rev-parse", "--verify", "--quiet", "--end-of-options", f"{rev}^{{commit}}"
        )
        if result.returncode != 0:
            raise UsageError(f"unknown revision {rev!r} in the git repository {self.root}")
        found = _git(self.root, "show", "-s", f"--format={_FORMAT}", result.stdout.strip())
        if found.returncode != 0:
            raise UsageError(f"{rev!r} does not name a commit: {_first_error_line(found)}")
        return _parse_commit(found.stdout.strip("\n"))

    def text_at(self, commit: Commit) -> str | None:
        """The file's content at `commit`, or None when the commit does not have it."""
        result = _git(self.root, "cat-file", "blob", f"{commit.hash}:{self.path}")
        if result.returncode != 0:
            return None
        return result.stdout

    def commits(
        self, *, revs: int | None = None, since: str | None = None, rev_range: str | None = None
    ) -> list[Commit]:
        """The commits that changed the file, oldest first.

        Args:
            revs: Only the newest this many.
            since: Only commits after this date (any date git understands: 2026-01-31,
                "2 weeks ago").
            rev_range: A revision range (main..HEAD, v1.0..) instead of HEAD's history.

        Returns:
            The commits, oldest first.

        Raises:
            UsageError: git refused the range or the date.
        """
        args = ["log", f"--format={_FORMAT}%x00"]
        if revs is not None:
            args.append(f"--max-count={revs}")
        if since is not None:
            args.append(f"--since={since}")
        if rev_range is not None:
            if rev_range.startswith("-"):
                raise UsageError(f"unknown revision range {rev_range!r}")
            args.append(rev_range)
        result = _git(self.root, *args, "--", self.path)
        if result.returncode != 0:
            raise UsageError(f"git log {self.path}: {_first_error_line(result)}")
        fields = result.stdout.split("\x00")
        commits = [
            _parse_commit("\x00".join(fields[i : i + 4]).strip("\n"))
            for i in range(0, len(fields) - 4, 4)
        ]
        return commits[::-1]


def _parse_commit(line: str) -> Commit:
    hash_, author, date, subject = line.split("\x00", 3)
    return Commit(hash=hash_.strip(), author=author, date=date, subject=subject)


def split_revision(arg: str) -> tuple[str, str] | None:
    """(REV, path) when `arg` is REV:path and no file of that name exists; else None.

    A path that exists wins, so that file names with a colon and the temporary files
    `git difftool` passes are read as files.
    """
    if Path(arg).exists() or ":" not in arg:
        return None
    rev, path = arg.split(":", 1)
    if not rev or not path:
        return None
    return rev, path
