"""A run with --batch killed while its batch is out resumes by polling it: the server sees no
request submitted twice, and the resumed run batches on without being asked to."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import yaml

from promptopt.app.run import execute_run, prepare_resume, prepare_run
from promptopt.llm.batch import BatchProgress
from promptopt.llm.client import RunStopped
from promptopt.run.folder import RunFolder
from promptopt.search.plan import StopRules
from promptopt.task.loader import load_task
from promptopt.testing.fake_batch import FakeBatchServer
from tests.support.search import with_loadable_models, write_task


def reply(body: dict[str, Any]) -> str:
    review = str(body["messages"][-1]["content"])
    return "negative" if any(w in review for w in ("dull", "awful", "tedious")) else "positive"


def task_file(tmp_path: Path, srv: FakeBatchServer) -> Path:
    path = with_loadable_models(write_task(tmp_path, budget={"target_calls": 200}))
    spec = yaml.safe_load(path.read_text())
    spec["models"]["target"] = {
        "model": "openai:fake-model",
        "base_url": srv.base_url,
        "temperature": 0,
        "max_tokens": 8,
        "price": {"input": 2.0, "output": 8.0},
    }
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


async def test_a_killed_batch_run_resumes_by_polling_its_batches(tmp_path: Path) -> None:
    with FakeBatchServer(reply=reply, polls_to_end=1) as srv:
        task = load_task(task_file(tmp_path, srv))
        srv.hold = True
        stop = asyncio.Event()
        folders: list[RunFolder] = []
        shown: list[BatchProgress] = []
        run = asyncio.ensure_future(
            execute_run(
                prepare_run(task, stop=StopRules(max_steps=1)),
                out=tmp_path / "runs",
                cache_dir=tmp_path / "cache",
                stop=stop,
                on_folder=folders.append,
                batch=True,
                on_batch_progress=shown.append,
            )
        )
        while srv.batch_polls < 2:
            await asyncio.sleep(0.01)
        stop.set()
        try:
            await run
            raise AssertionError("the run should have stopped")
        except RunStopped:
            pass
        assert srv.batch_submissions == 1
        assert shown and shown[-1].in_progress == shown[-1].submitted
        out_before_resume = srv.batched_by_body

        srv.hold = False
        summary = await execute_run(prepare_resume(folders[0].path), cache_dir=tmp_path / "cache")
        assert summary.best_prompt
        batched = srv.batched_by_body
        assert set(out_before_resume) <= set(batched)
        assert max(batched.values()) == 1  # nothing was submitted twice
        assert srv.batch_submissions > 1  # the resumed run went on batching, unasked
        assert srv.requests_total == 0


async def test_a_new_run_with_the_same_cache_polls_the_batches_a_killed_one_left(
    tmp_path: Path,
) -> None:
    """A CI job restarted from scratch keeps only its cache: the new run asks for the same
    requests and polls the batch the killed run submitted."""
    with FakeBatchServer(reply=reply, polls_to_end=1) as srv:
        task = load_task(task_file(tmp_path, srv))
        srv.hold = True
        stop = asyncio.Event()
        run = asyncio.ensure_future(
            execute_run(
                prepare_run(task, stop=StopRules(max_steps=1)),
                out=tmp_path / "first",
                cache_dir=tmp_path / "cache",
                stop=stop,
                batch=True,
            )
        )
        while srv.batch_polls < 2:
            await asyncio.sleep(0.01)
        stop.set()
        try:
            await run
            raise AssertionError("the run should have stopped")
        except RunStopped:
            pass
        assert srv.batch_submissions == 1

        srv.hold = False
        await execute_run(
            prepare_run(task, stop=StopRules(max_steps=1)),
            out=tmp_path / "second",
            cache_dir=tmp_path / "cache",
            batch=True,
        )
        assert max(srv.batched_by_body.values()) == 1  # nothing was submitted twice
        assert srv.requests_total == 0
        assert not list((tmp_path / "cache" / "batches").glob("*.json"))  # all taken
