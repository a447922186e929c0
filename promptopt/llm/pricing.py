"""List prices of hosted models, and the cost of a request in US dollars."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from promptopt.llm.messages import Message, Usage
from promptopt.llm.providers.endpoints import is_openai_host
from promptopt.task.modelspec import ModelSpec, Price

# USD per million tokens, from the providers' published list prices (standard tier, 5-minute
# cache writes). A key also matches its dated snapshots (gpt-4o-mini-2024-07-18,
# claude-sonnet-4-5-20250929) and its -latest alias, but not a newer sibling: claude-opus-4-6 is
# not priced as claude-opus-4, and gpt-5.4 not as gpt-5. Unlisted models have no known price.
BUILTIN_PRICES: Mapping[str, Mapping[str, Price]] = {
    "openai": {
        "gpt-4o": Price(input=2.50, output=10.00, cache_read=1.25),
        "gpt-4o-mini": Price(input=0.15, output=0.60, cache_read=0.075),
        "gpt-4.1": Price(input=2.00, output=8.00, cache_read=0.50),
        "gpt-4.1-mini": Price(input=0.40, output=1.60, cache_read=0.10),
        "gpt-4.1-nano": Price(input=0.10, output=0.40, cache_read=0.025),
        "o3": Price(input=2.00, output=8.00, cache_read=0.50),
        "o4-mini": Price(input=1.10, output=4.40, cache_read=0.275),
        "gpt-5": Price(input=1.25, output=10.00, cache_read=0.125),
        "gpt-5-mini": Price(input=0.25, output=2.00, cache_read=0.025),
        "gpt-5-nano": Price(input=0.05, output=0.40, cache_read=0.005),
    },
    "anthropic": {
        "claude-opus-4-5": Price(input=5.00, output=25.00, cache_read=0.50, cache_write=6.25),
        "claude-opus-4-1": Price(input=15.00, output=75.00, cache_read=1.50, cache_write=18.75),
        "claude-opus-4": Price(input=15.00, output=75.00, cache_read=1.50, cache_write=18.75),
        "claude-opus-4-0": Price(input=15.00, output=75.00, cache_read=1.50, cache_write=18.75),
        "claude-sonnet-4-5": Price(input=3.00, output=15.00, cache_read=0.30, cache_write=3.75),
        "claude-sonnet-4": Price(input=3.00, output=15.00, cache_read=0.30, cache_write=3.75),
        "claude-sonnet-4-0": Price(input=3.00, output=15.00, cache_read=0.30, cache_write=3.75),
        "claude-haiku-4-5": Price(input=1.00, output=5.00, cache_read=0.10, cache_write=1.25),
        "claude-3-5-haiku": Price(input=0.80, output=4.00, cache_read=0.08, cache_write=1.00),
    },
}

# Billed output assumed for a request that sets no output limit: deliberately pessimistic.
UNBOUNDED_OUTPUT_TOKENS = 4096

FREE = Price(input=0.0, output=0.0, cache_read=0.0, cache_write=0.0)
_FREE_PROVIDERS = frozenset({"local", "ollama", "scripted"})


_SNAPSHOT_SUFFIX = re.compile(r"(-\d{4}-?\d{2}-?\d{2}|-latest)?")


def _lookup(name: str, table: Mapping[str, Price]) -> Price | None:
    """The entry whose key is `name`, or the longest key that `name` is a snapshot of."""
    matches = [
        key
        for key in table
        if name.startswith(key) and _SNAPSHOT_SUFFIX.fullmatch(name[len(key) :])
    ]
    return table[max(matches, key=len)] if matches else None


def price_for(spec: ModelSpec, overrides: Mapping[str, Price] | None = None) -> Price | None:
    """The price of a model: spec.price, else an override for "provider:name", else the
    built-in list price; models on your own hardware cost 0. Overrides and list prices also
    match dated snapshots of their name.

    None means the price is unknown: count it as free, but tell the user costs are not tracked.
    """
    if spec.price is not None:
        return spec.price
    if overrides:
        override = _lookup(spec.model, overrides)
        if override is not None:
            return override
    if spec.provider in _FREE_PROVIDERS:
        return FREE
    if spec.provider == "openai" and spec.base_url and not is_openai_host(spec.base_url):
        return FREE
    return _lookup(spec.name, BUILTIN_PRICES.get(spec.provider, {}))


def cost_usd(usage: Usage, price: Price | None) -> float:
    """Dollars for `usage`; cache reads and writes cost the input price unless priced."""
    if price is None:
        return 0.0
    cache_read = price.input if price.cache_read is None else price.cache_read
    cache_write = price.input if price.cache_write is None else price.cache_write
    total = (
        usage.input * price.input
        + usage.cache_read * cache_read
        + usage.cache_write * cache_write
        + usage.output * price.output
    )
    return total / 1_000_000


def max_cost_usd(input_tokens: int, max_output_tokens: int, price: Price | None) -> float:
    """The most a request can cost, reserved against the budget before it is sent.

    Every input token is charged at the dearer of the input and cache-write prices, since the
    provider decides what gets cached.
    """
    if price is None:
        return 0.0
    per_input = max(price.input, price.cache_write or 0.0)
    return (input_tokens * per_input + max_output_tokens * price.output) / 1_000_000


def estimate_tokens(messages: Sequence[Message]) -> int:
    """An upper bound on prompt tokens: byte-level BPE tokenizers never use more tokens than
    the text has UTF-8 bytes (plus a few per message for the chat format)."""
    return sum(len(m["content"].encode("utf-8")) + 8 for m in messages)


def max_output_tokens(params: Mapping[str, Any]) -> int:
    """The most output tokens a request with these sampling parameters can be billed for: its
    max_tokens (or max_completion_tokens) for each of its `n` samples."""
    limit = params.get("max_tokens") or params.get("max_completion_tokens")
    return int(limit or UNBOUNDED_OUTPUT_TOKENS) * int(params.get("n") or 1)


def request_max_cost_usd(
    messages: Sequence[Message], params: Mapping[str, Any], price: Price | None
) -> float:
    """The worst case of one request: what the client reserves before sending it, and what
    `run --dry-run` and the final evaluation's reserve count per call."""
    return max_cost_usd(estimate_tokens(messages), max_output_tokens(params), price)
