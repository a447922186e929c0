"""A Messages API response body, for tests of the Anthropic provider and the client."""

from __future__ import annotations

from typing import Any


def message_body(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": "claude-haiku-4-5-20251001",
        "content": [{"type": "text", "text": "Ye"}, {"type": "text", "text": "s"}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {
            "input_tokens": 40,
            "output_tokens": 2,
            "cache_read_input_tokens": 1500,
            "cache_creation_input_tokens": 300,
        },
    }
    body.update(overrides)
    return body
