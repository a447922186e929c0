"""A question-type task and scripted models for ProTeGi tests.

The target labels "who" questions `person` and "where" questions `place` correctly, but calls
"how many" questions `place` unless its instruction mentions numbers or quantities. The
optimizer, like a weak model, mixes useful answers with chatter, lists, refusals and empty
replies: some gradients name the number problem, and some edits of those add the fix.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

import yaml

from promptopt.llm.messages import ChatRequest

INITIAL = "Say what kind of answer the question asks for: person, place or count."
FIX = "Questions about numbers or quantities (how many ...) ask for a count."
TRIGGERS = ("numbers", "quantities")

_THINGS = ["apples", "moons", "legs", "books", "chairs", "rivers", "stars", "keys"]
_PEOPLE = ["wrote Hamlet", "painted the ceiling", "won the race", "built the bridge"]
_PLACES = ["the Louvre", "Mount Fuji", "the Nile", "Lake Titicaca", "Petra"]


def rows(n: int, offset: int) -> list[dict[str, str]]:
    """n questions, a third of them about quantities."""
    out = []
    for i in range(n):
        k = offset + i
        kind = k % 3
        if kind == 0:
            text, label = f"How many {_THINGS[k % len(_THINGS)]} are there in box {k}?", "count"
        elif kind == 1:
            text, label = f"Who {_PEOPLE[k % len(_PEOPLE)]} in story {k}?", "person"
        else:
            text, label = f"Where is {_PLACES[k % len(_PLACES)]} on map {k}?", "place"
        out.append({"id": f"q{k}", "input": text, "target": label})
    return out


def write_task(
    tmp: Path, *, train: int = 50, params: dict[str, Any] | None = None, **search: Any
) -> Path:
    """A task file with inline data in tmp."""
    task = {
        "name": "question-types",
        "description": "Say what kind of answer a question asks for.",
        "prompt": INITIAL,
        "data": {"train": rows(train, 0), "dev": rows(15, 1000), "test": rows(30, 2000)},
        "metric": {"type": "label", "labels": ["person", "place", "count"]},
        "models": {
            "target": {"model": "scripted:target", "temperature": 0, "max_tokens": 8},
            "optimizer": {"model": "scripted:optimizer", "temperature": 0.7},
        },
        "search": {"strategy": "protegi", "seed": 0, "params": params or {}, **search},
    }
    path = tmp / "task.yaml"
    path.write_text(yaml.safe_dump(task, sort_keys=False))
    return path


def fixed(instruction: str) -> bool:
    """Whether an instruction carries the fix the target needs."""
    low = instruction.lower()
    return any(t in low for t in TRIGGERS)


def target_answer(request: ChatRequest) -> str:
    """The scripted target model."""
    system = request.messages[0]["content"]
    question = request.messages[-1]["content"]
    if question.startswith("Who"):
        return "person"
    if question.startswith("How many") and fixed(system):
        return "count"
    return "place"


def pick(request: ChatRequest, options: list[str]) -> str:
    """A fixed but request-dependent choice, like a sampled answer."""
    blob = json.dumps([dict(m) for m in request.messages]) + str(request.sample_index)
    return options[int(hashlib.sha256(blob.encode()).hexdigest(), 16) % len(options)]


def prompt_of(user: str) -> str:
    """The prompt quoted in a ProTeGi meta-prompt."""
    found = re.search(r"<PROMPT>\n(.*?)\n</PROMPT>", user, re.DOTALL)
    assert found, user
    return found.group(1)


def kind_of(request: ChatRequest) -> str:
    """Which ProTeGi meta-prompt a request renders."""
    user = request.messages[-1]["content"]
    if "<PROBLEM>" in user:
        return "edit"
    if "Expected answer:" in user:
        return "gradient"
    return "paraphrase"


def optimizer_answer(request: ChatRequest) -> str:
    """The scripted optimizer model."""
    user = request.messages[-1]["content"]
    prompt = prompt_of(user)
    kind = kind_of(request)
    if kind == "gradient":
        good = (
            "Sure! Here is what I found.\n<START>The prompt never says that questions about "
            "numbers or quantities ('How many ...') ask for a count, so the model answers "
            "place.<END>"
        )
        return pick(
            request,
            [
                good,
                good,
                "1. The prompt is rather short.\n2. It lists the labels without examples.",
                "I'm sorry, but I cannot help with that.",
            ],
        )
    if kind == "edit":
        reason = user.split("<PROBLEM>")[1].split("</PROBLEM>")[0]
        if "numbers" in reason:
            return pick(
                request,
                [
                    f"Here is the revised prompt:\n<START>{prompt} {FIX}<END>\nThis fixes it.",
                    f"<START>{prompt} {FIX}<END>",
                    f"<START>{prompt} Think before answering.<END>",
                    "",
                ],
            )
        return pick(request, [f"<START>{prompt} Be brief.<END>", "Sorry, I can't."])
    return pick(
        request,
        [
            f"<START>In other words: {prompt}<END>",
            f"<START>{prompt}<END>",  # no change at all: a duplicate
            f"Sure! Here's a rephrased version:\n\n{prompt} Answer with one word.\n\n"
            "This keeps the meaning.",
        ],
    )
