from __future__ import annotations

import asyncio
import collections
import json
from collections.abc import AsyncGenerator, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

from promptopt.errors import TransientProviderError
from promptopt.llm.budget import BudgetCaps
from promptopt.llm.cache import NullCache
from promptopt.llm.client import RetryPolicy, RunStopped
from promptopt.llm.error_budget import TooManyErrors
from promptopt.llm.journal import ResponseJournal
from promptopt.llm.messages import ChatRequest
from promptopt.llm.providers.scripted import Reply
from promptopt.run.folder import CANDIDATES, EVENTS, RESPONSES, SUMMARY, RunFolder
from promptopt.scoring.runtime import Runtime, RuntimeOptions
from promptopt.search.context import Candidate, Plan, SearchContext, StepReport
from promptopt.search.engine import Engine
from promptopt.search.meta_prompts import load_meta_prompts
from promptopt.search.plan import (
    RunSettings,
    StopRules,
    final_eval_cost,
    final_reserve,
    initial_system_prompt,
)
from promptopt.search.strategies.registry import make_strategy
from promptopt.task.loader import load_task
from tests.support.search import (
    PROPERTY,
    Counter,
    optimizer_answer,
    providers,
    stable,
    target_answer,
    write_task,
)


class Killed(BaseException):
    """Stands in for the process being killed mid-run."""


def settings_for(caps: BudgetCaps | None = None, **params: Any) -> RunSettings:
    _, validated = make_strategy("ape", params)
    return RunSettings(
        strategy="ape",
        params=validated.model_dump(mode="json"),
        seed=0,
        caps=caps or BudgetCaps(),
        stop=StopRules(),
        concurrency=4,
    )


async def run_once(
    tmp: Path,
    folder: RunFolder,
    settings: RunSettings,
    *,
    target: Counter | None = None,
    optimizer: Counter | None = None,
    resume: bool = False,
    stop: asyncio.Event | None = None,
    metric: dict[str, Any] | None = None,
) -> dict[str, Any]:
    path = write_task(tmp)
    if metric is not None:
        spec = yaml.safe_load(path.read_text())
        spec["metric"] = metric
        path.write_text(yaml.safe_dump(spec, sort_keys=False))
    task = load_task(path)
    strategy, _ = make_strategy(settings.strategy, settings.params)
    runtime = Runtime(
        task,
        RuntimeOptions(concurrency=4, caps=settings.caps),
        store=NullCache(),
        journal=ResponseJournal(folder.file(RESPONSES)),
        stop=stop,
        providers=providers(target, optimizer),
    )
    async with runtime:
        engine = Engine(task, runtime, folder, settings, strategy, load_meta_prompts())
        return (await engine.run(resume=resume)).to_json()


async def test_ape_finds_the_instruction_property_and_proves_it_on_test(tmp_path: Path) -> None:
    folder = RunFolder.create(tmp_path / "runs", "toy")
    summary = await run_once(tmp_path, folder, settings_for())
    assert PROPERTY in summary["best_prompt"].lower()
    assert summary["scores"]["initial"]["test"] == pytest.approx(0.5)
    assert summary["scores"]["best"]["test"] == pytest.approx(1.0)
    assert summary["scores"]["best"]["dev"] == pytest.approx(1.0)
    assert summary["test_comparison"]["verdict"] == "improved"
    for name in (
        "config.json",
        "events.jsonl",
        "candidates.jsonl",
        "best_prompt.txt",
        "summary.json",
        "final_eval.json",
    ):
        assert (folder.path / name).exists(), name
    events = folder.read_jsonl(EVENTS)
    reasons = {e["reason"] for e in events if e["event"] == "rejected"}
    assert reasons, "the refusal and the empty answer must be recorded as rejections"


def wordy_target(request: ChatRequest) -> str:
    """The toy target, whose answers under the right instruction have a word too many."""
    answer = target_answer(request)
    return answer + " film" if PROPERTY in request.messages[0]["content"].lower() else answer


async def test_a_graded_metric_gets_the_sign_test_in_the_summary(tmp_path: Path) -> None:
    # Token F1 scores the wordy answers 2/3: graded scores, which McNemar's test cannot take.
    folder = RunFolder.create(tmp_path / "runs", "toy")
    summary = await run_once(
        tmp_path, folder, settings_for(), target=Counter(wordy_target), metric={"type": "f1"}
    )
    comparison = summary["test_comparison"]
    assert summary["scores"]["best"]["test"] == pytest.approx(2 / 3)
    assert comparison["mcnemar_p"] is None
    # 10 test examples fell from 1 to 2/3 and 10 rose from 0 to 2/3: p = 1.
    assert comparison["sign_p"] == pytest.approx(1.0)
    assert comparison["verdict"] == "no significant change"


def cut_first_sample(request: ChatRequest) -> Reply:
    """The toy optimizer, whose first sample of every request ran into the token limit."""
    text = optimizer_answer(request)
    if request.sample_index == 0 and len(text) > 40:
        return {"text": text[:40], "finish_reason": "length"}
    return text


async def test_the_summary_counts_rejected_proposals_by_reason(tmp_path: Path) -> None:
    folder = RunFolder.create(tmp_path / "runs", "toy")
    summary = await run_once(tmp_path, folder, settings_for(), optimizer=Counter(cut_first_sample))
    events = folder.read_jsonl(EVENTS)
    from_events = collections.Counter(e["reason"] for e in events if e["event"] == "rejected")
    assert summary["rejected"] == dict(sorted(from_events.items()))
    assert summary["rejected"]["truncated"] >= 1
    cut = [e for e in events if e["event"] == "rejected" and e["reason"] == "truncated"]
    assert all("token limit" in e["message"] for e in cut)
    # No candidate was made from a cut answer.
    texts = {c["text"] for c in folder.read_jsonl(CANDIDATES)}
    assert not any(e["raw"].strip() in texts for e in cut)


async def test_same_seed_gives_the_same_run_folder(tmp_path: Path) -> None:
    a = RunFolder.create(tmp_path / "a", "toy")
    b = RunFolder.create(tmp_path / "b", "toy")
    await run_once(tmp_path, a, settings_for())
    await run_once(tmp_path, b, settings_for())
    assert stable(a) == stable(b)


@pytest.mark.parametrize("cap", [121, 170, 260])
async def test_target_budget_is_never_exceeded(tmp_path: Path, cap: int) -> None:
    target = Counter(target_answer)
    folder = RunFolder.create(tmp_path / "runs", "toy")
    summary = await run_once(
        tmp_path,
        folder,
        settings_for(BudgetCaps(target_calls=cap, optimizer_calls=7)),
        target=target,
    )
    used = summary["usage"]["target"]
    assert used["requests"] + used["cache_hits"] <= cap
    assert target.calls <= cap
    assert summary["usage"]["optimizer"]["requests"] <= 7
    assert summary["scores"]["best"]["test"] is not None  # the final evaluation was reserved


async def test_a_budget_smaller_than_the_final_evaluation_is_refused(tmp_path: Path) -> None:
    from promptopt.errors import UsageError

    folder = RunFolder.create(tmp_path / "runs", "toy")
    needed = final_reserve(20, 20, 3)
    with pytest.raises(UsageError, match=str(needed)):
        await run_once(tmp_path, folder, settings_for(BudgetCaps(target_calls=needed)))


async def test_killed_run_resumes_without_repeating_completed_requests(tmp_path: Path) -> None:
    baseline = RunFolder.create(tmp_path / "base", "toy")
    await run_once(tmp_path, baseline, settings_for())

    def kill_at(n: int) -> None:
        if n == 150:
            raise Killed

    folder = RunFolder.create(tmp_path / "runs", "toy")
    first_target = Counter(target_answer, on_call=kill_at)
    first_optimizer = Counter(optimizer_answer)
    with pytest.raises(Killed):
        await run_once(
            tmp_path, folder, settings_for(), target=first_target, optimizer=first_optimizer
        )
    completed = {
        json.loads(line)["key"] for line in folder.file(RESPONSES).read_text().splitlines()
    }
    assert completed

    second_target = Counter(target_answer)
    second_optimizer = Counter(optimizer_answer)
    await run_once(
        tmp_path,
        folder,
        settings_for(),
        target=second_target,
        optimizer=second_optimizer,
        resume=True,
    )
    # No request answered before the kill was sent again.
    assert not set(first_optimizer.requests) & set(second_optimizer.requests)
    killed = first_target.requests[149]  # the call that "died" never completed
    first_done = set(first_target.requests) - {killed}
    assert not first_done & set(second_target.requests)
    assert stable(folder) == stable(baseline)


async def test_ctrl_c_leaves_a_resumable_folder(tmp_path: Path) -> None:
    baseline = RunFolder.create(tmp_path / "base", "toy")
    await run_once(tmp_path, baseline, settings_for())

    stop = asyncio.Event()

    def press_ctrl_c(n: int) -> None:
        if n == 100:
            stop.set()

    folder = RunFolder.create(tmp_path / "runs", "toy")
    with pytest.raises(RunStopped, match="--resume"):
        await run_once(
            tmp_path,
            folder,
            settings_for(),
            target=Counter(target_answer, on_call=press_ctrl_c),
            stop=stop,
        )
    summary = folder.read_json(SUMMARY)
    assert summary is not None and summary["status"] == "interrupted"
    assert (folder.path / "best_prompt.txt").exists()

    second_target = Counter(target_answer)
    await run_once(tmp_path, folder, settings_for(), target=second_target, resume=True)
    assert stable(folder) == stable(baseline)


async def test_no_key_like_string_reaches_the_run_folder(tmp_path: Path) -> None:
    folder = RunFolder.create(tmp_path / "runs", "toy")
    await run_once(tmp_path, folder, settings_for())
    config = json.loads((folder.path / "config.json").read_text())
    assert config["versions"]["python"] and config["versions"]["openai"]
    # A key pasted into a task field is masked wherever the run folder repeats it.
    folder.write_json("probe.json", {"note": "sk-ant-abcdefghijklmnop"})
    assert "sk-ant-" not in (folder.path / "probe.json").read_text()


async def test_a_cost_cap_keeps_enough_back_for_the_final_evaluation(tmp_path: Path) -> None:
    import yaml

    path = write_task(tmp_path)
    spec = yaml.safe_load(path.read_text())
    spec["models"]["target"]["price"] = {"input": 1.0, "output": 1.0}
    path.write_text(yaml.safe_dump(spec))
    task = load_task(path)
    settings = settings_for()
    strategy, _ = make_strategy(settings.strategy, settings.params)
    folder = RunFolder.create(tmp_path / "runs", "toy")

    def engine_for(runtime: Runtime, caps: BudgetCaps) -> Engine:
        run_settings = RunSettings(**{**settings.__dict__, "caps": caps})
        return Engine(task, runtime, folder, run_settings, strategy, load_meta_prompts())

    probe = Runtime(task, RuntimeOptions(), store=NullCache(), providers=providers())
    async with probe:
        final = engine_for(probe, BudgetCaps())._final_cost()
    final_cost = final.usd(initial_system_prompt(task))
    cap = final_cost + 0.002  # room for only a part of the search
    caps = BudgetCaps(cost_usd=cap)
    runtime = Runtime(
        task,
        RuntimeOptions(caps=caps),
        store=NullCache(),
        journal=ResponseJournal(folder.file(RESPONSES)),
        providers=providers(),
    )
    async with runtime:
        summary = (await engine_for(runtime, caps).run()).to_json()
        spent = runtime.ledger.spent_usd
    assert summary["stop_reason"] == "budget"
    assert summary["scores"]["best"]["test"] is not None
    assert spent <= cap


class RanksByHand:
    """One step: new prompts, reported after the initial prompt in the order given."""

    def __init__(self, texts: list[str]) -> None:
        self.texts = texts
        self.ids: list[str] = []

    def plan(self, sizes: Mapping[str, int]) -> Plan:
        """No calls."""
        return Plan(target_calls=0, optimizer_calls=0)

    async def search(
        self, ctx: SearchContext, initial: Candidate
    ) -> AsyncGenerator[StepReport, None]:
        """Add the prompts and rank them by hand, the initial prompt first."""
        for text in self.texts:
            cand = ctx.add_candidate(text, operator="test")
            assert cand is not None
            self.ids.append(cand.id)
        yield StepReport("rank", (initial.id, *self.ids))


async def run_gate(tmp_path: Path, texts: list[str]) -> tuple[dict[str, Any], RanksByHand]:
    task = load_task(write_task(tmp_path))
    folder = RunFolder.create(tmp_path / "runs", "toy")
    strategy = RanksByHand(texts)
    settings = RunSettings(strategy="by-hand", params={}, seed=0, concurrency=4)
    target = Counter(target_answer)
    runtime = Runtime(
        task, RuntimeOptions(concurrency=4), store=NullCache(), providers=providers(target)
    )
    async with runtime:
        engine = Engine(task, runtime, folder, settings, strategy, load_meta_prompts())
        summary = (await engine.run()).to_json()
    (final_dev,) = [e for e in folder.read_jsonl(EVENTS) if e["event"] == "final_dev"]
    latest = {r["id"]: r for r in folder.read_jsonl(CANDIDATES)}
    dev_calls = target.calls - 2 * 20  # the initial and the best prompt on test
    return {
        "summary": summary,
        "final_dev": final_dev,
        "latest": latest,
        "dev": dev_calls,
    }, strategy


async def test_the_dev_gate_scores_the_top_finalists_and_the_initial_prompt_on_all_of_dev(
    tmp_path: Path,
) -> None:
    # The strategy ranks the initial prompt first; it does not take a finalist's place, so the
    # gate sees the next three (a plain prompt, then two that are right on every example).
    texts = [
        "Classify the review quickly.",
        f"Give the {PROPERTY}.",
        f"Reply with the {PROPERTY}, please.",
        f"Once more, the {PROPERTY}.",
    ]
    got, strategy = await run_gate(tmp_path, texts)
    plain, first, second, fourth = strategy.ids
    final_dev = got["final_dev"]
    assert final_dev["order"] == [plain, first, second]
    assert set(final_dev["finalists"]) == {"c0000", plain, first, second}
    assert got["dev"] == 4 * 20  # every one of them on all 20 dev examples, nothing more
    for cid in final_dev["finalists"]:
        assert got["latest"][cid]["scores"]["dev"]["n"] == 20
    assert "dev" not in got["latest"][fourth]["scores"]
    # The two that tie on dev: the one the strategy ranked higher wins.
    assert final_dev["finalists"][first] == final_dev["finalists"][second] == 1.0
    assert final_dev["best"] == first == got["summary"]["best_id"]


async def test_the_initial_prompt_wins_a_tie_at_the_dev_gate(tmp_path: Path) -> None:
    got, _ = await run_gate(tmp_path, ["Classify this review.", "Classify the film review."])
    final_dev = got["final_dev"]
    assert set(final_dev["finalists"].values()) == {0.5}
    assert final_dev["best"] == "c0000" == got["summary"]["best_id"]


async def test_ape_selections_score_every_arm_on_the_same_examples(tmp_path: Path) -> None:
    target = Counter(target_answer)
    folder = RunFolder.create(tmp_path / "runs", "toy")
    await run_once(tmp_path, folder, settings_for(), target=target)
    task = load_task(write_task(tmp_path))
    by_input = {task.render_input(e): e.id for e in task.splits["train"]}
    texts = {r["id"]: r["text"] for r in folder.read_jsonl(CANDIDATES)}
    scored: dict[str, set[str]] = {}
    for raw in target.requests:
        system, user = (m["content"] for m in json.loads(raw))
        if user in by_input:
            scored.setdefault(system, set()).add(by_input[user])
    events = folder.read_jsonl(EVENTS)
    steps = {e["step"]: e for e in events if e["event"] == "step"}
    selections = [e for e in events if e["event"] == "selection"]
    assert len(selections) == 3
    for selection in selections:
        # Every arm was scored on the first pulls[arm] examples of the one shared sequence ...
        for cid, n in selection["pulls"].items():
            # (The target's system message is the prompt, perhaps followed by more lines.)
            seen = set().union(
                *(ids for system, ids in scored.items() if system.split("\n")[0] == texts[cid])
            )
            assert set(selection["examples"][:n]) <= seen
        # ... and the step reports the selector's own ranking.
        assert steps[selection["step"]]["ranking"] == selection["ranking"][:10]


async def test_an_outage_stops_the_run_keeping_its_best_and_a_resume_finishes_it(
    tmp_path: Path,
) -> None:
    baseline = RunFolder.create(tmp_path / "base", "toy")
    await run_once(tmp_path, baseline, settings_for())

    def server_down(n: int) -> None:
        if n > 150:
            raise TransientProviderError("connection refused", kind="connection failed")

    folder = RunFolder.create(tmp_path / "runs", "toy")
    task = load_task(write_task(tmp_path))
    settings = settings_for()
    strategy, _ = make_strategy(settings.strategy, settings.params)
    runtime = Runtime(
        task,
        RuntimeOptions(concurrency=4, retry=RetryPolicy(max_retries=0)),
        store=NullCache(),
        journal=ResponseJournal(folder.file(RESPONSES)),
        providers=providers(Counter(target_answer, on_call=server_down)),
    )
    with pytest.raises(TooManyErrors, match=r"in a row failed \(connection failed\).*--resume"):
        async with runtime:
            await Engine(task, runtime, folder, settings, strategy, load_meta_prompts()).run()
    summary = folder.read_json(SUMMARY)
    assert summary is not None and summary["status"] == "failed"
    steps = [e for e in folder.read_jsonl(EVENTS) if e.get("event") == "step"]
    # The best of the finished steps is kept, not the initial prompt by default.
    assert steps and summary["best_id"] == steps[-1]["ranking"][0] != "c0000"
    assert PROPERTY in (folder.path / "best_prompt.txt").read_text()

    await run_once(tmp_path, folder, settings, resume=True)
    assert stable(folder) == stable(baseline)


class AsksMoreThanItMay:
    """Asks for more proposals than the optimizer budget allows, then scores what it got."""

    def __init__(self) -> None:
        self.scored: list[str] = []

    def plan(self, sizes: Mapping[str, int]) -> Plan:
        """Not sized to the budget, on purpose."""
        return Plan(target_calls=0, optimizer_calls=0)

    async def search(
        self, ctx: SearchContext, initial: Candidate
    ) -> AsyncGenerator[StepReport, None]:
        """One step of proposals scored on four training examples, then one more ask."""
        new = []
        for raw in await ctx.ask("ape/resample", 6, instruction=initial.text):
            cand = ctx.accept_proposal(raw, operator="test")
            if cand is not None:
                new.append(cand)
        for cand in new:
            await ctx.score(cand, ctx.train[:4])
            self.scored.append(cand.id)
        yield StepReport("propose", (*(c.id for c in new), initial.id))
        assert await ctx.ask("ape/resample", 2, instruction=initial.text) == []
        yield StepReport("again", (*(c.id for c in new), initial.id))


async def test_proposals_paid_for_are_scored_when_the_optimizer_budget_runs_out(
    tmp_path: Path,
) -> None:
    task = load_task(write_task(tmp_path))
    folder = RunFolder.create(tmp_path / "runs", "toy")
    strategy = AsksMoreThanItMay()
    caps = BudgetCaps(optimizer_calls=4)
    settings = RunSettings(strategy="asks", params={}, seed=0, caps=caps, concurrency=4)
    optimizer = Counter(optimizer_answer)
    runtime = Runtime(
        task,
        RuntimeOptions(concurrency=4, caps=caps),
        store=NullCache(),
        providers=providers(optimizer=optimizer),
    )
    async with runtime:
        engine = Engine(task, runtime, folder, settings, strategy, load_meta_prompts())
        summary = (await engine.run()).to_json()
    assert optimizer.calls == 4
    # The four answers paid for became candidates (the distinct ones) and were all scored.
    assert strategy.scored
    latest = {r["id"]: r for r in folder.read_jsonl(CANDIDATES)}
    assert all(latest[c]["scores"].get("train") for c in strategy.scored)
    assert summary["stop_reason"] == "budget"
    events = [e["event"] for e in folder.read_jsonl(EVENTS)]
    assert events.count("optimizer_budget_spent") == 1


async def test_a_finalist_the_cost_cap_cannot_evaluate_is_left_out(tmp_path: Path) -> None:
    import yaml

    path = write_task(tmp_path)
    spec = yaml.safe_load(path.read_text())
    spec["models"]["target"]["price"] = {"input": 1.0, "output": 1.0}
    path.write_text(yaml.safe_dump(spec))
    task = load_task(path)
    long = "Say whether the review is positive or negative. " + "Read it twice. " * 300
    strategy = RanksByHand([long, f"Reply with the {PROPERTY}: positive or negative."])
    folder = RunFolder.create(tmp_path / "runs", "toy")
    probe = Runtime(task, RuntimeOptions(), store=NullCache(), providers=providers())
    async with probe:
        client = probe.client("target")
        final = final_eval_cost(task, client.spec, client.price, 3)
    # Room for the final evaluation of three finalists as long as the task's prompt, and
    # nothing else: the long proposal's would cost several times that.
    cap = final.usd(initial_system_prompt(task)) * 1.01
    caps = BudgetCaps(cost_usd=cap)
    settings = RunSettings(strategy="by-hand", params={}, seed=0, caps=caps, concurrency=4)
    runtime = Runtime(
        task, RuntimeOptions(concurrency=4, caps=caps), store=NullCache(), providers=providers()
    )
    async with runtime:
        engine = Engine(task, runtime, folder, settings, strategy, load_meta_prompts())
        summary = (await engine.run()).to_json()
        spent = runtime.ledger.spent_usd
    assert summary["scores"]["best"]["test"] is not None  # the final evaluation finished
    assert summary["best_id"] == strategy.ids[1]
    (event,) = [e for e in folder.read_jsonl(EVENTS) if e["event"] == "finalists_left_out"]
    assert event["left_out"] == [strategy.ids[0]]
    assert spent <= cap
