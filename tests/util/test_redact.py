"""One redaction rule for everything that leaves the process: errors, run folders, reports."""

from __future__ import annotations

import json

from promptopt.util.redact import redact


def test_redact_hides_the_secret_and_key_shaped_strings() -> None:
    text = redact("got token abcd1234wxyz and sk-proj-****wxyz here", ["abcd1234wxyz"])
    assert "abcd1234wxyz" not in text
    assert "sk-proj" not in text
    assert redact("no secrets here", [None, ""]) == "no secrets here"


def test_key_shapes_are_masked() -> None:
    assert redact("use sk-proj-abcdefghijklmnop please") == "use [redacted] please"
    assert "sk-ant-" not in redact("key sk-ant-abcdefghijklmnop")
    assert "gsk_" not in redact("groq gsk_abcdefghijklmnop")
    assert "abc.def" not in redact("Authorization: Bearer abc.def")


def test_credentials_in_urls_are_masked() -> None:
    text = redact('{"base_url": "https://user:tok_ABCDEF123456@host/v1?api-key=gsk_abcdefghijkl"}')
    assert "tok_ABCDEF" not in text and "gsk_abcdef" not in text
    assert "https://[redacted]@host/v1?api-key=[redacted]" in text


def test_a_key_after_an_escaped_newline_in_json_is_masked() -> None:
    # Run files are redacted after json.dumps, where a newline before a key becomes "\\n".
    text = redact(json.dumps({"note": "key:\nsk-abcdefgh1234", "groq": "x\tgsk_abcdefgh1234"}))
    assert "abcdefgh1234" not in text


def test_short_words_with_a_key_prefix_are_kept() -> None:
    assert redact("a multitask model") == "a multitask model"
