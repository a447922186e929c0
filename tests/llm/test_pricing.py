"""Prices from genai-prices, the built-in table, gateways, local servers, overrides, and cost
arithmetic."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from promptopt.llm.messages import Usage
from promptopt.llm.pricing import (
    BUILTIN_PRICES,
    FREE,
    builtin_price,
    cost_usd,
    library_price,
    max_cost_usd,
    price_for,
    unknown_price_message,
    unknown_price_text,
)
from promptopt.llm.providers.endpoints import gateway_of
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
def test_the_builtin_table_finds_snapshots_of_its_family(
    model: str, family: tuple[str, str]
) -> None:
    provider, name = family
    assert builtin_price(spec(model)) == BUILTIN_PRICES[provider][name]


@pytest.mark.parametrize(
    "model",
    ["openai:gpt-5.4-mini", "anthropic:claude-opus-4-6", "openai:gpt-4o-minimal", "openai:unknown"],
)
def test_the_builtin_table_does_not_price_newer_siblings(model: str) -> None:
    assert builtin_price(spec(model)) is None


@pytest.mark.parametrize("model", ["openai:gpt-4o-minimal", "openai:unknown", "anthropic:nope"])
def test_models_neither_the_library_nor_the_table_knows_have_no_price(model: str) -> None:
    assert price_for(spec(model)) is None


def test_the_price_library_prices_what_the_table_lacks() -> None:
    # Newer than the built-in table: only the maintained library knows them.
    for model in ("openai:gpt-5.4-mini", "anthropic:claude-opus-4-6"):
        price = price_for(spec(model))
        assert price is not None and price.input > 0 and price.output > 0
    assert price_for(spec("openai:gpt-4o-mini")) == Price(input=0.15, output=0.6, cache_read=0.075)
    assert price_for(spec("anthropic:claude-haiku-4-5-20251001")) == Price(
        input=1.0, output=5.0, cache_read=0.1, cache_write=1.25
    )


def test_without_the_library_the_builtin_table_still_prices(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    library_price.cache_clear()
    monkeypatch.setitem(sys.modules, "genai_prices", None)  # import fails
    try:
        assert price_for(spec("openai:gpt-4o")) == BUILTIN_PRICES["openai"]["gpt-4o"]
        assert price_for(spec("openai:gpt-5.4-mini")) is None
    finally:
        library_price.cache_clear()


GATEWAYS = [
    ("openai:openai/gpt-4o-mini", "https://openrouter.ai/api/v1", "openrouter"),
    ("openai:meta-llama/llama-3.1-8b-instruct", "https://openrouter.ai/api/v1", "openrouter"),
    ("openai:llama-3.1-8b-instant", "https://api.groq.com/openai/v1", "groq"),
    ("openai:meta-llama/Llama-3.3-70B-Instruct-Turbo", "https://api.together.xyz/v1", "together"),
    ("openai:meta-llama/Llama-3.3-70B-Instruct-Turbo", "https://api.together.ai/v1", "together"),
    (
        "openai:accounts/fireworks/models/llama-v3p1-8b-instruct",
        "https://api.fireworks.ai/inference/v1",
        "fireworks",
    ),
    ("openai:mistral-small-latest", "https://api.mistral.ai/v1", "mistral"),
    (
        "openai:gemini-2.0-flash",
        "https://generativelanguage.googleapis.com/v1beta/openai/",
        "google",
    ),
    ("openai:claude-haiku-4-5", "https://api.anthropic.com/v1/", "anthropic"),
]


@pytest.mark.parametrize(("model", "base_url", "gateway"), GATEWAYS)
def test_a_model_behind_a_gateway_gets_the_gateways_price(
    model: str, base_url: str, gateway: str
) -> None:
    assert gateway_of(base_url) == gateway
    price = price_for(spec(model, base_url=base_url))
    assert price is not None and price != FREE
    assert price.input > 0 and price.output > 0
    assert price == library_price(gateway, base_url, model.split(":", 1)[1])


def test_openrouter_prices_the_model_it_routes_to() -> None:
    routed = price_for(spec("openai:openai/gpt-4o-mini", base_url="https://openrouter.ai/api/v1"))
    assert routed is not None
    assert (routed.input, routed.output) == (0.15, 0.6)


@pytest.mark.parametrize(
    "base_url",
    [
        "https://api.deepinfra.com/v1/openai",  # a gateway genai-prices has no prices for
        "https://llm-proxy.example.com/v1",
        "http://10.0.0.5:8000/v1",  # another machine: maybe yours, maybe a paid proxy
    ],
)
def test_other_servers_are_unknown_never_free(base_url: str) -> None:
    assert price_for(spec("openai:meta-llama/Llama-3.3-70B-Instruct", base_url=base_url)) is None


@pytest.mark.parametrize(
    "model_spec",
    [
        spec("ollama:llama3"),
        spec("scripted:t.json"),
        spec("local:default"),
        spec("openai:gpt-4o", base_url="http://127.0.0.1:8000/v1"),
        spec("openai:gpt-4o", base_url="http://localhost:8080/v1"),
        spec("openai:qwen", base_url="http://[::1]:8080/v1"),
        spec("openai:qwen", base_url="http://0.0.0.0:8000/v1"),
        spec("openai:qwen", base_url="http://llama.localhost:8000/v1"),
        spec("anthropic:claude-haiku-4-5", base_url="http://127.0.0.1:9000"),
    ],
)
def test_own_hardware_is_free(model_spec: ModelSpec) -> None:
    assert price_for(model_spec) == FREE


def test_a_base_url_on_openai_keeps_the_list_price() -> None:
    model = spec("openai:gpt-4o", base_url="https://eu.api.openai.com/v1")
    assert price_for(model) == price_for(spec("openai:gpt-4o"))
    assert price_for(model) is not None


def test_overrides_win_over_the_library_and_spec_price_wins_over_both() -> None:
    cheap = Price(input=0.01, output=0.02)
    dear = Price(input=100, output=200)
    gateway = "https://openrouter.ai/api/v1"
    overrides = {"openai:gpt-4o": cheap, "ollama:llama3": dear, "openai:openai/gpt-4o": dear}
    assert price_for(spec("openai:gpt-4o-2024-08-06"), overrides) == cheap
    assert price_for(spec("ollama:llama3"), overrides) == dear
    assert price_for(spec("openai:openai/gpt-4o", base_url=gateway), overrides) == dear
    assert price_for(spec("openai:gpt-4o-mini"), overrides) == price_for(spec("openai:gpt-4o-mini"))
    own = {"input": 1.0, "output": 2.0}
    assert price_for(spec("openai:gpt-4o", price=own), overrides) == Price(input=1.0, output=2.0)
    assert price_for(spec("openai:openai/gpt-4o", base_url=gateway, price=own)) == Price(
        input=1.0, output=2.0
    )


def test_pricing_reads_only_the_bundled_data() -> None:
    from genai_prices import data_snapshot

    price_for(spec("openai:openai/gpt-4o", base_url="https://openrouter.ai/api/v1"))
    # No updater ever installed a downloaded snapshot: prices come from the package itself.
    assert data_snapshot._custom_snapshot is None
    assert not data_snapshot.get_snapshot().from_auto_update


def test_the_refusal_names_the_model_and_the_lines_to_add() -> None:
    model = spec("openai:meta-llama/x", base_url="https://api.deepinfra.com/v1/openai")
    message = unknown_price_message(Path("task.yaml"), "target", model, 2.0)
    assert message.startswith("task.yaml: models.target: the price of openai:meta-llama/x at ")
    assert "cost cap ($2)" in message
    assert "\n  models:\n    target:\n      model: openai:meta-llama/x\n" in message
    assert "      price: {input: ..., output: ...}\n" in message
    assert '"openai:meta-llama/x": {input: ..., output: ...}' in message


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


def test_messages_name_the_endpoint_without_its_credentials() -> None:
    spec = ModelSpec(model="openai:m", base_url="http://alice:s3cretPw@10.0.0.5:8000/v1?key=k123")
    text = unknown_price_text("target", spec, 1.0)
    assert "openai:m at http://10.0.0.5:8000/v1?key=[redacted]" in text
    assert "s3cretPw" not in text and "k123" not in text
