"""The run folder: append-only JSONL logs and atomically replaced JSON/text files."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from pydantic import ValidationError

from promptopt.errors import UsageError
from promptopt.run.records import (
    BestDemosRecord,
    CandidateRecord,
    ConfigRecord,
    DemoRecord,
    EventRecord,
    FinalEvalRecord,
    Record,
    SummaryRecord,
)
from promptopt.util.files import drop_partial_last_line, read_jsonl, write_atomic
from promptopt.util.redact import redact

CONFIG = "config.json"
EVENTS = "events.jsonl"
CANDIDATES = "candidates.jsonl"
RESPONSES = "responses.jsonl"
BEST_PROMPT = "best_prompt.txt"
BEST_DEMOS = "best_demos.json"
SUMMARY = "summary.json"
REPORT_MD = "report.md"
REPORT_HTML = "report.html"
FINAL_EVAL = "final_eval.json"
PREFERENCES = "preferences.jsonl"

_R = TypeVar("_R", bound=Record)


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-") or "run"


class RunFolder:
    """One run's folder."""

    def __init__(self, path: Path) -> None:
        self.path = path

    @classmethod
    def create(cls, out_dir: Path, task_name: str, now: datetime | None = None) -> RunFolder:
        """A new, empty folder named after the task and the time."""
        stamp = (now or datetime.now(UTC)).strftime("%Y%m%d-%H%M%S")
        base = f"{_slug(task_name)}-{stamp}"
        try:
            out_dir.mkdir(parents=True, exist_ok=True)
            for i in range(1000):
                path = out_dir / (base if i == 0 else f"{base}-{i}")
                try:
                    path.mkdir()
                    return cls(path)
                except FileExistsError:
                    continue
        except OSError as exc:
            raise UsageError(f"--out: cannot create a run folder in {out_dir}: {exc}") from exc
        raise UsageError(f"--out: too many runs named {base} in {out_dir}")

    @classmethod
    def open(cls, path: Path) -> RunFolder:
        """An existing run folder (for --resume and report); a line cut short by a kill at the
        end of a JSONL log is dropped, so that appending goes on from a whole line."""
        config = path / CONFIG
        if not config.is_file():
            raise UsageError(f"{path} is not a run folder (it has no {CONFIG})")
        try:
            data = json.loads(config.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise UsageError(f"{config} is not a promptopt run config: {exc}") from None
        if not isinstance(data, dict) or "task_path" not in data or "settings" not in data:
            raise UsageError(f"{config} is not a promptopt run config (no task_path/settings)")
        for name in (EVENTS, CANDIDATES):
            drop_partial_last_line(path / name)
        return cls(path)

    def file(self, name: str) -> Path:
        """The path of a file in the folder."""
        return self.path / name

    def write_json(self, name: str, data: Mapping[str, Any]) -> None:
        """Atomically replace a JSON file (API keys are masked)."""
        write_atomic(self.file(name), redact(json.dumps(data, indent=2, ensure_ascii=False)) + "\n")

    def read_json(self, name: str) -> dict[str, Any] | None:
        """A JSON file's content, or None when it does not exist."""
        path = self.file(name)
        if not path.exists():
            return None
        data = json.loads(path.read_text(encoding="utf-8"))
        return data if isinstance(data, dict) else None

    def write_text(self, name: str, text: str) -> None:
        """Atomically replace a text file (API keys are masked)."""
        write_atomic(self.file(name), redact(text))

    def append_jsonl(self, name: str, records: Iterable[Mapping[str, Any]]) -> None:
        """Append records, one JSON object per line."""
        lines = [
            redact(json.dumps(r, ensure_ascii=False, separators=(",", ":"))) + "\n" for r in records
        ]
        if not lines:
            return
        with self.file(name).open("a", encoding="utf-8") as handle:
            handle.writelines(lines)
            handle.flush()

    def read_jsonl(self, name: str) -> list[dict[str, Any]]:
        """Complete records of a JSONL file (a line cut short by a kill is ignored)."""
        return read_jsonl(self.file(name))

    # Typed records: what promptopt itself reads and writes.

    def _parse(self, name: str, model: type[_R], data: Any, within: str = "") -> _R:
        try:
            return model.model_validate(data)
        except ValidationError as exc:
            first = exc.errors()[0]
            parts = [within] if within else []
            where = ".".join([*parts, *(str(part) for part in first["loc"])]) or "(top level)"
            raise UsageError(
                f"{self.file(name)}: {where}: {first['msg']} (the run folder is damaged or was "
                "not written by promptopt)"
            ) from None

    def _read_record(self, name: str, model: type[_R]) -> _R | None:
        try:
            data = self.read_json(name)
        except (OSError, json.JSONDecodeError) as exc:
            raise UsageError(f"{self.file(name)} cannot be read: {exc}") from None
        return None if data is None else self._parse(name, model, data)

    def config(self) -> ConfigRecord | None:
        """config.json, or None when it does not exist."""
        return self._read_record(CONFIG, ConfigRecord)

    def summary(self) -> SummaryRecord | None:
        """summary.json, or None before the first checkpoint."""
        return self._read_record(SUMMARY, SummaryRecord)

    def final_eval(self) -> FinalEvalRecord | None:
        """final_eval.json, or None when the run has not reached its final evaluation."""
        return self._read_record(FINAL_EVAL, FinalEvalRecord)

    def best_demos(self) -> BestDemosRecord | None:
        """best_demos.json, or None when the run searched no demonstrations (or has not ended)."""
        return self._read_record(BEST_DEMOS, BestDemosRecord)

    def initial_demos(self) -> list[DemoRecord]:
        """The initial prompt's own demonstrations (`run --demos-file`), as config.json keeps
        them, in the order they are sent; empty for a run without."""
        config = self.config()
        raw = (config.settings.model_extra or {}).get("initial_demos") if config else None
        if raw is None:
            return []
        if not isinstance(raw, list):
            raise UsageError(
                f"{self.file(CONFIG)}: settings.initial_demos: not a list of demonstrations (the "
                "run folder is damaged or was not written by promptopt)"
            )
        return [
            self._parse(CONFIG, DemoRecord, item, f"settings.initial_demos.{i}")
            for i, item in enumerate(raw)
        ]

    def events(self) -> list[EventRecord]:
        """events.jsonl in order."""
        return [self._parse(EVENTS, EventRecord, r) for r in self.read_jsonl(EVENTS)]

    def candidates(self) -> dict[str, CandidateRecord]:
        """The latest record of every candidate (a later line for an id supersedes earlier ones)."""
        latest: dict[str, CandidateRecord] = {}
        for raw in self.read_jsonl(CANDIDATES):
            record = self._parse(CANDIDATES, CandidateRecord, raw)
            latest[record.id] = record
        return latest

    def write_record(self, name: str, record: Record) -> None:
        """Atomically replace config.json, summary.json or final_eval.json with a record."""
        self.write_json(name, record.to_json())

    def append_records(self, name: str, records: Iterable[Record]) -> None:
        """Append records to events.jsonl or candidates.jsonl."""
        self.append_jsonl(name, [r.to_json() for r in records])
