"""Built-in list prices, overrides and cost arithmetic."""

from __future__ import annotations

import pytest

from promptopt.llm.messages import Usage
from promptopt.llm.pricing import BUILTIN_PRICES, FREE, cost_usd, max_cost_usd, price_for
from promptopt.task.modelspec import ModelSpec, Price


def spec(model: str, **fields: object) -> ModelSpec:
    return ModelSpec.model_validate({"model": model, **fields})


@pytest.mark.parametrize(
    ("model", "family"),
    [
        ("openai:gpt-4o", ("openai", "gpt-4o")),
        ("openai:gpt-4o-mini", ("openai", "gpt-4o-mini")),
        ("openai:gpt-4o-mini-2024-07-18", ("openai", "gpt-4o-mini")),
        ("openai:gpt-4.1-nano-2025-04-14", ("openai", "gpt-4.1-nano")),
        ("openai:o4-mini", ("openai", "o4-mini")),
        ("anthropic:claude-sonnet-4-5-20250929", ("anthropic", "claude-sonnet-4-5")),
        ("anthropic:claude-haiku-4-5-20251001", ("anthropic", "claude-haiku-4-5")),
        ("anthropic:claude-3-5-haiku-latest", ("anthropic", "claude-3-5-haiku")),
        ("anthropic:claude-opus-4-1", ("anthropic", "claude-opus-4-1")),
    ],
)
def test_snapshots_find_their_family(model: str, family: tuple[str, str]) -> None:
    provider, name = family
    assert price_for(spec(model)) == BUILTIN_PRICES[provider][name]


@pytest.mark.parametrize(
    "model",
    ["openai:gpt-5.4-mini", "anthropic:claude-opus-4-6", "openai:gpt-4o-minimal", "openai:unknown"],
)
def test_other_models_have_no_known_price(model: str) -> None:
    assert price_for(spec(model)) is None


@pytest.mark.parametrize(
    "model_spec",
    [
        spec("ollama:llama3"),
        spec("scripted:t.json"),
        spec("local:default"),
        spec("openai:gpt-4o", base_url="http://127.0.0.1:8000/v1"),
    ],
)
def test_own_hardware_is_free(model_spec: ModelSpec) -> None:
    assert price_for(model_spec) == FREE


def test_a_base_url_on_openai_keeps_the_list_price() -> None:
    model = spec("openai:gpt-4o", base_url="https://eu.api.openai.com/v1")
    assert price_for(model) == BUILTIN_PRICES["openai"]["gpt-4o"]


def test_overrides_win_over_the_table_and_spec_price_wins_over_both() -> None:
    cheap = Price(input=0.01, output=0.02)
    dear = Price(input=100, output=200)
    overrides = {"openai:gpt-4o": cheap, "ollama:llama3": dear}
    assert price_for(spec("openai:gpt-4o-2024-08-06"), overrides) == cheap
    assert price_for(spec("ollama:llama3"), overrides) == dear
    assert (
        price_for(spec("openai:gpt-4o-mini"), overrides) == BUILTIN_PRICES["openai"]["gpt-4o-mini"]
    )
    own = {"input": 1.0, "output": 2.0}
    assert price_for(spec("openai:gpt-4o", price=own), overrides) == Price(input=1.0, output=2.0)


def test_cost_arithmetic() -> None:
    price = Price(input=3.0, output=15.0, cache_read=0.3, cache_write=3.75)
    usage = Usage(input=1_000, cache_read=10_000, cache_write=2_000, output=500)
    expected = (1_000 * 3.0 + 10_000 * 0.3 + 2_000 * 3.75 + 500 * 15.0) / 1e6
    assert cost_usd(usage, price) == pytest.approx(expected)


def test_unpriced_cache_tokens_cost_the_input_price() -> None:
    price = Price(input=2.0, output=8.0)
    usage = Usage(input=100, cache_read=300, cache_write=50, output=10)
    assert cost_usd(usage, price) == pytest.approx((450 * 2.0 + 10 * 8.0) / 1e6)


def test_unknown_price_costs_nothing() -> None:
    assert cost_usd(Usage(input=10**6, output=10**6), None) == 0.0
    assert max_cost_usd(10**6, 10**6, None) == 0.0


def test_max_cost_bounds_any_outcome() -> None:
    price = Price(input=3.0, output=15.0, cache_read=0.3, cache_write=3.75)
    assert max_cost_usd(1_000, 100, price) == pytest.approx((1_000 * 3.75 + 100 * 15.0) / 1e6)
    for usage in (Usage(input=1_000, output=100), Usage(cache_write=1_000, output=100)):
        assert cost_usd(usage, price) <= max_cost_usd(1_000, 100, price)
    plain = Price(input=0.15, output=0.6)
    assert max_cost_usd(2_000, 16, plain) == pytest.approx((2_000 * 0.15 + 16 * 0.6) / 1e6)
