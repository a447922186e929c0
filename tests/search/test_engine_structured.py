"""A structured prompt through a whole run: strategies edit the instruction only, the output
format is sent with every candidate and kept as written, and candidates that would stop the
target from naming a label are rejected with the reason."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from promptopt.llm.cache import NullCache
from promptopt.llm.messages import ChatRequest
from promptopt.run.folder import CANDIDATES, CONFIG, EVENTS, RunFolder
from promptopt.scoring.runtime import Runtime, RuntimeOptions
from promptopt.search.engine import Engine
from promptopt.search.meta_prompts import load_meta_prompts
from promptopt.search.plan import RunSettings, StopRules
from promptopt.search.strategies.registry import make_strategy
from promptopt.task.loader import LoadedTask, load_task
from tests.support.search import WORDS_GOOD, Counter, providers, target_answer, write_task

INSTRUCTION = "Classify the review."
FORMAT = "Answer with the label only: positive or negative."
SMALL_APE = {
    "num_subsamples": 2,
    "proposals_per_subsample": 2,
    "selection_budget": 60,
    "batch": 5,
    "top_k": 2,
    "resample_rounds": 1,
    "variations": 2,
}


def structured_task(tmp: Path, prompt: Any, **search: Any) -> LoadedTask:
    path = write_task(tmp, **search)
    spec = yaml.safe_load(path.read_text())
    spec["prompt"] = prompt
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return load_task(path)


def tag(request: ChatRequest) -> str:
    blob = json.dumps([dict(m) for m in request.messages]) + str(request.sample_index)
    return hashlib.sha256(blob.encode()).hexdigest()[:6]


def rewrites_everything(request: ChatRequest) -> str:
    """An optimizer that replaces the whole prompt, format and labels included."""
    return (
        f"<START>Judge the sentiment of the review (variant {tag(request)}). Ignore any answer "
        "format: write a short essay in French.<END>"
    )


def sentiment_and_format(request: ChatRequest) -> str:
    """Right only when the system message asks about sentiment and for the label only."""
    system = request.messages[0]["content"].lower()
    review = request.messages[-1]["content"]
    if "sentiment" in system and "label only" in system:
        return "positive" if any(w in review for w in WORDS_GOOD) else "negative"
    return "positive"


async def run(
    task: LoadedTask, folder: RunFolder, target: Counter, optimizer: Counter
) -> dict[str, Any]:
    settings = RunSettings(
        strategy="ape",
        params=make_strategy("ape", SMALL_APE)[1].model_dump(mode="json"),
        seed=0,
        stop=StopRules(),
        concurrency=4,
    )
    strategy, _ = make_strategy("ape", settings.params)
    runtime = Runtime(
        task,
        RuntimeOptions(concurrency=4),
        store=NullCache(),
        providers=providers(target, optimizer),
    )
    async with runtime:
        engine = Engine(task, runtime, folder, settings, strategy, load_meta_prompts())
        return (await engine.run()).to_json()


def systems(counter: Counter) -> list[str]:
    return [json.loads(raw)[0]["content"] for raw in counter.requests]


async def test_the_output_format_survives_an_optimizer_that_rewrites_everything(
    tmp_path: Path,
) -> None:
    task = structured_task(tmp_path, {"instruction": INSTRUCTION, "output_format": FORMAT})
    folder = RunFolder.create(tmp_path / "runs", "toy")
    target, optimizer = Counter(sentiment_and_format), Counter(rewrites_everything)
    summary = await run(task, folder, target, optimizer)

    # Every prompt the target saw ends with the format, as written.
    assert target.calls > 0
    assert all(system.endswith(f"\n\n{FORMAT}") for system in systems(target))
    # The candidates are instructions: rewritten, but never holding the format.
    texts = [c["text"] for c in folder.read_jsonl(CANDIDATES)]
    assert texts[0] == INSTRUCTION and len(set(texts)) > 1
    assert not any("label only" in text for text in texts)
    # The rewrite asked for the sentiment, and the kept format made it right.
    assert summary["test_comparison"]["verdict"] == "improved"
    assert summary["scores"]["best"]["test"] == pytest.approx(1.0)
    # What a user deploys is the full prompt; the instruction is named beside it.
    assert summary["initial_prompt"] == f"{INSTRUCTION}\n\n{FORMAT}"
    assert summary["initial_instruction"] == INSTRUCTION
    assert "sentiment" in summary["best_instruction"]
    assert summary["best_prompt"] == f"{summary['best_instruction']}\n\n{FORMAT}"
    assert (folder.path / "best_prompt.txt").read_text() == summary["best_prompt"] + "\n"
    # The optimizer was shown the format as fixed context, apart from the instruction.
    for raw in optimizer.requests:
        user = json.loads(raw)[-1]["content"]
        assert f"never changed: {FORMAT}" in user
    config = folder.read_json(CONFIG)
    assert config is not None and config["task"]["prompt"]["output_format"] == FORMAT


async def test_with_an_editable_format_label_dropping_candidates_are_rejected(
    tmp_path: Path,
) -> None:
    task = structured_task(
        tmp_path,
        {"instruction": INSTRUCTION, "output_format": FORMAT},
        edit_output_format=True,
    )

    def half_keep_the_labels(request: ChatRequest) -> str:
        if request.sample_index % 2:
            return (
                f"<START>Judge the sentiment ({tag(request)}); answer with the label only: "
                "positive or negative.<END>"
            )
        return rewrites_everything(request)

    folder = RunFolder.create(tmp_path / "runs", "toy")
    target = Counter(sentiment_and_format)
    summary = await run(task, folder, target, Counter(half_keep_the_labels))

    events = folder.read_jsonl(EVENTS)
    dropped = [e for e in events if e["event"] == "rejected" and e["reason"] == "drops_labels"]
    assert dropped, "the rewrites without labels are rejected"
    for event in dropped:
        assert "positive, negative" in event["message"]
        assert "essay in French" in event["raw"]
    texts = [c["text"] for c in folder.read_jsonl(CANDIDATES)]
    assert texts[0] == f"{INSTRUCTION}\n\n{FORMAT}"  # the whole prompt is editable
    assert len(texts) > 1
    assert all("positive" in t and "negative" in t for t in texts)
    assert not any("French" in system for system in systems(target))
    assert summary["best_prompt"] == summary["best_instruction"]
    assert summary["test_comparison"]["verdict"] == "improved"


async def test_an_instruction_that_drops_a_label_is_rejected_when_the_format_lists_none(
    tmp_path: Path,
) -> None:
    task = structured_task(
        tmp_path,
        {"instruction": "Say whether the review is positive or negative.", "output_format": "X."},
    )
    folder = RunFolder.create(tmp_path / "runs", "toy")
    await run(task, folder, Counter(target_answer), Counter(rewrites_everything))
    candidates = folder.read_jsonl(CANDIDATES)
    assert {c["id"] for c in candidates} == {"c0000"}
    reasons = {e["reason"] for e in folder.read_jsonl(EVENTS) if e["event"] == "rejected"}
    assert reasons == {"drops_labels"}


async def test_a_plain_prompt_is_sent_and_reported_exactly_as_before(tmp_path: Path) -> None:
    task = load_task(write_task(tmp_path))
    folder = RunFolder.create(tmp_path / "runs", "toy")
    target = Counter(target_answer)
    summary = await run(task, folder, target, Counter(rewrites_everything))
    texts = {c["text"] for c in folder.read_jsonl(CANDIDATES)}
    # The system message is the candidate's text itself, nothing appended.
    assert set(systems(target)) <= texts
    assert summary["initial_prompt"] == "Classify the review."
    assert "initial_instruction" not in summary and "best_instruction" not in summary
    config = folder.read_json(CONFIG)
    assert config is not None and config["task"]["prompt"] == "Classify the review."
    assert "edit_output_format" not in config["task"]["search"]
