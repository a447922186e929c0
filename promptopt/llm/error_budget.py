"""How many failures a command tolerates before it stops: a score that errors decided is worse
than no score, so a role whose requests keep failing stops the command instead of finishing
with zeros."""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass, field

from promptopt.errors import PromptoptError

DEFAULT_MAX_RATE = 0.2
DEFAULT_MIN_REQUESTS = 20
DEFAULT_MAX_CONSECUTIVE = 10
CONNECTION_KINDS = frozenset({"connection failed", "timed out"})
"""Failure kinds that say the endpoint cannot be reached at all."""


class TooManyErrors(PromptoptError):
    """A role's requests (or the metric) kept failing; the command stops with exit 1."""


@dataclass(frozen=True)
class ErrorLimits:
    """When failures stop a command.

    `max_rate`: more than this fraction of a role's requests failed, once at least
    `min_requests` of them have an outcome. `max_consecutive`: this many requests in a row
    failed to reach the endpoint (connection failures or timeouts, after their retries).
    """

    max_rate: float = DEFAULT_MAX_RATE
    min_requests: int = DEFAULT_MIN_REQUESTS
    max_consecutive: int = DEFAULT_MAX_CONSECUTIVE

    def exceeded(self, errors: int, total: int) -> bool:
        """Whether `errors` of `total` outcomes is more than a finished evaluation may hold:
        at its end there are no more outcomes to wait for, so the minimum does not apply."""
        return total > 0 and errors > self.max_rate * total


@dataclass
class ErrorBudget:
    """Counts one role's final outcomes (after retries) and raises TooManyErrors when they
    pass the limits; once tripped it stays tripped, so nothing more is sent."""

    limits: ErrorLimits
    what: str
    """Names the endpoint, e.g. "target model openai:gpt-4o-mini at https://api.openai.com/v1"."""
    unit: str = "requests"
    total: int = 0
    failed: int = 0
    consecutive: int = 0
    kinds: Counter[str] = field(default_factory=Counter)
    tripped: TooManyErrors | None = None
    stopped: asyncio.Event = field(default_factory=asyncio.Event)
    """Set when the budget trips, so that requests waiting to retry stop waiting."""

    def check(self) -> None:
        """Raise the error that stopped this role, if one did."""
        if self.tripped is not None:
            raise self.tripped

    def succeeded(self) -> None:
        """Count an outcome that was an answer."""
        self.total += 1
        self.consecutive = 0

    def failed_with(self, kind: str) -> None:
        """Count a failed outcome of `kind`; raise TooManyErrors when the limits are passed."""
        self.total += 1
        self.failed += 1
        self.kinds[kind] += 1
        self.consecutive = self.consecutive + 1 if kind in CONNECTION_KINDS else 0
        limits = self.limits
        if self.tripped is None:
            if self.consecutive >= limits.max_consecutive:
                self.tripped = TooManyErrors(
                    f"{self.what}: {self.consecutive} {self.unit} in a row failed ({kind})"
                )
            elif self.total >= limits.min_requests and self.failed > limits.max_rate * self.total:
                self.tripped = TooManyErrors(
                    f"{self.what}: {self.failed} of {self.total} {self.unit} failed "
                    f"({self.kinds_text()}), more than the error budget of "
                    f"{limits.max_rate:.0%}"
                )
            if self.tripped is not None:
                self.stopped.set()
        self.check()

    def kinds_text(self) -> str:
        """The failure kinds, most frequent first: "HTTP 500: 18, timed out: 2"."""
        return ", ".join(f"{kind}: {n}" for kind, n in self.kinds.most_common())
