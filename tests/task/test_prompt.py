"""Structured prompts: the `prompt:` mapping, its problems located in the file, the search's
layout of instruction and output format, and the rule that keeps every label named."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from promptopt.errors import UsageError
from promptopt.task.loader import load_task, validate_task
from promptopt.task.metricspec import MetricSpec
from promptopt.task.prompt import (
    DemosSpec,
    PromptLayout,
    PromptSpec,
    mentioned_labels,
    prompt_from_file,
    system_prompt,
)
from promptopt.task.schema import TaskFile
from promptopt.util.hashing import content_hash
from tests.support import REPO

LABELS = MetricSpec(type="label", labels=["positive", "negative"])
EXACT = MetricSpec(type="exact")

TASK = """\
name: demo
description: Say whether a review is positive or negative.
{prompt}
data:
  dev: [{{input: a fine film, target: positive}}, {{input: a dull film, target: negative}}]
metric: {{type: label, labels: [positive, negative]}}
{extra}"""


def write(tmp_path: Path, prompt: str, extra: str = "") -> Path:
    path = tmp_path / "task.yaml"
    path.write_text(TASK.format(prompt=prompt, extra=extra), encoding="utf-8")
    return path


# --- the task file ----------------------------------------------------------------------------


def test_a_structured_prompt_loads_and_renders_instruction_then_format(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "prompt:\n"
        "  instruction: |\n"
        "    Read the review.\n"
        "    Decide how the writer felt.\n"
        "  output_format: 'Answer with one word: positive or negative.'\n",
    )
    spec = load_task(path).spec
    assert isinstance(spec.prompt, PromptSpec)
    assert spec.prompt.instruction == "Read the review.\nDecide how the writer felt.\n"
    assert spec.system_prompt == (
        "Read the review.\nDecide how the writer felt.\n\n"
        "Answer with one word: positive or negative."
    )
    assert spec.prompt.demos is None
    # The run's config.json records the mapping, and reading it back gives the same spec.
    dumped = spec.model_dump(mode="json")
    assert dumped["prompt"]["output_format"].startswith("Answer with one word")
    assert TaskFile.model_validate(dumped) == spec


def test_a_plain_prompt_keeps_its_meaning_and_its_hash(tmp_path: Path) -> None:
    task = load_task(write(tmp_path, "prompt: |\n  Classify the review.\n"))
    assert task.spec.prompt == "Classify the review.\n"
    # Sent without the block scalar's newline, by eval as by run (whose candidates are stripped).
    assert task.spec.system_prompt == "Classify the review."
    dumped = task.spec.model_dump(mode="json")
    # The new option is left out at its default, so the spec and its hash are as before.
    assert "edit_output_format" not in dumped["search"]
    assert dumped["prompt"] == "Classify the review.\n"
    assert task.task_hash == content_hash(dumped)
    layout = task.spec.prompt_layout()
    assert layout == PromptLayout("Classify the review.", labels=("positive", "negative"))
    assert layout.render(layout.initial) == task.spec.system_prompt


def test_edit_output_format_is_recorded_when_set(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "prompt: {instruction: Classify., output_format: Label only.}",
        "search: {edit_output_format: true}\n",
    )
    spec = load_task(path).spec
    assert spec.search.edit_output_format
    assert spec.model_dump(mode="json")["search"]["edit_output_format"] is True


@pytest.mark.parametrize(
    ("prompt", "field", "line", "message"),
    [
        ("prompt: {output_format: Label only.}", "prompt.instruction", 3, "required field"),
        ("prompt:\n  instruction: '  '\n", "prompt.instruction", 4, "the instruction is empty"),
        (
            "prompt:\n  instruction: Classify.\n  ouput_format: Label only.\n",
            "prompt.ouput_format",
            5,
            "unknown field 'ouput_format' (did you mean 'output_format'?); valid fields here: "
            "instruction, output_format, demos",
        ),
        ("prompt: [Classify.]", "prompt", 3, "must be the prompt's text, or a mapping"),
        ("prompt: ''", "prompt", 3, "the initial prompt is empty"),
        (
            "prompt:\n  instruction: Classify.\n  demos: {k: 4, source: dev}\n",
            "prompt.demos.source",
            5,
            "'bootstrap' or 'labelled'",
        ),
        (
            "prompt:\n  instruction: Classify.\n  demos: {k: 9}\n",
            "prompt.demos.k",
            5,
            "less than or equal to 8",
        ),
        (
            "prompt:\n  instruction: Classify.\n  demos: {shots: 2}\n",
            "prompt.demos.shots",
            5,
            "valid fields here: k, candidates, source",
        ),
    ],
)
def test_problems_name_file_field_and_line(
    tmp_path: Path, prompt: str, field: str, line: int, message: str
) -> None:
    path = write(tmp_path, prompt)
    (problem,) = validate_task(path)
    assert (problem.file, problem.field, problem.line) == (str(path), field, line)
    assert message in problem.message


def test_demos_with_k_0_ask_for_none(tmp_path: Path) -> None:
    path = write(tmp_path, "prompt:\n  instruction: Classify.\n  demos: {k: 0}\n")
    task = load_task(path)
    prompt = task.spec.prompt
    assert isinstance(prompt, PromptSpec) and prompt.demos is not None
    assert prompt.demos.k == 0 and prompt.render() == "Classify."
    assert task.spec.prompt_layout().demos is None


def test_demos_up_to_8_are_accepted(tmp_path: Path) -> None:
    path = write(tmp_path, "prompt:\n  instruction: Classify.\n  demos: {k: 8, candidates: 3}\n")
    layout = load_task(path).spec.prompt_layout()
    assert layout.demos is not None
    assert (layout.demos.k, layout.demos.candidates, layout.demos.source) == (8, 3, "bootstrap")


# --- the search's layout ---------------------------------------------------------------------


def test_strategies_edit_the_instruction_and_the_format_is_appended() -> None:
    prompt = PromptSpec(instruction="Classify.", output_format="  Label only.\n")
    layout = PromptLayout.build(prompt, LABELS)
    assert layout.initial == "Classify."
    assert layout.output_format == "Label only."
    assert layout.structured and layout.labels == ("positive", "negative")
    assert layout.render("Anything at all.") == "Anything at all.\n\nLabel only."
    assert layout.render(layout.initial) == system_prompt(prompt)


def test_with_edit_output_format_the_whole_prompt_is_editable() -> None:
    prompt = PromptSpec(instruction="Classify.", output_format="Label only.")
    layout = PromptLayout.build(prompt, EXACT, edit_output_format=True)
    assert layout.initial == "Classify.\n\nLabel only."
    assert layout.output_format == "" and layout.labels == ()
    assert layout.render("Rewritten.") == "Rewritten."


def test_labels_are_named_as_whole_words_whatever_their_case() -> None:
    labels = ["Human", "Location", "not entailment"]
    assert mentioned_labels("Answer human, LOCATION or Not\nEntailment.", labels) == tuple(labels)
    assert mentioned_labels("Humanity and dislocation; entailment.", labels) == ()
    assert mentioned_labels("Say 'Human' or **Location**.", labels) == ("Human", "Location")


def test_a_candidate_must_keep_every_label_the_initial_prompt_names() -> None:
    # The labels are in the instruction, and the format does not list them.
    prompt = PromptSpec(instruction="Say positive or negative.", output_format="Label only.")
    layout = PromptLayout.build(prompt, LABELS)
    assert layout.required_labels == ("positive", "negative")
    assert layout.missing_labels("Is the review positive or negative?") == ()
    assert layout.missing_labels("Is the review positive?") == ("negative",)
    assert layout.missing_labels("Judge the review.") == ("positive", "negative")


def test_a_protected_format_that_lists_the_labels_keeps_them_for_every_candidate() -> None:
    prompt = PromptSpec(instruction="Classify.", output_format="Answer positive or negative.")
    layout = PromptLayout.build(prompt, LABELS)
    assert layout.missing_labels("Write an essay.") == ()
    # Once the format is the search's to edit, dropping its line drops the labels.
    editable = PromptLayout.build(prompt, LABELS, edit_output_format=True)
    assert editable.missing_labels("Classify.\n\nAnswer positive or negative.") == ()
    assert editable.missing_labels("Classify.") == ("positive", "negative")


def test_no_label_rule_without_named_labels_or_a_label_metric() -> None:
    # A starting prompt that names no label requires none (a candidate may add them) ...
    assert PromptLayout.build("Classify the review.", LABELS).missing_labels("Judge.") == ()
    # ... and other metrics have no labels to keep.
    layout = PromptLayout.build("Say positive or negative.", EXACT)
    assert layout.missing_labels("Judge.") == ()


# --- prompt files (run --baseline) -------------------------------------------------------------


def test_a_prompt_file_replaces_a_plain_prompt_as_is() -> None:
    assert prompt_from_file("Old.", "New.\n\nMore.", edit_output_format=False) == "New.\n\nMore."


def test_a_prompt_file_round_trips_into_a_structured_prompt() -> None:
    prompt = PromptSpec(instruction="Old.", output_format="Label only.")
    written = PromptSpec(instruction="New\ninstruction.", output_format="Label only.").render()
    # best_prompt.txt or --write-if-better: the format at the end is split off again.
    assert prompt_from_file(prompt, written, edit_output_format=False) == PromptSpec(
        instruction="New\ninstruction.", output_format="Label only."
    )
    # A file with an instruction only gets the task's format appended.
    assert prompt_from_file(prompt, "Mine.", edit_output_format=False) == PromptSpec(
        instruction="Mine.", output_format="Label only."
    )
    # With an editable format, a file that does not end with it is the whole prompt.
    whole = prompt_from_file(prompt, "Mine.\n\nOne word.", edit_output_format=True)
    assert isinstance(whole, PromptSpec) and whole.render() == "Mine.\n\nOne word."
    with pytest.raises(UsageError, match="only the task's output_format"):
        prompt_from_file(prompt, "Label only.\n", edit_output_format=False)


def test_the_readme_example_loads(tmp_path: Path) -> None:
    section = (REPO / "README.md").read_text(encoding="utf-8").split("### Structured prompts")[1]
    match = re.search(r"```yaml\n(.*?)```", section, re.DOTALL)
    assert match, "the README's structured prompt section has no yaml block"
    spec = load_task(write(tmp_path, match.group(1))).spec
    assert isinstance(spec.prompt, PromptSpec)
    assert spec.system_prompt == (
        "Classify the question by the type of its answer.\n\n"
        "Answer with one of: Description, Entity, Expression, Human, Location, Number. Label only."
    )


def test_a_default_demo_source_is_left_out_of_the_task_hash(tmp_path: Path) -> None:
    path = write(tmp_path, "prompt:\n  instruction: Classify.\n  demos: {k: 0}\n")
    dumped = load_task(path).spec.model_dump(mode="json")["prompt"]["demos"]
    assert dumped == {"k": 0, "candidates": None}
    path = write(tmp_path, "prompt:\n  instruction: Classify.\n  demos: {k: 2, source: labelled}\n")
    dumped = load_task(path).spec.model_dump(mode="json")["prompt"]["demos"]
    assert dumped == {"k": 2, "candidates": None, "source": "labelled"}


def test_an_unset_demo_set_count_stays_unset_through_config_json() -> None:
    # A resumed run validates the prompt its config.json recorded: an unset count must come
    # back unset (the budget decides it), and a run that recorded 6 must get 6 again.
    unset = DemosSpec(k=4)
    assert DemosSpec.model_validate(unset.model_dump(mode="json")).candidates is None
    assert DemosSpec.model_validate({"k": 4, "candidates": 6}).candidates == 6
