"""The shared `{{field}}` template engine used by task input templates and meta-prompts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from promptopt.errors import PromptoptError
from promptopt.search.meta_prompts import parse_meta_prompt
from promptopt.task.loader import load_task
from promptopt.util.template import (
    TemplateFieldError,
    as_text,
    render_template,
    template_fields,
    template_literals,
)

# --- the grammar -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("template", "fields"),
    [
        ("{{a}}", ("a",)),
        ("{{ a }} and {{\ta\n}}", ("a",)),
        ("{{b}} {{ a }} {{b}}", ("b", "a")),
        # Task fields are named after arbitrary JSONL keys and CSV headers.
        ("{{user name}} {{q-1}} {{ 1st }} {{größe}}", ("user name", "q-1", "1st", "größe")),
        ("{{\n  multi\n}}", ("multi",)),
        ("{{}}", ("",)),
        # A placeholder ends at the first `}}`.
        ("{{{a}}}", ("{a",)),
        ("no placeholder { here } {{ unclosed", ()),
        ("", ()),
    ],
)
def test_template_fields(template: str, fields: tuple[str, ...]) -> None:
    assert template_fields(template) == fields


def test_template_literals_are_the_text_between_placeholders() -> None:
    assert template_literals("Hi {{ name }}, see {{x}}.") == ("Hi ", ", see ", ".")
    assert template_literals("{{a}}{{b}}") == ("", "", "")
    assert template_literals("plain") == ("plain",)


def test_render_strips_spaces_inside_the_braces() -> None:
    assert render_template("<{{ a }}|{{a}}|{{\na\n}}>", {"a": "x"}) == "<x|x|x>"


def test_render_accepts_any_field_name() -> None:
    values = {"user name": "Ada", "q-1": "why?"}
    assert render_template("{{user name}}: {{ q-1 }}", values) == "Ada: why?"


# --- single pass -------------------------------------------------------------------------------


def test_values_are_never_expanded_again() -> None:
    values = {"a": "{{b}}", "b": "B"}
    assert render_template("{{a}} {{b}}", values) == "{{b}} B"
    # Even a value naming itself stays literal: there is no second pass to loop in.
    assert render_template("{{a}}", {"a": "{{a}}"}) == "{{a}}"


# --- values ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "text"),
    [
        ("text as it is", "text as it is"),
        ("", ""),
        (3, "3"),
        (2.5, "2.5"),
        (True, "true"),
        ([1, "b"], '[1, "b"]'),
        ({"k": [1]}, '{"k": [1]}'),
        ({"ü": "é"}, '{"ü": "é"}'),  # not escaped to \\u sequences
    ],
)
def test_non_strings_render_as_json(value: Any, text: str) -> None:
    assert as_text(value) == text
    assert render_template("[{{v}}]", {"v": value}) == f"[{text}]"


# --- missing fields ----------------------------------------------------------------------------


@pytest.mark.parametrize("values", [{"input": "x"}, {"input": "x", "context": None}])
def test_missing_or_null_field_raises(values: dict[str, Any]) -> None:
    with pytest.raises(TemplateFieldError) as info:
        render_template("{{input}} {{ context }}", values)
    assert info.value.field == "context"
    assert isinstance(info.value, PromptoptError)
    listed = ", ".join(sorted(values))
    assert str(info.value) == (
        f"the template uses {{{{context}}}} but there is no field 'context' ({listed})"
    )


def test_missing_field_with_no_values_at_all() -> None:
    with pytest.raises(TemplateFieldError, match=r"no field 'a' \(none\)$"):
        render_template("{{a}}", {})


# --- one syntax for both users -----------------------------------------------------------------


def test_meta_prompt_and_input_template_render_alike(tmp_path: Path) -> None:
    template = "Q: {{input}} / {{ hint }} /{{\nhint}}"
    values = {"input": "what is {{hint}}?", "hint": "H"}
    expected = "Q: what is {{hint}}? / H /H"

    meta = parse_meta_prompt("x/y", f"---\nplaceholders: [input, hint]\n---\n{template}", "x/y.md")
    assert meta.placeholders == frozenset(template_fields(template))
    assert meta.render(**values) == ({"role": "user", "content": expected},)

    task_file = tmp_path / "task.yaml"
    spec = {
        "name": "t",
        "prompt": "Answer.",
        "input_template": template,
        "data": {"dev": [{**values, "target": "A"}]},
        "metric": {"type": "exact"},
    }
    task_file.write_text(yaml.safe_dump(spec), encoding="utf-8")
    task = load_task(task_file)
    assert task.spec.input_template == template
    example = task.split("dev")[0]
    assert task.render_input(example) == expected
    assert render_template(template, values) == expected
