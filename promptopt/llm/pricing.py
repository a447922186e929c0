"""Prices of hosted models, and the cost of a request in US dollars.

Prices come from genai-prices, a maintained library of list prices (OpenAI, Anthropic, Google,
Mistral, Groq, Together, Fireworks, OpenRouter and more, by provider and API URL); the built-in
table below is the fallback for the providers' own APIs when the library lacks a model. A price
in the task file (`price:` on a model, `prices:` by model id) wins over both.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from promptopt.llm.messages import Message, Usage
from promptopt.llm.providers.endpoints import gateway_of, is_local_url
from promptopt.task.modelspec import ModelSpec, Price
from promptopt.util.redact import redact

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
# Models that run on the user's own hardware: the embedded ones, scripts, and Ollama's server.
_FREE_PROVIDERS = frozenset({"local", "ollama", "scripted"})
# The provider prefixes whose own API is the default endpoint, as genai-prices names them.
_OWN_API = {"openai": "openai", "anthropic": "anthropic"}


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
    """The price of a model, or None when it is unknown.

    In order: spec.price; an override for "provider:name" (`prices:`, also matching dated
    snapshots); free for models on your own hardware (local, scripted, Ollama, a base_url on
    this machine); genai-prices for the endpoint (the provider's own API, or the gateway a
    base_url points to: OpenRouter, Together, Groq, ...); the built-in table for the provider's
    own API. Any other server is unknown, never free: a hosted gateway bills its models.
    """
    if spec.price is not None:
        return spec.price
    if overrides:
        override = _lookup(spec.model, overrides)
        if override is not None:
            return override
    if spec.provider in _FREE_PROVIDERS:
        return FREE
    own = _OWN_API.get(spec.provider)
    if own is None:
        return None
    base_url = spec.base_url
    if base_url is not None and is_local_url(base_url):
        return FREE
    if base_url is None or gateway_of(base_url) == own:
        return library_price(own, None, spec.name) or builtin_price(spec)
    assert base_url is not None
    return library_price(gateway_of(base_url), base_url, spec.name)


def builtin_price(spec: ModelSpec) -> Price | None:
    """The built-in table's list price of a model on its provider's own API, or None."""
    return _lookup(spec.name, BUILTIN_PRICES.get(spec.provider, {}))


@functools.cache
def library_price(provider_id: str | None, base_url: str | None, name: str) -> Price | None:
    """genai-prices' current list price of `name` at a provider (by id, else by API URL), or
    None when it has none.

    Only the data shipped inside the package is read: promptopt never starts its price
    updater, so pricing makes no network request. Imported here, not at the top: loading its
    data takes about a second, which commands that price nothing should not pay.
    """
    try:
        from genai_prices import Usage as LibraryUsage
        from genai_prices import calc_price
    except ImportError:  # an installation without it still has the built-in table
        return None
    zero = LibraryUsage(input_tokens=0, output_tokens=0)
    try:
        if provider_id is not None:
            found = calc_price(zero, name, provider_id=provider_id)
        elif base_url is not None:
            found = calc_price(zero, name, provider_api_url=base_url)
        else:
            return None
    except LookupError:
        return None
    table = found.model_price
    input_price = _per_million(table.input_mtok)
    if input_price is None:  # not a per-token model (images, audio): not ours to guess
        return None
    return Price(
        input=input_price,
        output=_per_million(table.output_mtok) or 0.0,
        cache_read=_per_million(table.cache_read_mtok),
        cache_write=_per_million(table.cache_write_mtok),
    )


def _per_million(value: object) -> float | None:
    """A genai-prices price per million tokens as a float. A tiered price is taken at its base
    tier: the dearer tiers start at prompts of 200k tokens, far beyond what an optimization
    request sends."""
    if value is None:
        return None
    base = getattr(value, "base", value)
    return float(str(base))


def endpoint_text(spec: ModelSpec) -> str:
    """The model and, when it has one, the server it is reached at (for messages)."""
    # Redacted: messages are printed, and a base_url may hold user:password@ or ?key=.
    return spec.model if spec.base_url is None else f"{spec.model} at {redact(spec.base_url)}"


def unknown_price_text(
    role: str, spec: ModelSpec, cap_usd: float, *, from_flag: bool = False
) -> str:
    """Why a cost cap cannot be kept for an unpriced model, and the task-file lines that fix it.

    A model set by --target/--optimizer replaces the task's whole model, so only a `prices:`
    entry (by model id) can price it; a task file's model takes `price:` too.
    """
    head = (
        f"the price of {endpoint_text(spec)} is unknown, so the cost cap (${cap_usd:g}) cannot "
        "be kept; add its list price in US dollars per million tokens to the task file:\n"
    )
    by_id = f'  prices:\n    "{spec.model}": {{input: ..., output: ...}}'
    if from_flag:
        return head + by_id
    return (
        head
        + f"  models:\n    {role}:\n      model: {spec.model}\n"
        + "      price: {input: ..., output: ...}\n"
        + "or by model id:\n"
        + by_id
    )


def unknown_price_message(task_path: Path, role: str, spec: ModelSpec, cap_usd: float) -> str:
    """`unknown_price_text` for a task file's model, prefixed with where it is set."""
    return f"{task_path}: models.{role}: " + unknown_price_text(role, spec, cap_usd)


def unknown_cost_note(spec: ModelSpec) -> str:
    """The note a run without a cost cap shows once for an unpriced model."""
    return (
        f"the price of {endpoint_text(spec)} is unknown, so its cost is reported as unknown; "
        "add price: {input: ..., output: ...} (US dollars per million tokens) to the model "
        "in the task file to track it"
    )


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


def likely_tokens(messages: Sequence[Message]) -> int:
    """A realistic count of prompt tokens, for what a run sets aside rather than what one request
    reserves: three bytes a token for ASCII text (English prose averages about four with the
    GPT and Claude tokenizers), two tokens for any other character (most CJK characters take one
    or two), and a few per message for the chat format. Unlike `estimate_tokens` it is not a
    bound: adversarial text (single letters and spaces) can use more."""
    total = 0
    for m in messages:
        text = m["content"]
        ascii_bytes = len(text) if text.isascii() else sum(1 for ch in text if ch < "\x80")
        total += -(-ascii_bytes // 3) + 2 * (len(text) - ascii_bytes) + 4
    return total


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


def library_batch_price(
    spec: ModelSpec, overrides: Mapping[str, Price] | None = None
) -> Price | None:
    """genai-prices' batch price of a model on its provider's own API; None when the task file
    prices the model itself, for another endpoint, or when the library lists no batch price
    (then half the standard price applies, the providers' published batch discount)."""
    if spec.price is not None or (overrides and _lookup(spec.model, overrides) is not None):
        return None
    own = _OWN_API.get(spec.provider)
    if own is None or (spec.base_url is not None and gateway_of(spec.base_url) != own):
        return None
    return _library_batch_price(own, spec.name)


@functools.cache
def _library_batch_price(provider_id: str, name: str) -> Price | None:
    try:
        from genai_prices import Usage as LibraryUsage
        from genai_prices import calc_price
    except ImportError:
        return None
    zero = LibraryUsage(input_tokens=0, output_tokens=0)
    try:
        standard = calc_price(zero, name, provider_id=provider_id).model_price
        batch = calc_price(
            zero, name, provider_id=provider_id, price_context={"processing": "batch"}
        ).model_price
    except (LookupError, TypeError):  # TypeError: a release without price contexts
        return None
    input_price = _per_million(batch.input_mtok)
    if batch == standard or input_price is None:
        return None
    return Price(
        input=input_price,
        output=_per_million(batch.output_mtok) or 0.0,
        cache_read=_per_million(batch.cache_read_mtok),
        cache_write=_per_million(batch.cache_write_mtok),
    )
