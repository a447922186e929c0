"""Loading, checking, overriding and rendering meta-prompts."""

from __future__ import annotations

from pathlib import Path

import pytest

from promptopt.errors import PromptoptError, UsageError
from promptopt.search.extract import extract_instruction
from promptopt.search.meta_prompts import (
    CONTEXT_PLACEHOLDERS,
    MetaPrompt,
    load_meta_prompts,
    parse_meta_prompt,
)
from promptopt.search.strategies import promptbreeder

# What the strategy fills, then the task context the search context fills.
TASK = {"task_description", "labels", "output_format"}
EXPECTED = {
    "ape/forward": {"demos"} | TASK | {"history"},
    "ape/insert": {"demos"} | TASK | {"history"},
    "ape/resample": {"instruction"} | TASK | {"examples", "history"},
    "protegi/gradient": {"prompt", "errors", "num_reasons"} | TASK | {"examples"},
    "protegi/edit": {"prompt", "errors", "reason", "num_prompts"} | TASK | {"examples", "history"},
    "protegi/paraphrase": {"prompt"} | TASK | {"examples"},
}
CONTEXT = {
    "task_description": "DESCRIPTION",
    "labels": "LABELS",
    "output_format": "FORMAT",
    "examples": "EXAMPLES",
    "history": "HISTORY",
}


def write(root: Path, name: str, text: str) -> Path:
    path = root / f"{name}.md"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults_load_with_their_placeholders() -> None:
    prompts = load_meta_prompts()
    assert set(EXPECTED) <= set(prompts.names())
    assert "README" not in prompts
    for name, placeholders in EXPECTED.items():
        meta = prompts.get(name)
        assert meta.name == name
        assert meta.placeholders == placeholders
        assert meta.system  # every default has a system message
        assert meta.description
        assert "<START>" in meta.user and "<END>" in meta.user


def test_unknown_name_lists_valid_names() -> None:
    with pytest.raises(PromptoptError, match=r"ape/forward.*protegi/edit"):
        load_meta_prompts().get("ape/backward")


def test_every_default_is_grounded_in_the_task() -> None:
    # Every meta-prompt shows the task, its labels and output format, and training examples
    # (APE's as its demonstrations); those that propose new instructions show the history.
    for name, meta in load_meta_prompts().prompts.items():
        if name in promptbreeder.LISTS:
            continue  # lists of items the strategy draws from, not messages
        assert meta.placeholders >= TASK, name
        assert {"examples", "demos"} & meta.placeholders, name
    for name in ("ape/forward", "ape/insert", "ape/resample", "protegi/edit"):
        assert "history" in load_meta_prompts().get(name).placeholders
    assert set(CONTEXT) == CONTEXT_PLACEHOLDERS


def test_render_fills_values_once_in_system_then_user() -> None:
    meta = load_meta_prompts().get("protegi/edit")
    messages = meta.render(
        prompt="Say {{errors}} literally.",
        errors="ERR",
        reason="too vague",
        num_prompts=2,
        **CONTEXT,
    )
    assert [m["role"] for m in messages] == ["system", "user"]
    user = messages[1]["content"]
    assert "Say {{errors}} literally." in user  # values are not expanded again
    assert "ERR" in user and "too vague" in user and "Write 2 revised" in user
    assert "{{" not in user.replace("{{errors}}", "")
    assert all(value in user for value in CONTEXT.values())


def test_context_values_reach_only_templates_that_declare_them() -> None:
    meta = parse_meta_prompt(
        "x/y", "---\nplaceholders: [prompt, labels]\n---\n{{prompt}} / {{labels}}", "x/y.md"
    )
    messages = meta.render_in_context(CONTEXT, prompt="P")
    assert messages == ({"role": "user", "content": "P / LABELS"},)
    # A strategy's own value for a context placeholder wins, and is dropped where undeclared.
    assert meta.render_in_context(CONTEXT, prompt="P", labels="L", history="H") == (
        {"role": "user", "content": "P / L"},
    )
    # The strategy's own placeholders are still checked exactly.
    with pytest.raises(PromptoptError, match=r"no value for placeholder.*prompt"):
        meta.render_in_context(CONTEXT)
    with pytest.raises(PromptoptError, match=r"unknown placeholder.*style"):
        meta.render_in_context(CONTEXT, prompt="P", style="S")


def test_render_names_missing_and_extra_values() -> None:
    meta = load_meta_prompts().get("protegi/gradient")
    with pytest.raises(PromptoptError, match=r"no value for placeholder.*num_reasons"):
        meta.render(prompt="p", errors="e", **CONTEXT)
    with pytest.raises(PromptoptError, match=r"unknown placeholder.*temperature"):
        meta.render(prompt="p", errors="e", num_reasons=3, temperature=1, **CONTEXT)


def test_parse_sections_and_front_matter() -> None:
    meta = parse_meta_prompt(
        "x/y",
        "---\ndescription: d\nplaceholders: [a]\n---\n## System\nsys\n\n## user\n"
        "## Examples\nuse {{ a }}\n",
        "x/y.md",
    )
    assert meta == MetaPrompt(
        "x/y", "sys", "## Examples\nuse {{ a }}", frozenset({"a"}), "d", "x/y.md"
    )
    assert meta.render(a="1") == (
        {"role": "system", "content": "sys"},
        {"role": "user", "content": "## Examples\nuse 1"},
    )
    plain = parse_meta_prompt("p", "Just a user message.\n", "p.md")
    assert plain.system is None
    assert plain.render() == ({"role": "user", "content": "Just a user message."},)


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("---\nplaceholders: [a]\n---\n## user\nno placeholder", r"bad\.md.*a declared but never"),
        ("## user\nuses {{b}}", r"bad\.md.*\{\{b\}\} used but not declared"),
        ("---\nplaceholders: [a, b]\n---\n{{a}}", r"bad\.md.*\bb declared but never used"),
        ("---\nplaceholder: [a]\n---\n{{a}}", r"unknown front matter key.*placeholder"),
        ("---\nplaceholders: [a]\n{{a}}", "never closed"),
        ("---\nplaceholders: a\n---\n{{a}}", "must be a list"),
        ("intro\n## user\nhi", "text before the first"),
        ("## system\nsys\n", "missing or empty '## user'"),
        ("## user\nhi\n## user\nagain", "more than one '## user'"),
        ("## system\n\n## user\nhi", "'## system' section is empty"),
        ("", "no text"),
    ],
)
def test_parse_errors_name_file_and_problem(text: str, match: str) -> None:
    with pytest.raises(PromptoptError, match=match):
        parse_meta_prompt("bad", text, "bad.md")


def test_override_dir_takes_precedence(tmp_path: Path) -> None:
    write(
        tmp_path,
        "ape/resample",
        "---\nplaceholders: [instruction]\n---\n## user\nReword: {{instruction}}",
    )
    write(tmp_path, "README", "notes that are not a meta-prompt {{nothing}}")
    prompts = load_meta_prompts(tmp_path)
    custom = prompts.get("ape/resample")
    assert custom.system is None
    assert custom.source == str(tmp_path / "ape" / "resample.md")
    assert custom.render(instruction="Do X.") == ({"role": "user", "content": "Reword: Do X."},)
    # Files the user did not copy keep the packaged wording.
    assert prompts.get("ape/forward") == load_meta_prompts().get("ape/forward")


def test_an_override_may_leave_out_or_add_context_placeholders(tmp_path: Path) -> None:
    # Written before the context placeholders existed: it still loads and renders.
    write(
        tmp_path,
        "protegi/edit",
        "---\nplaceholders: [prompt, errors, reason, num_prompts]\n---\n"
        "Fix {{prompt}} for {{reason}}: {{errors}} ({{num_prompts}})",
    )
    # And one that asks for context its default does not use.
    write(
        tmp_path,
        "protegi/paraphrase",
        "---\nplaceholders: [prompt, history]\n---\nReword {{prompt}}; best so far: {{history}}",
    )
    prompts = load_meta_prompts(tmp_path)
    edit = prompts.get("protegi/edit")
    assert edit.render_in_context(CONTEXT, prompt="P", reason="R", errors="E", num_prompts=1) == (
        {"role": "user", "content": "Fix P for R: E (1)"},
    )
    paraphrase = prompts.get("protegi/paraphrase")
    assert paraphrase.render_in_context(CONTEXT, prompt="P") == (
        {"role": "user", "content": "Reword P; best so far: HISTORY"},
    )


def test_override_with_unknown_name_is_a_usage_error(tmp_path: Path) -> None:
    write(tmp_path, "ape/foward", "## user\nhello")
    with pytest.raises(UsageError, match=r"foward\.md.*'ape/foward'.*valid names: ape/forward"):
        load_meta_prompts(tmp_path)


def test_override_must_keep_the_placeholders(tmp_path: Path) -> None:
    write(tmp_path, "protegi/paraphrase", "---\nplaceholders: []\n---\nRewrite the prompt.")
    with pytest.raises(UsageError, match=r"paraphrase\.md.*prompt of protegi/paraphrase"):
        load_meta_prompts(tmp_path)
    write(
        tmp_path,
        "protegi/paraphrase",
        "---\nplaceholders: [prompt, style]\n---\n{{prompt}} in {{style}}",
    )
    with pytest.raises(UsageError, match=r"style are unknown to protegi/paraphrase"):
        load_meta_prompts(tmp_path)


def test_override_parse_errors_are_usage_errors(tmp_path: Path) -> None:
    write(tmp_path, "ape/forward", "## user\n{{demos}}")
    with pytest.raises(UsageError, match=r"forward\.md.*\{\{demos\}\} used but not declared"):
        load_meta_prompts(tmp_path)


def test_missing_override_dir(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="not a directory"):
        load_meta_prompts(tmp_path / "nope")


def test_literal_lines_reject_an_echoed_meta_prompt() -> None:
    meta = load_meta_prompts().get("ape/forward")
    lines = meta.literal_lines()
    assert not any("{{" in line for line in lines)
    echo = next(line for line in lines if line.startswith("A language model"))
    assert extract_instruction(echo, echo_of=lines).reason == "degenerate"
    assert extract_instruction("Add the two numbers.", echo_of=lines).accepted


def test_braces_that_are_not_identifiers_stay_literal() -> None:
    # A user's meta-prompt may show JSON; only {{identifier}} is a placeholder in meta-prompts.
    meta = parse_meta_prompt(
        "custom/json",
        '---\nplaceholders: [prompt]\n---\nImprove {{ prompt }}. Answer as {{"label": "x"}} '
        "or {{ two words }}.",
        "custom.md",
    )
    assert meta.placeholders == {"prompt"}
    (message,) = meta.render(prompt="P")
    assert message["content"] == 'Improve P. Answer as {{"label": "x"}} or {{ two words }}.'
