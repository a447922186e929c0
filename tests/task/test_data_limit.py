"""`eval --limit`: one split alone, read only as far as the rows it scores."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from promptopt.errors import TaskFileError
from promptopt.task.loader import load_task


def big_task(tmp_path: Path, suffix: str) -> Path:
    rows = [{"id": f"r{i}", "input": f"text {i}", "target": "a"} for i in range(1000)]
    if suffix == ".jsonl":
        lines = [json.dumps(r) for r in rows]
        lines[600] = "{not json"  # past the rows asked for: never read
        (tmp_path / f"dev{suffix}").write_text("\n".join(lines) + "\n")
    else:
        lines = ["id,input,target", *(f"{r['id']},{r['input']},{r['target']}" for r in rows)]
        lines[601] = "r600,too,many,values"
        (tmp_path / f"dev{suffix}").write_text("\n".join(lines) + "\n")
    (tmp_path / "train.jsonl").write_text("{broken\n")  # another split: not read by eval
    task = {
        "name": "big",
        "prompt": "Answer.",
        "data": {"train": "train.jsonl", "dev": f"dev{suffix}"},
        "metric": {"type": "exact"},
        "models": {"target": {"model": "scripted:x"}},
    }
    path = tmp_path / "task.yaml"
    path.write_text(yaml.safe_dump(task))
    return path


@pytest.mark.parametrize("suffix", [".jsonl", ".csv"])
def test_a_limited_load_reads_only_the_rows_it_needs(tmp_path: Path, suffix: str) -> None:
    path = big_task(tmp_path, suffix)
    task = load_task(path, only="dev", limit=5)
    assert set(task.splits) == {"dev"}
    assert [e.id for e in task.split("dev")] == [f"r{i}" for i in range(5)]
    # The whole file (and the other split) has problems a full load reports.
    with pytest.raises(TaskFileError):
        load_task(path)


def test_rows_with_problems_do_not_count_towards_the_limit(tmp_path: Path) -> None:
    path = big_task(tmp_path, ".jsonl")
    dev = tmp_path / "dev.jsonl"
    lines = dev.read_text().split("\n")
    lines.insert(1, json.dumps({"id": "bad", "target": "a"}))  # no input field
    dev.write_text("\n".join(lines))
    with pytest.raises(TaskFileError, match="input"):
        load_task(path, only="dev", limit=5)
