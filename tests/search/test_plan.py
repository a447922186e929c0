"""`run --dry-run`'s worst case and the client's reservation come from one function."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from promptopt.app.run import dry_run_plan, prepare_run
from promptopt.llm.budget import BudgetLedger, Reservation
from promptopt.llm.cache import NullCache
from promptopt.llm.messages import ChatRequest, Completion, Usage
from promptopt.llm.pricing import cost_usd
from promptopt.scoring.runtime import Runtime, RuntimeOptions
from promptopt.scoring.scorer import build_messages
from promptopt.search.plan import (
    PROPOSAL_MAX_CHARS,
    final_eval_cost,
    initial_system_prompt,
    target_call_max_cost_usd,
)
from promptopt.task.loader import LoadedTask, load_task
from promptopt.task.modelspec import Price
from tests.support.search import Counter, providers, target_answer, write_task


def priced_task(tmp_path: Path, max_tokens: int | None) -> Path:
    path = write_task(tmp_path)
    spec: dict[str, Any] = yaml.safe_load(path.read_text())
    target = spec["models"]["target"]
    target["price"] = {"input": 2.0, "output": 8.0}
    if max_tokens is None:
        target.pop("max_tokens", None)
    else:
        target["max_tokens"] = max_tokens
    spec["models"]["optimizer"]["price"] = {"input": 0.0, "output": 0.0}
    path.write_text(yaml.safe_dump(spec))
    return path


class SpyLedger(BudgetLedger):
    def __init__(self) -> None:
        super().__init__()
        self.reserved: list[float] = []

    def reserve(self, role: str, max_cost_usd: float) -> Reservation:
        self.reserved.append(max_cost_usd)
        return super().reserve(role, max_cost_usd)


@pytest.mark.parametrize("max_tokens", [8, None])
async def test_dry_run_and_the_client_reserve_the_same_worst_case(
    tmp_path: Path, max_tokens: int | None
) -> None:
    task = load_task(priced_task(tmp_path, max_tokens))
    plan = dry_run_plan(prepare_run(task, target_calls=300))
    spec = task.spec.models.target
    assert spec is not None and spec.price is not None
    per_call = target_call_max_cost_usd(task, spec, spec.price)
    # The search's calls at the client's worst case, the final evaluation at what the run sets
    # aside for it (the same figure the run computes).
    final = final_eval_cost(task, spec, spec.price, 3).usd(initial_system_prompt(task))
    assert plan.final_eval_cost_usd == pytest.approx(final)
    search_calls = plan.target_calls - plan.final_eval_calls
    assert plan.estimated_cost_usd == pytest.approx(search_calls * per_call + final)

    runtime = Runtime(task, RuntimeOptions(), store=NullCache(), providers=providers())
    spy = SpyLedger()
    async with runtime:
        client = runtime.client("target")
        client.ledger = spy
        examples = [e for split in task.splits.values() for e in split]
        longest = max((task.render_input(e) for e in examples), key=len)
        worst_prompt = "x" * max(len(task.spec.system_prompt.encode()), PROPOSAL_MAX_CHARS * 4)
        await client.complete(build_messages(worst_prompt, longest))
        # The reservation for the longest call a run can make is the dry run's figure...
        assert spy.reserved == [pytest.approx(per_call)]
        # ...and every real call of the task's prompt reserves no more than that.
        for example in examples[:10]:
            await client.complete(
                build_messages(task.spec.system_prompt, task.render_input(example))
            )
        assert max(spy.reserved[1:]) <= per_call


@pytest.mark.parametrize(
    ("strategy", "params", "budget"),
    [("protegi", {"preset": "small"}, 330), ("protegi", {}, 520), ("ape", {}, 300)],
)
async def test_dry_run_shows_the_plan_the_search_follows(
    tmp_path: Path, strategy: str, params: dict[str, Any], budget: int
) -> None:
    from promptopt.app.run import execute_run
    from promptopt.run.folder import EVENTS, RunFolder
    from tests.support import protegi

    path = protegi.write_task(tmp_path) if strategy == "protegi" else write_task(tmp_path)
    prepared = prepare_run(
        load_task(path), strategy=strategy, params=params, target_calls=budget, seed=0
    )
    plan = dry_run_plan(prepared)
    # The sizes are on the plan and in its notes, and they fit the search's share.
    layout = plan.layout
    assert layout["fits"] and layout["target_calls"] <= budget - plan.final_eval_calls
    assert layout["per_arm"] >= 1 and layout["selection_budget"] > 0
    assert any(note.startswith(f"{strategy} plan:") for note in plan.notes)

    folders: list[RunFolder] = []
    await execute_run(
        prepared,
        out=tmp_path / "runs",
        on_folder=folders.append,
        providers=protegi_providers() if strategy == "protegi" else providers(),
        store=NullCache(),
    )
    (event,) = [e for e in folders[0].read_jsonl(EVENTS) if e["event"] == "plan"]
    assert {k: v for k, v in event.items() if k not in ("step", "event", "strategy")} == layout


def protegi_providers() -> dict[str, Any]:
    from promptopt.llm.providers.scripted import ScriptedProvider
    from tests.support import protegi

    return {
        "target": ScriptedProvider(protegi.target_answer, name="target"),
        "optimizer": ScriptedProvider(protegi.optimizer_answer, name="optimizer"),
    }


def realistic_target(request: ChatRequest) -> Completion:
    """The toy target, billed as a hosted model would be: about four bytes a token of English
    plus three per message, and every answer billed at the whole output limit (8)."""
    tokens = sum(-(-len(m["content"].encode()) // 4) + 3 for m in request.messages)
    return Completion(text=target_answer(request), usage=Usage(input=tokens, output=8))


def final_calls_cost(task: LoadedTask, price: Price) -> float:
    """What the final evaluation of the task's own prompt costs with `realistic_target`."""
    prompt = initial_system_prompt(task)
    total = 0.0
    for split, times in (("dev", 4), ("test", 2)):
        for example in task.splits[split]:
            request = ChatRequest(build_messages(prompt, task.render_input(example)), {})
            total += times * cost_usd(realistic_target(request).usage, price)
    return total


def test_the_final_reserve_is_within_a_small_factor_of_what_it_costs(tmp_path: Path) -> None:
    task = load_task(priced_task(tmp_path, 8))
    spec = task.spec.models.target
    assert spec is not None and spec.price is not None
    real = final_calls_cost(task, spec.price)
    reserve = final_eval_cost(task, spec, spec.price, 3).usd(initial_system_prompt(task))
    assert real <= reserve <= 3 * real
    # What it was: every call as long as the longest proposal, counted a token a byte.
    assert 120 * target_call_max_cost_usd(task, spec, spec.price) > 50 * real


async def test_a_small_cost_cap_that_covers_the_final_evaluation_runs_to_the_end(
    tmp_path: Path,
) -> None:
    from promptopt.app.run import execute_run
    from promptopt.run.folder import FINAL_EVAL, SUMMARY, RunFolder

    task = load_task(priced_task(tmp_path, 8))
    spec = task.spec.models.target
    assert spec is not None and spec.price is not None
    cap = 4 * final_calls_cost(task, spec.price)
    prepared = prepare_run(task, max_cost=cap, seed=0)  # refused before: reserve ~100x the cap
    folders: list[RunFolder] = []
    counter = Counter(realistic_target)
    await execute_run(
        prepared,
        out=tmp_path / "runs",
        on_folder=folders.append,
        providers=providers(target=counter),
        store=NullCache(),
    )
    summary = folders[0].read_json(SUMMARY)
    assert summary is not None and summary["status"] == "finished"
    assert folders[0].read_json(FINAL_EVAL) is not None
    spent = sum(u["cost_usd"] for u in summary["usage"].values())
    assert 0 < spent <= cap
