"""A deterministic fake model for tests and dry runs, driven by a function or a reply table."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from promptopt.errors import FatalProviderError, UsageError
from promptopt.llm.messages import ChatRequest, Completion, Usage
from promptopt.task.modelspec import ModelSpec
from promptopt.util.user_code import load_function

Reply = str | Completion
ScriptFunction = Callable[[ChatRequest], Reply]
Script = ScriptFunction | Mapping[str, str] | Sequence[str]


def estimate_tokens(text: str) -> int:
    """A deterministic stand-in for a tokenizer: whitespace-separated words."""
    return len(text.split())


def last_user_message(request: ChatRequest) -> str:
    """The content of the request's last user message ("" when there is none)."""
    for message in reversed(request.messages):
        if message["role"] == "user":
            return message["content"]
    return ""


class ScriptedProvider:
    """Answers from a script; fails loudly when the script has no reply.

    The script is a function of the request, a mapping from the last user message to a reply,
    or a sequence of replies consumed in order (shared by concurrent callers under a lock).
    """

    def __init__(self, script: Script, *, name: str = "script") -> None:
        if isinstance(script, str):
            raise TypeError("a script is a function, a mapping or a sequence of replies, not a str")
        self._name = name
        self._function: ScriptFunction | None = None
        self._table: Mapping[str, str] | None = None
        self._queue: list[str] | None = None
        if callable(script):
            self._function = script
        elif isinstance(script, Mapping):
            self._table = dict(script)
        else:
            self._queue = list(script)
        self._next = 0
        self._lock = threading.Lock()

    @classmethod
    def from_spec(cls, spec: ModelSpec, *, base_dir: Path) -> ScriptedProvider:
        """Load `scripted:FILE.py:FUNCTION` or `scripted:TABLE.json|.yaml`, relative to base_dir."""
        return cls(load_script(spec.name, base_dir), name=spec.name)

    @property
    def endpoint(self) -> str:
        """One endpoint per script, so scripted models never share a concurrency limit."""
        return f"scripted:{self._name}"

    @property
    def model_id(self) -> str:
        """The "provider:name" id."""
        return f"scripted:{self._name}"

    def _reply(self, request: ChatRequest) -> Reply:
        if self._function is not None:
            return self._function(request)
        if self._table is not None:
            key = last_user_message(request)
            if key not in self._table:
                raise self._ran_out(f"the user message {key[:80]!r}")
            return self._table[key]
        assert self._queue is not None
        with self._lock:
            if self._next >= len(self._queue):
                raise self._ran_out(f"request {self._next + 1} ({len(self._queue)} replies given)")
            reply = self._queue[self._next]
            self._next += 1
        return reply

    def _ran_out(self, what: str) -> FatalProviderError:
        return FatalProviderError(
            f"scripted model {self._name} has no reply for {what}: its script ran out"
        )

    async def complete(self, request: ChatRequest) -> Completion:
        """The scripted reply, with a whitespace token count as usage."""
        reply = self._reply(request)
        if isinstance(reply, Completion):
            return reply
        if not isinstance(reply, str):
            raise FatalProviderError(
                f"scripted model {self._name} returned {type(reply).__name__}, "
                "expected a str or a Completion"
            )
        prompt_tokens = sum(estimate_tokens(m["content"]) for m in request.messages)
        return Completion(
            text=reply,
            usage=Usage(input=prompt_tokens, output=estimate_tokens(reply)),
            model=self._name,
        )

    async def aclose(self) -> None:
        """Nothing to release."""


def load_script(name: str, base_dir: Path) -> Script:
    """Resolve a scripted model name to its function or reply table.

    `FILE.py:FUNCTION` imports FUNCTION from FILE.py; `FILE.json`, `FILE.yaml` or `FILE.yml` hold
    a mapping from user message to reply, or a list of replies.
    """
    path_text, _, function_name = name.rpartition(":")
    if path_text.endswith(".py"):
        return _load_function(base_dir / path_text, function_name)
    if name.endswith(".py"):
        raise UsageError(f"scripted:{name}: name the function too, as scripted:{name}:FUNCTION")
    path = base_dir / name
    if path.suffix not in (".json", ".yaml", ".yml"):
        raise UsageError(
            f"scripted:{name}: expected scripted:FILE.py:FUNCTION or scripted:TABLE.json|.yaml"
        )
    return _load_table(path)


def _load_function(path: Path, function_name: str) -> ScriptFunction:
    return load_function(path, function_name, what="scripted model")


def _load_table(path: Path) -> Mapping[str, str] | Sequence[str]:
    try:
        text = path.read_text(encoding="utf-8")
        data: Any = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except OSError as error:
        raise UsageError(f"scripted model: cannot read {path}: {error.strerror}") from error
    except (ValueError, yaml.YAMLError) as error:
        raise UsageError(f"scripted model: {path} does not parse: {error}") from error
    if isinstance(data, dict) and all(
        isinstance(k, str) and isinstance(v, str) for k, v in data.items()
    ):
        return data
    if isinstance(data, list) and all(isinstance(v, str) for v in data):
        return data
    raise UsageError(
        f"scripted model: {path} must hold a mapping of user message to reply (strings) "
        "or a list of replies"
    )
