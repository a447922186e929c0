"""The YAML 1.2 core schema loader: only true/false are booleans; the rest stays text."""

from __future__ import annotations

import math

import pytest

from promptopt.util.yamlcore import compose, load


@pytest.mark.parametrize(
    "word", ["yes", "no", "on", "off", "y", "n", "Yes", "NO", "On", "OFF", "1_000", "1:30"]
)
def test_yaml_1_1_booleans_and_numbers_stay_text(word: str) -> None:
    assert load(f"a: {word}\nb: [{word}]\n") == {"a": word, "b": [word]}


def test_dates_stay_text() -> None:
    assert load("when: 2026-01-31\n") == {"when": "2026-01-31"}


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("true", True),
        ("False", False),
        ("TRUE", True),
        ("~", None),
        ("null", None),
        ("", None),
        ("12", 12),
        ("-3", -3),
        ("012", 12),
        ("0o17", 15),
        ("0x1f", 31),
        ("1.0", 1.0),
        (".5", 0.5),
        ("1e3", 1000.0),
        ("-.inf", -math.inf),
    ],
)
def test_core_schema_scalars(text: str, value: object) -> None:
    loaded = load(f"a: {text}\n")["a"]
    assert loaded == value and type(loaded) is type(value)


def test_nan_quoted_text_and_merge_keys() -> None:
    data = load('n: .nan\nq: "yes"\nbase: &b {x: 1}\nm: {<<: *b, y: 2}\n')
    assert math.isnan(data["n"])
    assert data["q"] == "yes" and data["m"] == {"x": 1, "y": 2}


def test_compose_gives_node_lines() -> None:
    root = compose("a: 1\nb: yes\n")
    assert root is not None and root.end_mark.line == 2
