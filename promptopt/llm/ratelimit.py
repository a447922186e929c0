"""Requests and tokens per minute, kept on the client side before a server has to refuse.

Each model with `rpm` or `tpm` gets leaky buckets (aiolimiter) that hold one refill interval's
worth, not a whole minute's: a bucket as large as the limit would let a full minute's requests
out at once and then the next minute's as it refills, twice the limit in the first minute. With
small buckets no window of one period ever sees more than the limit plus one refill interval.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from aiolimiter import AsyncLimiter

from promptopt.llm.messages import Message, Usage

MINUTE_S = 60.0
REFILLS_PER_PERIOD = 60
"""A minute's limit refills every second."""
# Roughly four bytes of English per token; the answer's usage corrects the guess afterwards.
_BYTES_PER_TOKEN = 4
_TOKENS_PER_MESSAGE = 4


@dataclass(frozen=True)
class RateLimits:
    """A model's limits: `rpm` requests and `tpm` tokens (input plus output) per `period_s`
    (a minute; tests shrink it)."""

    rpm: float | None = None
    tpm: float | None = None
    period_s: float = MINUTE_S

    @property
    def refill_s(self) -> float:
        """How often the buckets refill: the most a window of `period_s` can overshoot by."""
        return self.period_s / REFILLS_PER_PERIOD


def _bucket(per_period: float, period_s: float) -> AsyncLimiter:
    """A bucket leaking `per_period` per `period_s` that holds one refill interval's worth (at
    least one unit, so that a single request always fits)."""
    capacity = max(1.0, per_period / REFILLS_PER_PERIOD)
    return AsyncLimiter(capacity, capacity * period_s / per_period)


class RateLimiter:
    """Waits until a request fits within a model's rpm and tpm."""

    def __init__(self, limits: RateLimits) -> None:
        self.limits = limits
        self._requests = _bucket(limits.rpm, limits.period_s) if limits.rpm else None
        self._tokens = _bucket(limits.tpm, limits.period_s) if limits.tpm else None

    async def acquire(self, tokens: int) -> None:
        """Wait for room for one request of (an estimated) `tokens` tokens."""
        if self._requests is not None:
            await self._requests.acquire(1)
        await self.charge(tokens)

    async def charge(self, tokens: int) -> None:
        """Count `tokens` more against the tpm (the answer used more than was estimated),
        waiting for room as needed; a request larger than a bucket is charged in parts."""
        bucket = self._tokens
        if bucket is None:
            return
        left = float(tokens)
        while left > 0:
            part = min(left, bucket.max_rate)
            await bucket.acquire(part)
            left -= part


def estimated_tokens(messages: Sequence[Message], params: Mapping[str, Any]) -> int:
    """What a request counts against a tpm before its answer is known: its input, guessed from
    its length, plus the output it may produce (max_tokens for each of its `n` samples), as
    providers count it."""
    text_bytes = sum(len(m["content"].encode("utf-8")) for m in messages)
    prompt = math.ceil(text_bytes / _BYTES_PER_TOKEN) + _TOKENS_PER_MESSAGE * len(messages)
    limit = params.get("max_tokens") or params.get("max_completion_tokens") or 0
    return prompt + int(limit) * int(params.get("n") or 1)


def used_tokens(usage: Usage) -> int:
    """What an answer counted against a tpm."""
    return usage.input + usage.cache_read + usage.cache_write + usage.output
