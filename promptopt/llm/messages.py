"""The values that cross the provider boundary: requests, completions and token usage."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
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
    so that they get different cache entries. `n` asks for that many samples in one request
    (only of a provider whose `samples_per_request` is true); they are samples `sample_index`
    onwards.
    """

    messages: tuple[Message, ...]
    params: Mapping[str, Any] = field(default_factory=dict)
    sample_index: int = 0
    n: int = 1


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
        # Spelled out: `asdict` deep-copies field by field, a cost paid on every answer.
        return {
            "input": self.input,
            "cache_read": self.cache_read,
            "cache_write": self.cache_write,
            "output": self.output,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Usage:
        """Inverse of `to_dict`, tolerant of missing keys."""
        return cls(
            int(data.get("input", 0)),
            int(data.get("cache_read", 0)),
            int(data.get("cache_write", 0)),
            int(data.get("output", 0)),
        )


FINISH_STOP = "stop"
"""The model ended its answer itself (or at a stop sequence)."""
FINISH_LENGTH = "length"
"""The answer was cut off at the token limit (max_tokens)."""

# Provider names for "ended by itself" and "hit the token limit", mapped onto the two values
# the search acts on; any other reason (content_filter, tool_calls, refusal) is kept as given.
_FINISH_ALIASES = {
    "stop": FINISH_STOP,
    "end_turn": FINISH_STOP,
    "stop_sequence": FINISH_STOP,
    "eos": FINISH_STOP,
    "length": FINISH_LENGTH,
    "max_tokens": FINISH_LENGTH,
    "model_length": FINISH_LENGTH,
}


def normalize_finish_reason(raw: object) -> str | None:
    """Why generation ended, as "stop", "length", another provider's word, or None (unknown).

    Args:
        raw: What the provider reported (OpenAI's finish_reason, Anthropic's stop_reason,
            llama.cpp's finish_reason), or what a cache or journal entry holds.

    Returns:
        "stop" or "length" for the known synonyms, the reason in lower case otherwise, and None
        when nothing usable was reported.
    """
    if not isinstance(raw, str) or not raw.strip():
        return None
    key = raw.strip().lower()
    return _FINISH_ALIASES.get(key, key)


@dataclass(frozen=True)
class RateLimitState:
    """What a server said about its rate limits along with an answer (the
    `x-ratelimit-remaining-*` and `x-ratelimit-reset-*` headers); None where it said nothing."""

    remaining_requests: int | None = None
    remaining_tokens: int | None = None
    reset_requests_s: float | None = None
    reset_tokens_s: float | None = None

    def wait_s(self) -> float:
        """Seconds to hold back further requests: until the exhausted limit resets, else 0."""
        waits = [
            reset or 0.0
            for remaining, reset in (
                (self.remaining_requests, self.reset_requests_s),
                (self.remaining_tokens, self.reset_tokens_s),
            )
            if remaining is not None and remaining <= 0
        ]
        return max(waits, default=0.0)


@dataclass(frozen=True)
class Completion:
    """A model's answer. `model` is the model id the API reported, when it reported one;
    `finish_reason` is why generation ended (`normalize_finish_reason`), None when unknown;
    `rate_limit` is what the server said about its rate limits, when it said anything;
    `more` holds the further samples (text, finish_reason) of a request for several, whose
    `usage` covers them all."""

    text: str
    usage: Usage
    model: str = ""
    latency_s: float = 0.0
    finish_reason: str | None = None
    rate_limit: RateLimitState | None = None
    more: tuple[tuple[str, str | None], ...] = ()

    @property
    def truncated(self) -> bool:
        """True when the answer was cut off at the token limit."""
        return self.finish_reason == FINISH_LENGTH
