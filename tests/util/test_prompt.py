"""The one system-prompt layout: instruction, blank line, output format."""

from __future__ import annotations

from promptopt.util.prompt import render_system_prompt, split_system_prompt


def test_a_plain_prompt_is_sent_byte_for_byte() -> None:
    for text in ("Classify.", "  Classify.\n", "Line one.\nLine two.\n\n"):
        assert render_system_prompt(text) == text
        assert render_system_prompt(text, "  \n") == text


def test_the_output_format_follows_the_instruction_after_a_blank_line() -> None:
    assert render_system_prompt("Classify.", "Label only.") == "Classify.\n\nLabel only."
    # YAML block scalars end with a newline: it does not turn into extra blank lines.
    assert render_system_prompt("Classify.\n", "Label only.\n") == "Classify.\n\nLabel only."


def test_split_is_the_inverse_for_a_known_format() -> None:
    text = render_system_prompt("Classify the\nreview.", "Label only.")
    assert split_system_prompt(text, "Label only.") == "Classify the\nreview."
    assert split_system_prompt(text + "\n", "Label only.\n") == "Classify the\nreview."
    assert split_system_prompt("Classify.", "Label only.") is None
    assert split_system_prompt("Label only.", "Label only.") is None  # no instruction left
    assert split_system_prompt("Classify.", "") is None
