"""A task without labels, run for real: the example task on the embedded local models, with
the judge (marked `local`)."""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path

import pytest
import yaml

from promptopt.app.run import execute_run, prepare_run
from promptopt.errors import MissingDependencyError
from promptopt.llm.local_models import resolve_model
from promptopt.task.loader import load_task

REPO = Path(__file__).resolve().parents[2]


def small_review_gist(tmp: Path) -> Path:
    """tasks/review-gist.yaml cut down to a few calls: a pool of two, two comparisons, two dev
    and three test reviews."""
    shutil.copytree(REPO / "tasks" / "data" / "review-gist", tmp / "data" / "review-gist")
    for split, n in (("train", 4), ("dev", 2), ("test", 3)):
        path = tmp / "data" / "review-gist" / f"{split}.jsonl"
        path.write_text("".join(path.read_text().splitlines(keepends=True)[:n]))
    spec = yaml.safe_load((REPO / "tasks" / "review-gist.yaml").read_text())
    spec["search"]["params"].update(induced=1, rephrased=1, comparisons=2, initial_pairs=2)
    spec["search"]["budget"] = {"target_calls": 40, "optimizer_calls": 2, "judge_calls": 30}
    path = tmp / "review-gist.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


@pytest.mark.local
def test_the_label_free_example_runs_end_to_end_with_the_judge(tmp_path: Path) -> None:
    pytest.importorskip("llama_cpp", reason="llama-cpp-python is missing (promptopt-cli[local])")
    try:
        resolve_model("optimizer")
    except MissingDependencyError as missing:
        pytest.skip(f"the local optimizer's weights are absent: {missing}")
    prepared = prepare_run(load_task(small_review_gist(tmp_path)))
    summary = asyncio.run(
        execute_run(prepared, out=tmp_path / "runs", cache_dir=tmp_path / "cache")
    ).to_json()
    assert summary["status"] == "finished", summary
    assert summary["scores"]["best"] == {"dev": None, "test": None}
    usage = summary["usage"]
    assert usage["optimizer"]["requests"] <= 2 and usage["target"]["requests"] <= 40
    assert usage["judge"]["requests"] <= 30
    folder = Path(summary["run_dir"])
    events = [json.loads(x) for x in (folder / "events.jsonl").read_text().splitlines()]
    comparisons = [e for e in events if e["event"] == "comparison"]
    assert comparisons and {c["source"] for c in comparisons} == {"judge"}
    # The dev judging chose the best prompt; when it is not the initial one, every test input
    # was judged too.
    if summary["best_id"] != "c0000":
        dev = summary["dev_preference"]
        assert dev["n"] == 2 and dev["wins"] > dev["losses"]
        assert summary["test_preference"]["n"] == 3
        final = json.loads((folder / "final_eval.json").read_text())
        assert len(final["preferences"]["test"]) == 3
    assert (folder / "report.md").exists()
