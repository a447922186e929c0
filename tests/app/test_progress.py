"""A run reports its progress through a callback: the search's target calls, then the final
evaluation's, each out of the most it may send."""

from __future__ import annotations

import asyncio
from pathlib import Path

from promptopt.app.run import RunProgress, execute_run, prepare_run
from promptopt.llm.cache import NullCache
from promptopt.search.plan import final_reserve
from promptopt.task.loader import load_task
from tests.support.search import providers, write_task


def test_a_run_reports_the_search_then_the_final_evaluation(tmp_path: Path) -> None:
    task = load_task(write_task(tmp_path, budget={"target_calls": 400}))
    prepared = prepare_run(
        task,
        params={"num_subsamples": 2, "proposals_per_subsample": 2, "selection_budget": 40},
    )
    seen: list[RunProgress] = []
    summary = asyncio.run(
        execute_run(
            prepared,
            out=tmp_path / "runs",
            providers=providers(),
            store=NullCache(),
            on_progress=seen.append,
        )
    )
    reserve = final_reserve(20, 20, 3)
    phases = [p.phase for p in seen]
    assert phases[0] == "search" and phases[-1] == "final"
    assert phases == sorted(phases, key=["search", "final"].index)  # never back to the search
    search = [p for p in seen if p.phase == "search"]
    final = [p for p in seen if p.phase == "final"]
    assert all(p.total == 400 - reserve for p in search)
    assert all(p.total == reserve for p in final)
    assert final[0].done == 0 and 0 < final[-1].done <= reserve
    dones = [p.done for p in final]
    assert dones == sorted(dones)
    sent = summary.usage["target"].requests
    assert search[-1].done + final[-1].done == sent
