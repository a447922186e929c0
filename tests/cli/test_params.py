"""--param KEY=VALUE parsing."""

from __future__ import annotations

from promptopt.cli.run import parse_params


def test_values_parse_as_json_or_stay_text() -> None:
    assert parse_params(["a=3", "b=[1, 2]", "c=hello"]) == {"a": 3, "b": [1, 2], "c": "hello"}


def test_absurdly_nested_json_stays_text() -> None:
    nested = "[" * 50_000 + "]" * 50_000
    assert parse_params([f"a={nested}"]) == {"a": nested}
