"""Why an answer ended (finish_reason) travels through the client: fresh answers, the response
cache, identical requests in flight, and the run's journal; entries written before it was
recorded still load, as "unknown"."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from promptopt.llm.budget import BudgetCaps, BudgetLedger
from promptopt.llm.cache import ResponseCache
from promptopt.llm.client import EndpointGate, ModelClient
from promptopt.llm.journal import ResponseJournal
from promptopt.llm.messages import Message, normalize_finish_reason
from promptopt.llm.providers.scripted import ScriptedProvider
from promptopt.task.modelspec import ModelSpec

CUT = {"text": "Classify the review as", "finish_reason": "length"}


def msgs(text: str) -> list[Message]:
    return [{"role": "user", "content": text}]


def client(tmp_path: Path, script: Mapping[str, Any], cache: str = "cache") -> ModelClient:
    return ModelClient(
        "optimizer",
        ModelSpec(model="scripted:cut", max_tokens=4),
        ScriptedProvider(script, name="cut"),
        store=ResponseCache(tmp_path / cache),
        ledger=BudgetLedger(BudgetCaps()),
        gate=EndpointGate(2),
        price=None,
    )


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("stop", "stop"),
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("length", "length"),
        ("max_tokens", "length"),
        ("MAX_TOKENS", "length"),
        ("content_filter", "content_filter"),
        ("", None),
        (None, None),
        (3, None),
    ],
)
def test_finish_reasons_are_normalized(raw: object, expected: str | None) -> None:
    assert normalize_finish_reason(raw) == expected


async def test_a_cut_answer_says_so_fresh_from_the_cache_and_in_flight(tmp_path: Path) -> None:
    model = client(tmp_path, {"q": CUT, "ok": "Classify the review."})
    fresh, shared = await asyncio.gather(model.complete(msgs("q")), model.complete(msgs("q")))
    assert fresh.finish_reason == shared.finish_reason == "length"
    assert fresh.truncated and shared.cached
    stored = model.store.get(model.key_for(msgs("q")))
    assert stored is not None and stored["finish_reason"] == "length"
    hit = await model.complete(msgs("q"))
    assert hit.cached and hit.truncated
    done = await model.complete(msgs("ok"))
    assert done.finish_reason == "stop" and not done.truncated
    model.store.close()


async def test_an_old_cache_entry_without_finish_reason_loads_as_unknown(tmp_path: Path) -> None:
    model = client(tmp_path, {})
    old = {"text": "Classify.", "usage": {"input": 3, "output": 1}, "model": "m", "latency_s": 0.1}
    model.store.set(model.key_for(msgs("q")), old)
    result = await model.complete(msgs("q"))
    assert result.cached and result.text == "Classify."
    assert result.finish_reason is None and not result.truncated
    model.store.close()


async def test_the_journal_keeps_finish_reason_and_replays_old_entries(tmp_path: Path) -> None:
    path = tmp_path / "responses.jsonl"
    model = client(tmp_path, {"q": CUT})
    model.journal = ResponseJournal(path)
    await model.complete(msgs("q"))
    model.journal.close()
    [line] = path.read_text().splitlines()
    assert json.loads(line)["value"]["finish_reason"] == "length"

    # An entry from before finish_reason was recorded: replayed, with the reason unknown.
    old = json.loads(line)
    del old["value"]["finish_reason"]
    path.write_text(line + "\n" + json.dumps(old) + "\n")
    replay = client(tmp_path, {}, cache="empty")
    replay.journal = ResponseJournal(path)
    first, second = await replay.complete(msgs("q")), await replay.complete(msgs("q"))
    replay.journal.close()
    assert first.finish_reason == "length"
    assert second.finish_reason is None
    model.store.close()
    replay.store.close()


async def test_a_request_waits_for_those_in_flight_instead_of_being_refused(
    tmp_path: Path,
) -> None:
    from promptopt.errors import BudgetExhausted
    from promptopt.llm.pricing import request_max_cost_usd
    from promptopt.task.modelspec import Price

    price = Price(input=1_000_000.0, output=0.0)  # a dollar a token: costs are token counts
    spec = ModelSpec(model="scripted:cheap", max_tokens=4)
    worst = request_max_cost_usd(msgs("question 1"), spec.sampling_params(), price)
    # Room for one worst case at a time, though each answer costs a fraction of it.
    ledger = BudgetLedger(BudgetCaps(cost_usd=1.5 * worst))
    model = ModelClient(
        "target",
        spec,
        ScriptedProvider(lambda request: "ok", name="cheap"),
        store=ResponseCache(tmp_path / "cache"),
        ledger=ledger,
        gate=EndpointGate(4),
        price=price,
    )
    answers = await asyncio.gather(*(model.complete(msgs(f"question {i}")) for i in range(3)))
    assert [a.text for a in answers] == ["ok"] * 3
    assert ledger.spent_usd <= 1.5 * worst and ledger.reserved_usd == 0
    # What cannot fit even with nothing in flight is still refused, at once.
    ledger.caps = BudgetCaps(cost_usd=ledger.spent_usd + worst / 2)
    with pytest.raises(BudgetExhausted):
        await model.complete(msgs("question 9"))
