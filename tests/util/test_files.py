"""Atomic file replacement keeps file modes."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from promptopt.util.files import write_atomic


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def umask_022() -> Iterator[None]:
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def test_a_new_file_gets_0644_under_umask_022(tmp_path: Path, umask_022: None) -> None:
    path = tmp_path / "report.md"
    write_atomic(path, "text\n")
    assert path.read_text() == "text\n" and mode(path) == 0o644


def test_a_new_file_follows_the_umask(tmp_path: Path) -> None:
    old = os.umask(0o027)
    try:
        write_atomic(tmp_path / "a.txt", "x")
    finally:
        os.umask(old)
    assert mode(tmp_path / "a.txt") == 0o640


@pytest.mark.parametrize("existing", [0o644, 0o664, 0o600, 0o755])
def test_a_replaced_file_keeps_its_mode(tmp_path: Path, umask_022: None, existing: int) -> None:
    path = tmp_path / "prompt.txt"
    path.write_text("old\n")
    path.chmod(existing)
    write_atomic(path, "new\n")
    assert path.read_text() == "new\n" and mode(path) == existing


def test_no_temporary_file_is_left(tmp_path: Path) -> None:
    write_atomic(tmp_path / "a.json", "{}")
    write_atomic(tmp_path / "a.json", "[]")
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]
