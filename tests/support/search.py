"""A small sentiment task and scripted target/optimizer models for end-to-end search tests.

The target answers correctly only when its instruction says "label only"; otherwise it always
says "positive" (half right). The optimizer sometimes proposes an instruction with that
property, wrapped in the kind of chatter small models produce.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from promptopt.llm.messages import ChatRequest
from promptopt.llm.providers.scripted import Reply, ScriptedProvider
from promptopt.run.folder import CANDIDATES, EVENTS, SUMMARY, RunFolder

WORDS_GOOD = ["great", "lovely", "superb", "moving", "witty"]
WORDS_BAD = ["dull", "awful", "tedious", "clumsy", "bland"]
PROPERTY = "label only"


def rows(n: int, offset: int) -> list[dict[str, str]]:
    out = []
    for i in range(n):
        good = (i + offset) % 2 == 0
        word = (WORDS_GOOD if good else WORDS_BAD)[(i + offset) % 5]
        out.append(
            {
                "id": f"r{offset + i}",
                "input": f"review {offset + i}: a {word} film",
                "target": "positive" if good else "negative",
            }
        )
    return out


def write_task(tmp: Path, *, budget: dict[str, Any] | None = None, **search: Any) -> Path:
    task = {
        "name": "toy-sentiment",
        "description": "Say whether a film review is positive or negative.",
        "prompt": "Classify the review.",
        "data": {"train": rows(40, 0), "dev": rows(20, 100), "test": rows(20, 200)},
        "metric": {"type": "label", "labels": ["positive", "negative"]},
        "models": {
            "target": {"model": "scripted:target", "temperature": 0, "max_tokens": 8},
            "optimizer": {"model": "scripted:optimizer", "temperature": 0.9},
        },
        "search": {"strategy": "ape", "seed": 0, "budget": budget or {}, **search},
    }
    path = tmp / "task.yaml"
    path.write_text(yaml.safe_dump(task, sort_keys=False))
    return path


def with_loadable_models(task: Path) -> Path:
    """The task file with scripted models a dry run can load (it checks models as a run does);
    `write_task`'s names stand for providers passed in by the tests."""
    (task.parent / "script.py").write_text("def reply(request):\n    return 'positive'\n")
    spec = yaml.safe_load(task.read_text())
    for role in ("target", "optimizer"):
        spec["models"][role]["model"] = "scripted:script.py:reply"
    task.write_text(yaml.safe_dump(spec, sort_keys=False))
    return task


def target_answer(request: ChatRequest) -> str:
    system = request.messages[0]["content"].lower()
    review = request.messages[-1]["content"]
    if PROPERTY in system:
        return "positive" if any(w in review for w in WORDS_GOOD) else "negative"
    return "positive"


def _pick(request: ChatRequest, options: list[str]) -> str:
    blob = json.dumps([dict(m) for m in request.messages]) + str(request.sample_index)
    return options[int(hashlib.sha256(blob.encode()).hexdigest(), 16) % len(options)]


def optimizer_answer(request: ChatRequest) -> str:
    user = request.messages[-1]["content"]
    if "Output:" in user:  # instruction induction from demonstrations
        return _pick(
            request,
            [
                "Sure! Here is the instruction:\n```\nDecide if the review is positive or "
                "negative. Answer with the label only.\n```\nThis works because it is short.",
                "<START>Read the film review and tell me what you think of it.<END>",
                'Instruction: "Say whether the sentiment is positive or negative."',
                "I'm sorry, but I can't help with that.",
                "",
            ],
        )
    return _pick(
        request,
        [
            "<START>Tell whether this review is positive or negative; reply with the label "
            "only.<END>",
            "<START>Judge the review's sentiment.<END>",
            "Here is a variation:\n\nClassify the review's sentiment as positive or negative.",
        ],
    )


class Counter:
    """Wraps a script function and counts (and optionally interrupts) its calls."""

    def __init__(
        self, fn: Callable[[ChatRequest], Reply], on_call: Callable[[int], None] | None = None
    ):
        self.fn = fn
        self.calls = 0
        self.requests: list[str] = []
        self.on_call = on_call

    def __call__(self, request: ChatRequest) -> Reply:
        self.calls += 1
        self.requests.append(json.dumps([dict(m) for m in request.messages]))
        if self.on_call is not None:
            self.on_call(self.calls)
        return self.fn(request)


def providers(
    target: Counter | None = None, optimizer: Counter | None = None
) -> dict[str, ScriptedProvider]:
    return {
        "target": ScriptedProvider(target or Counter(target_answer), name="target"),
        "optimizer": ScriptedProvider(optimizer or Counter(optimizer_answer), name="optimizer"),
    }


def stable(folder: RunFolder) -> dict[str, Any]:
    """The run folder's content, minus what legitimately differs between runs."""
    summary = dict(folder.read_json(SUMMARY) or {})
    for key in ("run_dir", "wall_s"):
        summary.pop(key)
    for usage in summary["usage"].values():
        usage.pop("latency_s")
    return {
        "summary": summary,
        "candidates": folder.read_jsonl(CANDIDATES),
        "events": [e for e in folder.read_jsonl(EVENTS) if e.get("event") != "resumed"],
        "best": (folder.path / "best_prompt.txt").read_text(),
    }
