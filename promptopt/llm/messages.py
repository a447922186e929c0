"""The values that cross the provider boundary: requests, completions and token usage."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Literal, TypedDict

Role = Literal["system", "user", "assistant"]


class Message(TypedDict):
    """One chat message."""

    role: Role
    content: str


@dataclass(frozen=True)
class ChatRequest:
    """Everything that determines a model's answer, apart from the model itself.

    `sample_index` distinguishes repeated samples of the same prompt at temperature > 0,
    so that they get different cache entries.
    """

    messages: tuple[Message, ...]
    params: Mapping[str, Any] = field(default_factory=dict)
    sample_index: int = 0


@dataclass
class Usage:
    """Token usage normalized across providers.

    `input` excludes cached tokens on every provider (OpenAI's prompt_tokens includes them;
    Anthropic's input_tokens does not), so the four numbers add up to what was processed.
    """

    input: int = 0
    cache_read: int = 0
    cache_write: int = 0
    output: int = 0

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            self.input + other.input,
            self.cache_read + other.cache_read,
            self.cache_write + other.cache_write,
            self.output + other.output,
        )

    def to_dict(self) -> dict[str, int]:
        """As a JSON-ready mapping."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Usage:
        """Inverse of `to_dict`, tolerant of missing keys."""
        return cls(
            **{k: int(data.get(k, 0)) for k in ("input", "cache_read", "cache_write", "output")}
        )


@dataclass(frozen=True)
class Completion:
    """A model's answer. `model` is the model id the API reported, when it reported one."""

    text: str
    usage: Usage
    model: str = ""
    latency_s: float = 0.0
