"""The fake batch server's Anthropic prompt-caching usage, driven through the real anthropic SDK."""

from __future__ import annotations

import asyncio
from typing import Any

import anthropic

from promptopt.testing.fake_batch import FakeBatchServer

SYSTEM = "You classify questions by the kind of answer they ask for. " * 5


def ask(server: FakeBatchServer, question: str, *, marked: bool = True) -> Any:
    """One Messages call whose system block carries a cache breakpoint when `marked`."""
    block: dict[str, Any] = {"type": "text", "text": SYSTEM}
    if marked:
        block["cache_control"] = {"type": "ephemeral"}

    async def main() -> Any:
        client = anthropic.AsyncAnthropic(
            base_url=server.anthropic_base_url, api_key="x", max_retries=0
        )
        async with client:
            return await client.messages.create(
                model="claude-haiku-4-5",
                max_tokens=16,
                system=[block],  # type: ignore[list-item]
                messages=[{"role": "user", "content": question}],
            )

    return asyncio.run(main())


def test_a_marked_prefix_is_written_once_then_read() -> None:
    system_tokens = len(SYSTEM.split())
    with FakeBatchServer(prompt_caching=True) as server:
        first = ask(server, "Where are diamonds mined ?").usage
        second = ask(server, "Who wrote Hamlet ?").usage
    assert (first.cache_creation_input_tokens, first.cache_read_input_tokens) == (system_tokens, 0)
    assert (second.cache_creation_input_tokens, second.cache_read_input_tokens) == (
        0,
        system_tokens,
    )
    # input_tokens (one per word) excludes the cached prefix, as Anthropic's usage does.
    assert first.input_tokens == 5
    assert second.input_tokens == 4


def test_without_a_breakpoint_or_without_caching_nothing_is_cached() -> None:
    with FakeBatchServer(prompt_caching=True) as server:
        unmarked = ask(server, "Where are diamonds mined ?", marked=False).usage
    with FakeBatchServer() as server:
        ask(server, "Where are diamonds mined ?")
        off = ask(server, "Where are diamonds mined ?").usage
    for usage in (unmarked, off):
        assert not usage.cache_creation_input_tokens
        assert not usage.cache_read_input_tokens
    assert off.input_tokens == len(SYSTEM.split()) + 5
