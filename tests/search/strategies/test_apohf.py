"""APOHF: the candidate pool, preference queries through the comparator, the dueling bandit
against random pairs, budgets, determinism and resume, end to end on the toy sentiment task."""

from __future__ import annotations

import hashlib
import json
import re
import statistics
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from promptopt.llm.budget import BudgetCaps
from promptopt.llm.cache import NullCache
from promptopt.llm.messages import ChatRequest
from promptopt.llm.providers.scripted import ScriptedProvider
from promptopt.reporting.write import write_run_reports
from promptopt.run.folder import RunFolder
from promptopt.scoring.runtime import Runtime, RuntimeOptions
from promptopt.search.plan import RunSettings, StopRules, final_reserve
from promptopt.search.state import SearchState
from promptopt.search.strategies.apohf import APOHF, APOHFParams, pool_sizes
from promptopt.search.strategies.registry import make_strategy
from promptopt.task.loader import load_task
from tests.support.engine import folder_events, run_engine, search_state, strategy_settings
from tests.support.search import (
    PROPERTY,
    WORDS_GOOD,
    Counter,
    providers,
    stable,
    target_answer,
    write_task,
)

RESERVE = final_reserve(20, 20, 3)
SMALL = {"induced": 6, "rephrased": 6, "comparisons": 24, "train_steps": 60, "hidden": 16}


class Killed(BaseException):
    """Stands in for the process being killed mid-run."""


def variants(one_in: int) -> Callable[[ChatRequest], str]:
    """An optimizer that writes a different instruction per request and sample; about one in
    `one_in` has the property the target rewards ("label only"), the others make it answer
    "positive" always."""

    def answer(request: ChatRequest) -> str:
        blob = json.dumps([dict(m) for m in request.messages]) + str(request.sample_index)
        digest = hashlib.sha256(blob.encode()).hexdigest()
        if int(digest[:4], 16) % one_in == 0:
            return f"<START>Say positive or negative, the label only (variant {digest[4:10]}).<END>"
        return f"<START>Describe how the review feels (variant {digest[4:10]}).<END>"

    return answer


pool_optimizer = variants(5)


def settings_for(caps: BudgetCaps | None = None, **params: Any) -> RunSettings:
    return strategy_settings("apohf", caps, **{**SMALL, **params})


async def run_once(
    tmp: Path,
    folder: RunFolder,
    settings: RunSettings,
    *,
    target: Counter | None = None,
    optimizer: Counter | None = None,
    resume: bool = False,
) -> dict[str, Any]:
    scripted = providers(target or Counter(target_answer), optimizer or Counter(pool_optimizer))
    task = write_task(tmp, strategy="apohf")
    return await run_engine(task, folder, settings, with_judge(scripted), resume=resume)


def with_judge(scripted: dict[str, ScriptedProvider]) -> dict[str, ScriptedProvider]:
    """The judge role served by the optimizer's script, as when a task names no judge model."""
    return {**scripted, "judge": scripted["optimizer"]}


events = folder_events


async def test_apohf_finds_the_hidden_property_from_preferences_alone(tmp_path: Path) -> None:
    folder = RunFolder.create(tmp_path / "runs", "toy")
    summary = await run_once(tmp_path, folder, settings_for())
    assert PROPERTY in summary["best_prompt"].lower()
    assert summary["scores"]["best"]["test"] == pytest.approx(1.0)
    assert summary["test_comparison"]["verdict"] == "improved"
    comparisons = events(folder, "comparison")
    assert len(comparisons) == 24
    assert {c["source"] for c in comparisons} == {"metric"}
    assert all(c["first"] != c["second"] for c in comparisons)
    steps = events(folder, "step")
    assert [s["name"] for s in steps] == ["comparisons-10", "comparisons-20", "comparisons-24"]
    (plan,) = events(folder, "apohf_plan")
    assert plan["pool"][0] == "c0000" and plan["embedding"] == "hashed"


def harness(tmp: Path, seed: int, one_in: int) -> tuple[Runtime, SearchState]:
    task = load_task(write_task(tmp, strategy="apohf"))
    runtime = Runtime(
        task,
        RuntimeOptions(concurrency=4, caps=BudgetCaps()),
        store=NullCache(),
        providers=providers(Counter(target_answer), Counter(variants(one_in))),
    )
    state = search_state(task, runtime, seed)
    return runtime, state


async def comparisons_to_find(tmp: Path, seed: int, policy: str) -> int:
    """How many preference queries until the prompt of highest predicted utility has the
    property (and keeps it for the rest of the search); the query limit + 1 if never."""
    limit = 40
    runtime, state = harness(tmp, seed, one_in=12)
    ctx = state.context
    initial = ctx.add_candidate("Classify the review.", operator="initial")
    assert initial is not None
    params = APOHFParams(
        induced=25,
        rephrased=25,
        comparisons=limit,
        report_every=1,
        policy=policy,  # type: ignore[arg-type]
        train_steps=60,
        hidden=16,
    )
    found = limit + 1
    async with runtime:
        async for report in APOHF(params).search(ctx, initial):
            k = report.detail["comparisons"]
            good = PROPERTY in ctx.candidates[report.ranking[0]].text.lower()
            if good and found > limit:
                found = k
            elif not good:
                found = limit + 1
    return found


async def test_the_dueling_bandit_needs_fewer_comparisons_than_random_pairs(
    tmp_path: Path,
) -> None:
    # A pool of about 50 instructions, 4 or 5 of them with the property.
    seeds = range(10)
    neural = [await comparisons_to_find(tmp_path, s, "neural") for s in seeds]
    rand = [await comparisons_to_find(tmp_path, s, "random") for s in seeds]
    # Measured when written: neural mean 8.2, random pairs 13.9 (linear 6.7) queries of at most
    # 40; with a pool where one in five has the property, all three found it in about 5.
    assert statistics.mean(neural) < statistics.mean(rand), (neural, rand)


async def test_budgets_hold_and_the_plan_bounds_the_run(tmp_path: Path) -> None:
    target, optimizer = Counter(target_answer), Counter(pool_optimizer)
    caps = BudgetCaps(target_calls=RESERVE + 30, optimizer_calls=8)
    folder = RunFolder.create(tmp_path / "runs", "q")
    await run_once(tmp_path, folder, settings_for(caps), target=target, optimizer=optimizer)
    assert target.calls <= RESERVE + 30
    assert optimizer.calls <= 8
    (plan,) = events(folder, "apohf_plan")
    assert plan["comparisons"] == 15  # two target calls each
    assert not events(folder, "budget_exhausted")
    strategy, _ = make_strategy("apohf", SMALL)
    worst = strategy.plan({"train": 40})
    assert worst.target_calls == 48 and worst.optimizer_calls == 12


def test_pool_sizes_fit_the_optimizer_budget() -> None:
    params = APOHFParams(induced=5, rephrased=5)
    assert pool_sizes(params, None) == (5, 5)
    assert pool_sizes(params, 7) == (5, 2)
    assert pool_sizes(params, 3) == (3, 0)


async def test_same_seed_gives_the_same_run_folder(tmp_path: Path) -> None:
    a = RunFolder.create(tmp_path / "a", "q")
    b = RunFolder.create(tmp_path / "b", "q")
    await run_once(tmp_path, a, settings_for())
    await run_once(tmp_path, b, settings_for())
    assert stable(a) == stable(b)


async def test_killed_run_resumes_without_repeating_requests(tmp_path: Path) -> None:
    baseline = RunFolder.create(tmp_path / "base", "q")
    every = Counter(target_answer)
    await run_once(tmp_path, baseline, settings_for(), target=every)

    def kill_at(n: int) -> None:
        if n == 30:
            raise Killed

    folder = RunFolder.create(tmp_path / "runs", "q")
    first = Counter(target_answer, on_call=kill_at)
    with pytest.raises(Killed):
        await run_once(tmp_path, folder, settings_for(), target=first)
    second = Counter(target_answer)
    await run_once(tmp_path, folder, settings_for(), target=second, resume=True)
    # Only the killed request is sent again; every other answer comes from the journal.
    assert second.calls == every.calls - (first.calls - 1)
    assert stable(folder) == stable(baseline)


def judging_optimizer(request: ChatRequest) -> str:
    """The optimizer model, also serving as the judge (the task names no judge model): the
    pool as `pool_optimizer` writes it, and pairwise verdicts that prefer the answer equal to
    the reference answer, whichever position it is shown in."""
    user = request.messages[-1]["content"]
    if "## Answer A" in user:
        reference = user.split("## Reference answer\n")[1].split("\n")[0]
        a = user.split("## Answer A\n")[1].split("\n")[0]
        b = user.split("## Answer B\n")[1].split("\n")[0]
        if (a == reference) == (b == reference):
            return "BETTER: TIE"
        return "BETTER: A" if a == reference else "BETTER: B"
    return pool_optimizer(request)


async def test_apohf_with_a_judge_asks_both_orders_and_finds_the_property(
    tmp_path: Path,
) -> None:
    optimizer = Counter(judging_optimizer)
    folder = RunFolder.create(tmp_path / "runs", "toy")
    summary = await run_once(tmp_path, folder, settings_for(feedback="judge"), optimizer=optimizer)
    assert PROPERTY in summary["best_prompt"].lower()
    assert summary["test_comparison"]["verdict"] == "improved"
    comparisons = events(folder, "comparison")
    assert {c["source"] for c in comparisons} == {"judge"}
    decided = [c for c in comparisons if c["choice"] != "tie"]
    assert decided, "the judge decided some pairs"
    for c in decided:
        assert c["why"] in (
            "shown first-second: A; shown second-first: B",
            "shown first-second: B; shown second-first: A",
        )
    judge_requests = [r for r in optimizer.requests if "## Answer A" in r]
    # Both orders for each comparison whose answers differ; equal answers are cached as one.
    assert len(judge_requests) >= 2 * len(decided)
    strategy, _ = make_strategy("apohf", {**SMALL, "feedback": "judge"})
    plan = strategy.plan({"train": 40})
    assert (plan.optimizer_calls, plan.judge_calls) == (12, 2 * 24)
    # The best prompt was judged against the initial one on every test input, both orders.
    judged = summary["test_preference"]
    assert judged["source"] == "judge" and judged["n"] == 20
    assert judged["win_rate"] > 0.5 and judged["verdict"] == "improved"
    assert judged["wins"] + judged["losses"] + judged["ties"] == 20


async def test_the_judge_has_its_own_budget_with_the_final_win_rate_kept_aside(
    tmp_path: Path,
) -> None:
    optimizer = Counter(judging_optimizer)
    folder = RunFolder.create(tmp_path / "runs", "q")
    # 40 judge calls: 2 x 20 test inputs for the final win rate, 20 for the search.
    caps = BudgetCaps(target_calls=RESERVE + 40, optimizer_calls=12, judge_calls=60)
    summary = await run_once(
        tmp_path, folder, settings_for(caps, feedback="judge"), optimizer=optimizer
    )
    usage = summary["usage"]
    # The judge's calls are its own, not the optimizer's (one script serves both here): the
    # pool got all 12 optimizer calls.
    assert usage["optimizer"]["requests"] == 12
    assert 0 < usage["judge"]["requests"] <= 60
    (plan,) = events(folder, "apohf_plan")
    # 20 target-affordable comparisons, but only 10 fit the judge's 20 search calls.
    assert plan["comparisons"] == 10
    assert summary["test_preference"]["n"] == 20


async def test_the_reports_show_the_comparisons_and_learned_utilities(tmp_path: Path) -> None:
    folder = RunFolder.create(tmp_path / "runs", "toy")
    summary = await run_once(tmp_path, folder, settings_for())
    write_run_reports(folder)
    report = (folder.path / "report.md").read_text()
    assert "## Preferences" in report
    assert "24 comparisons answered by metric." in report
    section = report.split("## Preferences")[1]
    # The best prompt's row is in the table with its learned utility.
    row = next(line for line in section.splitlines() if f"`{summary['best_id']}`" in line)
    assert re.search(r"\| [+-]\d\.\d{3} \|", row)
    assert "| scores 1 vs 0 |" in section or "| scores 0 vs 1 |" in section  # the reasons
    html = (folder.path / "report.html").read_text()
    assert "<h2>Preferences</h2>" in html and summary["best_id"] in html


async def test_reports_of_other_strategies_have_no_preferences_section(tmp_path: Path) -> None:
    folder = RunFolder.create(tmp_path / "runs", "toy")
    _, validated = make_strategy("opro", {"steps": 1, "proposals_per_step": 2})
    settings = RunSettings(
        strategy="opro",
        params=validated.model_dump(mode="json"),
        seed=0,
        caps=BudgetCaps(),
        stop=StopRules(),
        concurrency=4,
    )
    await run_once(tmp_path, folder, settings)
    write_run_reports(folder)
    assert "Preferences" not in (folder.path / "report.md").read_text()


def label_free_task(tmp: Path) -> Path:
    """The toy task without a metric and without a target in any row."""
    path = write_task(tmp, strategy="apohf")
    spec = yaml.safe_load(path.read_text())
    del spec["metric"]
    for split in ("train", "dev", "test"):
        for row in spec["data"][split]:
            del row["target"]
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def sentiment_judge(request: ChatRequest) -> str:
    """A judge with a hidden taste and no reference answers: it prefers the answer that names
    the review's sentiment, which it reads from the input itself."""
    user = request.messages[-1]["content"]
    if "## Answer A" not in user:
        return pool_optimizer(request)
    assert "Reference answer" not in user
    review = user.split("## Input\n")[1].split("\n")[0]
    right = "positive" if any(w in review for w in WORDS_GOOD) else "negative"
    a = user.split("## Answer A\n")[1].split("\n")[0]
    b = user.split("## Answer B\n")[1].split("\n")[0]
    if (a == right) == (b == right):
        return "BETTER: TIE"
    return "BETTER: A" if a == right else "BETTER: B"


async def test_a_task_without_labels_is_optimized_by_the_judge_alone(tmp_path: Path) -> None:
    optimizer = Counter(sentiment_judge)
    folder = RunFolder.create(tmp_path / "runs", "free")
    scripted = providers(Counter(target_answer), optimizer)
    task = label_free_task(tmp_path)
    assert load_task(task).spec.metric is None
    settings = settings_for(feedback="judge", rubric="Names the review's sentiment correctly.")
    summary = await run_engine(task, folder, settings, with_judge(scripted))
    assert PROPERTY in summary["best_prompt"].lower()
    # No metric: no score anywhere, only preferences.
    assert summary["scores"] == {
        "initial": {"dev": None, "test": None},
        "best": {"dev": None, "test": None},
    }
    assert "test_comparison" not in summary and "ci95" not in summary
    dev, test = summary["dev_preference"], summary["test_preference"]
    assert dev["wins"] > dev["losses"] and dev["n"] == 20
    assert test["n"] == 20 and test["verdict"] == "improved" and test["win_rate"] > 0.5
    assert test["sign_p"] < 0.05 and test["ci95"][0] > 0.5
    final = json.loads((folder.path / "final_eval.json").read_text())
    assert [p["id"] for p in final["preferences"]["test"]] == [f"r{200 + i}" for i in range(20)]
    assert {p["preferred"] for p in final["preferences"]["test"]} <= {"best", "initial", "tie"}
    assert all(e["targets"] == [] for e in final["examples"]["test"])
    candidates = [
        json.loads(x) for x in (folder.path / "candidates.jsonl").read_text().splitlines()
    ]
    assert all(not c.get("scores") for c in candidates)
    # The optimizer saw inputs only, never an empty "correct answer".
    assert not any("Correct answer:" in r for r in optimizer.requests)
    write_run_reports(folder)
    report = (folder.path / "report.md").read_text()
    assert f"win rate {test['win_rate']:.2f}" in report and "**improved**" in report
    assert "the task has no metric, so this chose the best prompt" in report
    assert "win rate" in (folder.path / "report.html").read_text()


async def test_a_task_without_labels_keeps_the_initial_prompt_the_judge_does_not_prefer(
    tmp_path: Path,
) -> None:
    def indifferent(request: ChatRequest) -> str:
        if "## Answer A" in request.messages[-1]["content"]:
            return "BETTER: TIE"
        return pool_optimizer(request)

    folder = RunFolder.create(tmp_path / "runs", "free")
    scripted = providers(Counter(target_answer), Counter(indifferent))
    settings = settings_for(feedback="judge", rubric="Anything.")
    summary = await run_engine(label_free_task(tmp_path), folder, settings, with_judge(scripted))
    assert summary["best_id"] == "c0000"
    assert summary["dev_preference"]["wins"] == summary["dev_preference"]["losses"] == 0
    # Nothing to judge on test when the initial prompt stays.
    assert "test_preference" not in summary
