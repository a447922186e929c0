"""The YAML 1.2 core schema loader: only true/false are booleans; the rest stays text."""

from __future__ import annotations

import math
from typing import Any

import pytest
import yaml

from promptopt.util.nesting import MAX_DEPTH
from promptopt.util.yamlcore import MAX_ALIAS_NODES, compose, load


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


# --- hostile files ---------------------------------------------------------------------------

BILLION_LAUGHS = "".join(
    [
        'a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]\n',
        *(
            f"{name}: &{name} [{', '.join([f'*{prev}'] * 9)}]\n"
            for prev, name in zip("abcdefgh", "bcdefghi", strict=True)
        ),
    ]
)


@pytest.mark.parametrize("read", [load, compose])
def test_an_alias_bomb_is_refused_at_its_line(read: Any) -> None:
    # PyYAML itself shares the repeated values, so loading is quick; whatever walks the result
    # next (validation, duplicate keys, hashing) would visit 10^9 values.
    with pytest.raises(yaml.YAMLError) as info:
        read(BILLION_LAUGHS)
    error = info.value
    assert isinstance(error, yaml.MarkedYAMLError) and error.problem_mark is not None
    assert error.problem_mark.line + 1 == 6  # the first line whose aliases pass the limit
    assert f"aliases repeat more than {MAX_ALIAS_NODES} values" in str(error.problem)


def test_a_few_aliases_still_work() -> None:
    text = "rows: &r [{input: a, target: b}]\ndev: *r\ntest: *r\nm: {<<: {x: 1}}\n"
    assert load(text)["test"] == [{"input": "a", "target": "b"}]


def test_an_alias_inside_its_own_value_is_refused() -> None:
    with pytest.raises(yaml.MarkedYAMLError, match=r"the alias \*a is used inside the value"):
        load("x: &a [1, *a]\n")


@pytest.mark.parametrize(
    "text",
    [
        "x: " + "[" * 50_000 + "]" * 50_000 + "\n",
        "x: " + "{a: " * 50_000 + "1" + "}" * 50_000 + "\n",
        "x:\n" + "".join("  " * i + "- \n" for i in range(MAX_DEPTH + 5)),
    ],
    ids=["flow-lists", "flow-mappings", "block-lists"],
)
def test_deep_nesting_is_refused_at_its_line(text: str) -> None:
    for read in (load, compose):
        with pytest.raises(yaml.MarkedYAMLError) as info:
            read(text)
        assert f"nest more than {MAX_DEPTH} levels deep" in str(info.value.problem)
        assert info.value.problem_mark is not None


def test_nesting_up_to_the_limit_loads() -> None:
    depth = MAX_DEPTH - 1  # the document's mapping is the first level
    value = load("x: " + "[" * depth + "]" * depth + "\n")["x"]
    for _ in range(depth - 1):
        value = value[0]
    assert value == []
