"""A deterministic fake model for tests and dry runs, driven by a function or a reply table."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from promptopt.errors import FatalProviderError, UsageError
from promptopt.llm.messages import (
    FINISH_STOP,
    ChatRequest,
    Completion,
    Usage,
    normalize_finish_reason,
)
from promptopt.llm.providers.base import Embeddings
from promptopt.task.modelspec import ModelSpec
from promptopt.util.user_code import load_function

TableReply = str | Mapping[str, Any]
"""A reply in a table or sequence: its text, or {"text": ..., "finish_reason": "length"} to
play an answer cut at the token limit."""
Reply = TableReply | Completion
ScriptFunction = Callable[[ChatRequest], Reply]
Script = ScriptFunction | Mapping[str, TableReply] | Sequence[TableReply]
EmbedFunction = Callable[[str], Sequence[float]]
"""A scripted embedding model: a text's vector."""
_REPLY_KEYS = frozenset({"text", "finish_reason"})


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
    or a sequence of replies consumed in order (shared by concurrent callers under a lock). A
    reply is its text (finish_reason "stop"), a mapping `{"text": ..., "finish_reason": ...}`
    (e.g. "length" for an answer cut at the token limit), or, from a function, a `Completion`.

    With an `embedder` (a function from a text to its vector) it also embeds, deterministically;
    without one, `embed` fails as a server without an embeddings endpoint would.
    """

    def __init__(
        self, script: Script, *, name: str = "script", embedder: EmbedFunction | None = None
    ) -> None:
        self._embedder = embedder
        if isinstance(script, str):
            raise TypeError("a script is a function, a mapping or a sequence of replies, not a str")
        self._name = name
        self._function: ScriptFunction | None = None
        self._table: Mapping[str, TableReply] | None = None
        self._queue: list[TableReply] | None = None
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

    @classmethod
    def embedder_from_spec(cls, spec: ModelSpec, *, base_dir: Path) -> ScriptedProvider:
        """An embedding model from `scripted:FILE.py:FUNCTION`, where FUNCTION maps a text to
        its vector (a list of floats); it answers no chat request."""
        path_text, _, function_name = spec.name.rpartition(":")
        if not path_text.endswith(".py"):
            raise UsageError(
                f"scripted:{spec.name}: a scripted embedding model is scripted:FILE.py:FUNCTION, "
                "a function from a text to a list of floats"
            )
        function = load_function(base_dir / path_text, function_name, what="scripted model")
        return cls((), name=spec.name, embedder=function)

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
        finish_reason: str | None = FINISH_STOP
        if isinstance(reply, Mapping):
            problem = reply_mapping_problem(reply)
            if problem:
                raise FatalProviderError(f"scripted model {self._name}: {problem}")
            text = reply["text"]
            finish_reason = normalize_finish_reason(reply.get("finish_reason", FINISH_STOP))
        elif isinstance(reply, str):
            text = reply
        else:
            raise FatalProviderError(
                f"scripted model {self._name} returned {type(reply).__name__}, "
                "expected a str, a mapping with 'text' or a Completion"
            )
        prompt_tokens = sum(estimate_tokens(m["content"]) for m in request.messages)
        return Completion(
            text=text,
            usage=Usage(input=prompt_tokens, output=estimate_tokens(text)),
            model=self._name,
            finish_reason=finish_reason,
        )

    async def embed(self, texts: Sequence[str]) -> Embeddings:
        """Each text's vector from the embedding function, with a whitespace token count."""
        if self._embedder is None:
            raise FatalProviderError(f"scripted model {self._name} has no embedding function")
        vectors = []
        for text in texts:
            vector = self._embedder(text)
            try:
                vectors.append(tuple(float(x) for x in vector))
            except (TypeError, ValueError) as error:
                raise FatalProviderError(
                    f"scripted model {self._name}: the embedding function returned "
                    f"{type(vector).__name__}, expected a list of floats"
                ) from error
        return Embeddings(
            vectors=tuple(vectors),
            usage=Usage(input=sum(estimate_tokens(t) for t in texts)),
            model=self._name,
        )

    async def aclose(self) -> None:
        """Nothing to release."""


def reply_mapping_problem(reply: Mapping[str, Any]) -> str:
    """What is wrong with a reply written as a mapping, or "" when it is well formed.

    Args:
        reply: A scripted reply such as `{"text": "...", "finish_reason": "length"}`.

    Returns:
        A sentence naming the problem, or "".
    """
    unknown = sorted(str(k) for k in reply if k not in _REPLY_KEYS)
    if unknown:
        return (
            f"a reply mapping has unknown key(s) {', '.join(unknown)}; allowed: text, finish_reason"
        )
    if not isinstance(reply.get("text"), str):
        return "a reply mapping needs 'text', a string"
    reason = reply.get("finish_reason")
    if reason is not None and not isinstance(reason, str):
        return "a reply mapping's 'finish_reason' must be a string such as 'stop' or 'length'"
    return ""


def load_script(name: str, base_dir: Path) -> Script:
    """Resolve a scripted model name to its function or reply table.

    `FILE.py:FUNCTION` imports FUNCTION from FILE.py; `FILE.json`, `FILE.yaml` or `FILE.yml` hold
    a mapping from user message to reply, or a list of replies (each a string, or a mapping
    with `text` and `finish_reason`).
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


def _is_reply(value: Any) -> bool:
    return isinstance(value, str) or (isinstance(value, dict) and not reply_mapping_problem(value))


def _load_table(path: Path) -> Mapping[str, TableReply] | Sequence[TableReply]:
    try:
        text = path.read_text(encoding="utf-8")
        data: Any = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except OSError as error:
        raise UsageError(f"scripted model: cannot read {path}: {error.strerror}") from error
    except (ValueError, yaml.YAMLError) as error:
        raise UsageError(f"scripted model: {path} does not parse: {error}") from error
    if isinstance(data, dict) and all(isinstance(k, str) and _is_reply(v) for k, v in data.items()):
        return data
    if isinstance(data, list) and all(_is_reply(v) for v in data):
        return data
    raise UsageError(
        f"scripted model: {path} must hold a mapping of user message to reply or a list of "
        "replies; a reply is a string or a mapping with 'text' (and 'finish_reason')"
    )
