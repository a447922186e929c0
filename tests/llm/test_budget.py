from __future__ import annotations

import pytest

from promptopt.errors import BudgetExhausted
from promptopt.llm.budget import BudgetCaps, BudgetLedger


def test_call_caps_per_role_and_the_judge_has_its_own() -> None:
    ledger = BudgetLedger(BudgetCaps(target_calls=2, optimizer_calls=1, judge_calls=1))
    ledger.reserve("target", 0)
    ledger.reserve("target", 0)
    with pytest.raises(BudgetExhausted, match="target call budget"):
        ledger.reserve("target", 0)
    ledger.reserve("judge", 0)
    with pytest.raises(BudgetExhausted, match="judge call budget"):
        ledger.reserve("judge", 0)
    # The judge's calls left the optimizer's untouched.
    assert ledger.remaining_calls("optimizer") == 1
    ledger.reserve("optimizer", 0)
    with pytest.raises(BudgetExhausted, match="optimizer call budget"):
        ledger.reserve("optimizer", 0)
    assert ledger.remaining_calls("target") == 0
    assert ledger.calls == {"target": 2, "judge": 1, "optimizer": 1}


def test_an_uncapped_judge_is_counted_but_never_refused() -> None:
    ledger = BudgetLedger(BudgetCaps(optimizer_calls=1))
    for _ in range(5):
        ledger.reserve("judge", 0)
    assert ledger.remaining_calls("judge") is None
    assert ledger.remaining_calls("optimizer") == 1


def test_cost_is_reserved_then_settled_or_released() -> None:
    ledger = BudgetLedger(BudgetCaps(cost_usd=1.0))
    a = ledger.reserve("target", 0.6)
    with pytest.raises(BudgetExhausted, match="cost budget"):
        ledger.reserve("target", 0.6)  # the worst case of both would pass the cap
    ledger.settle(a, 0.1)
    b = ledger.reserve("target", 0.6)
    ledger.release(b)
    ledger.release(b)  # settling twice changes nothing
    assert ledger.spent_usd == pytest.approx(0.1)
    assert ledger.reserved_usd == pytest.approx(0.0)


def test_uncapped_ledger_counts() -> None:
    ledger = BudgetLedger()
    for _ in range(5):
        ledger.reserve("optimizer", 0.0)
    assert ledger.calls == {"optimizer": 5}
    assert ledger.remaining_calls("optimizer") is None


def test_embedding_calls_are_counted_on_their_own_and_never_capped() -> None:
    ledger = BudgetLedger(BudgetCaps(target_calls=1, optimizer_calls=1, cost_usd=1.0))
    for _ in range(5):
        ledger.settle(ledger.reserve("embedding", 0.1), 0.1)
    assert ledger.calls == {"embedding": 5}
    assert ledger.remaining_calls("optimizer") == 1
    assert ledger.remaining_calls("embedding") is None
    with pytest.raises(BudgetExhausted, match="cost budget"):
        ledger.reserve("embedding", 0.6)  # dollars still limit them
