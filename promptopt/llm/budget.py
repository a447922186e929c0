"""Hard budget caps, reserved before a request is sent so that concurrency cannot overshoot."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from promptopt.errors import BudgetExhausted

EMBEDDING = "embedding"
"""The role of embedding calls: counted on their own, without a call cap."""


@dataclass(frozen=True)
class BudgetCaps:
    """Caps on model calls per role and on dollars; None means no cap."""

    target_calls: int | None = None
    optimizer_calls: int | None = None
    cost_usd: float | None = None
    judge_calls: int | None = None

    def calls_cap(self, role: str) -> int | None:
        """The call cap for a role ("target", "optimizer" or "judge"; "embedding" calls are
        counted but never capped: only dollars limit them)."""
        if role == EMBEDDING:
            return None
        if role == "target":
            return self.target_calls
        return self.judge_calls if role == "judge" else self.optimizer_calls


@dataclass
class Reservation:
    """What one in-flight request holds against the budget until it is settled."""

    role: str
    cost_usd: float
    settled: bool = False


@dataclass
class BudgetLedger:
    """Counts calls and dollars per role.

    A call is counted when its request is first sent (retries of it are not new calls: a 429 or
    a 5xx is not billed). Dollars are reserved at the request's worst case and replaced by the
    real cost when it returns, or released when it fails.

    All methods run on one event loop without awaiting, so check-then-add is atomic.
    """

    caps: BudgetCaps = field(default_factory=BudgetCaps)
    calls: dict[str, int] = field(default_factory=dict)
    spent_usd: float = 0.0
    reserved_usd: float = 0.0
    # Set (and replaced) whenever a reservation is settled, for requests waiting for room.
    _settled: asyncio.Event | None = field(default=None, repr=False, compare=False)

    def has_room(self, max_cost_usd: float) -> bool:
        """Whether a request of this worst case fits the cost cap now."""
        cap = self.caps.cost_usd
        return cap is None or self.spent_usd + self.reserved_usd + max_cost_usd <= cap + 1e-12

    def waiting_helps(self, max_cost_usd: float) -> bool:
        """Whether a request that does not fit now may fit once the requests in flight settle:
        they hold their worst case, and most cost far less."""
        return not self.has_room(max_cost_usd) and self.reserved_usd > 1e-12

    async def wait_for_settle(self) -> None:
        """Return once some reservation in flight is settled."""
        if self._settled is None:
            self._settled = asyncio.Event()
        await self._settled.wait()

    def _calls_role(self, role: str) -> str:
        # The judge (a judge metric's or a pairwise judge's calls) has its own cap: a
        # preference search must not starve the optimizer that writes its candidates, nor
        # the other way round. Embedding calls are counted apart. Any other role counts as
        # the optimizer.
        return role if role in ("target", "judge", EMBEDDING) else "optimizer"

    def reserve(self, role: str, max_cost_usd: float) -> Reservation:
        """Reserve one call and its worst-case cost, or raise BudgetExhausted without sending."""
        key = self._calls_role(role)
        cap = self.caps.calls_cap(key)
        if cap is not None and self.calls.get(key, 0) + 1 > cap:
            raise BudgetExhausted(f"the {key} call budget ({cap}) is spent")
        if not self.has_room(max_cost_usd):
            raise BudgetExhausted(f"the cost budget (${self.caps.cost_usd:.4f}) is spent")
        self.calls[key] = self.calls.get(key, 0) + 1
        self.reserved_usd += max_cost_usd
        return Reservation(role=key, cost_usd=max_cost_usd)

    def reserve_cost(self, role: str, max_cost_usd: float) -> Reservation:
        """Reserve the worst-case cost of a request whose call is already counted (one a
        provider batch left unanswered, sent again on its own), or raise BudgetExhausted."""
        if (
            self.caps.cost_usd is not None
            and self.spent_usd + self.reserved_usd + max_cost_usd > self.caps.cost_usd + 1e-12
        ):
            raise BudgetExhausted(f"the cost budget (${self.caps.cost_usd:.4f}) is spent")
        self.reserved_usd += max_cost_usd
        return Reservation(role=self._calls_role(role), cost_usd=max_cost_usd)

    def settle(self, reservation: Reservation, actual_cost_usd: float) -> None:
        """Replace the reserved worst case by what the call really cost."""
        if reservation.settled:
            return
        reservation.settled = True
        self.reserved_usd -= reservation.cost_usd
        self.spent_usd += actual_cost_usd
        if self._settled is not None:
            self._settled.set()
            self._settled = None

    def release(self, reservation: Reservation) -> None:
        """Give back the dollars of a request that failed (the call still counts)."""
        self.settle(reservation, 0.0)

    def remaining_calls(self, role: str) -> int | None:
        """Calls left for a role, or None when uncapped."""
        key = self._calls_role(role)
        cap = self.caps.calls_cap(key)
        return None if cap is None else max(0, cap - self.calls.get(key, 0))

    def restore(self, calls: dict[str, int], spent_usd: float) -> None:
        """Start from what a resumed run had already spent."""
        self.calls = dict(calls)
        self.spent_usd = spent_usd
