"""One redaction rule for everything that leaves the process: errors, run folders, reports."""

from __future__ import annotations

import json
from urllib.parse import urlsplit

import pytest

from promptopt.util.redact import redact, url_credentials


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
    # The URL still parses: userinfo is removed rather than masked (config.json is read back
    # by --resume and diff RUN_DIR).
    assert "https://host/v1?api-key=[redacted]" in text
    assert redact("http://u:p@127.0.0.1:8080/v1") == "http://127.0.0.1:8080/v1"
    # Before, the mask made the host "[redacted]@127.0.0.1", which no URL parser accepts.
    assert urlsplit(redact("http://u:p@127.0.0.1:8080/v1")).port == 8080


def test_basic_credentials_echoed_by_a_server_are_masked() -> None:
    # base64("user:pass"), as a server echoing the Authorization header would show it.
    text = redact('error: bad header "Authorization: Basic dXNlcjpwYXNz" received')
    assert "dXNlcjpwYXNz" not in text and "Basic [redacted]" in text
    assert (
        redact("Basic arithmetic: add them. Basic info") == "Basic arithmetic: add them. Basic info"
    )


def test_a_key_after_an_escaped_newline_in_json_is_masked() -> None:
    # Run files are redacted after json.dumps, where a newline before a key becomes "\\n".
    text = redact(json.dumps({"note": "key:\nsk-abcdefgh1234", "groq": "x\tgsk_abcdefgh1234"}))
    assert "abcdefgh1234" not in text


def test_short_words_with_a_key_prefix_are_kept() -> None:
    assert redact("a multitask model") == "a multitask model"


def test_a_urls_credentials_are_masked_in_every_form_elsewhere_in_the_text() -> None:
    # base64("alice:s3cret/pw"), bare, as a server echoing only the token would show it.
    text = redact(
        "base_url http://alice:s3cret%2Fpw@host/v1; echoed YWxpY2U6czNjcmV0L3B3 and "
        "alice:s3cret/pw; the test split passed"
    )
    assert text == (
        "base_url http://host/v1; echoed [redacted] and [redacted]; the test split passed"
    )


def test_url_credentials_forms() -> None:
    assert url_credentials("http://host/v1") == []
    assert url_credentials("http://[::1") == []
    forms = url_credentials("https://u:p%40ss@host")
    assert set(forms) == {"u:p%40ss", "u:p@ss", "dTpwQHNz"}


@pytest.mark.parametrize(
    "text", ["a" * 200_000, "x://" + "a" * 200_000, "http://a" * 30_000, "a:b@" * 50_000]
)
def test_long_runs_of_url_characters_are_redacted_in_one_pass(text: str) -> None:
    # A scheme-anchored URL pattern rescanned every run of letters: minutes for a long model
    # output. Nothing here is a credential, so the text comes back as it was.
    assert redact(text) == text
