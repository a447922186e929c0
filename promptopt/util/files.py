"""Files that survive a kill: atomic replacement, and JSON Lines whose cut-short last line is
ignored."""

from __future__ import annotations

import json
import os
import secrets
import stat
from pathlib import Path
from typing import Any


def write_atomic(path: Path, text: str) -> None:
    """Replace a file in one step, so a reader or a kill never sees half of it.

    The file keeps its mode when it exists (a prompt file in a repository stays 0644, an
    executable stays executable); a new one gets the usual mode under the umask.
    """
    try:
        keep: int | None = stat.S_IMODE(path.stat().st_mode)
    except FileNotFoundError:
        keep = None
    fd, tmp = _create_temp(path)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            if keep is not None:
                os.fchmod(handle.fileno(), keep)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _create_temp(path: Path) -> tuple[int, str]:
    """A new file beside `path`, created 0666 so that the kernel applies the umask (the
    tempfile module creates 0600, which a replaced report or prompt file would inherit)."""
    for _ in range(100):
        tmp = path.parent / f".{path.name}.{secrets.token_hex(6)}.tmp"
        try:
            return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), str(tmp)
        except FileExistsError:
            continue
    raise FileExistsError(f"no free temporary name beside {path}")


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """Every complete JSON object line of a file; a line cut short by a kill is ignored."""
    if not path.exists():
        return []
    records: list[dict[str, Any]] = []
    with path.open(encoding="utf-8") as handle:
        for line in handle:
            if not line.endswith("\n"):
                break
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(record, dict):
                records.append(record)
    return records


def drop_partial_last_line(path: Path) -> None:
    """Cut a last line that a kill left without its newline."""
    if not path.exists():
        return
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        path.write_bytes(data[: data.rfind(b"\n") + 1])
