"""A run's own record of every model answer it used, so that a killed run resumes without
sending a completed request again, even with --no-cache, and with the same accounting."""

from __future__ import annotations

import json
from collections import defaultdict, deque
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from promptopt.util.files import drop_partial_last_line, read_jsonl


@dataclass(frozen=True)
class JournalEntry:
    """One answer a run used: its value, whether this run paid for it, and what it cost."""

    key: str
    value: dict[str, Any]
    paid: bool
    cost_usd: float


class ResponseJournal:
    """Append-only JSONL of final outcomes (answers, and requests refused for their content);
    on resume its entries are replayed in order, per key."""

    def __init__(self, path: Path) -> None:
        self.path = path
        drop_partial_last_line(path)
        self._pending: dict[str, deque[JournalEntry]] = defaultdict(deque)
        for record in read_jsonl(path):
            entry = JournalEntry(
                str(record["key"]),
                dict(record["value"]),
                bool(record["paid"]),
                float(record.get("cost_usd", 0.0)),
            )
            self._pending[entry.key].append(entry)
        self._handle: IO[str] | None = path.open("a", encoding="utf-8")

    def take(self, key: str) -> JournalEntry | None:
        """The next recorded answer for `key` not yet replayed, if any."""
        queue = self._pending.get(key)
        while queue:
            entry = queue.popleft()
            # Folders written before failures were told apart journaled every failure; one that
            # is not marked permanent was the endpoint's fault, and is sent again.
            if "error" in entry.value and not entry.value.get("permanent"):
                continue
            return entry
        return None

    def has(self, key: str) -> bool:
        """Whether `take(key)` would return an entry (without taking it)."""
        return any(
            "error" not in entry.value or entry.value.get("permanent")
            for entry in self._pending.get(key, ())
        )

    def record(self, key: str, value: dict[str, Any], *, paid: bool, cost_usd: float) -> None:
        """Append one answer; flushed at once so a kill loses nothing already paid for."""
        if self._handle is None:
            return
        line = json.dumps(
            {"key": key, "paid": paid, "cost_usd": cost_usd, "value": value},
            ensure_ascii=False,
            separators=(",", ":"),
        )
        self._handle.write(line + "\n")
        self._handle.flush()

    def close(self) -> None:
        """Close the file."""
        if self._handle is not None:
            self._handle.close()
            self._handle = None
