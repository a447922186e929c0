"""A task's prompt: plain text, or an instruction with an output format kept as written.

A plain `prompt:` string is the system message and the text a search edits, as it always was.
A mapping splits it: `instruction` is what strategies edit; `output_format` is appended after
it (`promptopt.util.prompt.render_system_prompt`) and never edited unless the task sets
`search.edit_output_format: true`; `demos` asks for few-shot demonstrations (`k` training
examples sent as user/assistant turns before the input), chosen by a search after the
instruction's (`promptopt.search.demos`).

`PromptLayout` is the search's side of this: the text it starts from, how a candidate becomes
the system message, and the one rule that rejects a candidate with a label metric (it must
still name every label the starting prompt named).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    field_validator,
    model_serializer,
)

from promptopt.errors import UsageError
from promptopt.task.metricspec import MetricSpec
from promptopt.util.prompt import render_system_prompt, split_system_prompt

MAX_DEMOS = 8
FEW_DEMO_SETS = 6
"""Demonstration sets tried when the task leaves `candidates` unset (DSPy MIPROv2's light
preset), unless the `demos` strategy's budget pays for more."""
MANY_DEMO_SETS = 18
"""The most sets an unset `candidates` grows to with the `demos` strategy under a target budget
(MIPROv2's heavy preset)."""


DemoSource = Literal["bootstrap", "labelled"]
"""Where demonstrations come from: training examples the target answered correctly, with its own
answer ("bootstrap", as DSPy bootstraps), or training examples with their expected answer."""


class DemosSpec(BaseModel):
    """`prompt.demos`: few-shot demonstrations searched with the instruction."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    k: int = Field(default=0, ge=0, le=MAX_DEMOS, description="demonstrations per prompt")
    candidates: int | None = Field(
        default=None,
        ge=1,
        description=f"demonstration sets tried (unset: {FEW_DEMO_SETS}; the demos strategy "
        "under a target budget and no cost cap tries as many as the calls left after "
        f"bootstrapping score on every comparison example, up to {MANY_DEMO_SETS})",
    )
    source: DemoSource = Field(
        default="bootstrap",
        description="bootstrap: training examples the target answers correctly, with its "
        "answer (one set all labelled and others mixed with labelled ones, as MIPROv2 varies "
        "them); labelled: training examples with their expected answer",
    )

    @model_serializer(mode="wrap")
    def _dump(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        data: dict[str, Any] = handler(self)
        # Left out at its default, so that the spec (and the task_hash) of a task written
        # before the option existed is what it was.
        if self.source == "bootstrap":
            data.pop("source", None)
        return data


@dataclass(frozen=True)
class Demo:
    """One few-shot demonstration: a training example's id, its input as the target sees it,
    and the answer shown for it (sent as a user turn, then an assistant turn)."""

    id: str
    input: str
    output: str

    def to_json(self) -> dict[str, str]:
        """As best_demos.json and candidates.jsonl hold it."""
        return {"id": self.id, "input": self.input, "output": self.output}


class PromptSpec(BaseModel):
    """A structured `prompt:` mapping."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    instruction: str = Field(description="what strategies edit")
    output_format: str = Field(
        default="", description="appended after the instruction and sent as written"
    )
    demos: DemosSpec | None = Field(
        default=None, description="few-shot demonstrations, searched after the instruction"
    )

    @field_validator("instruction")
    @classmethod
    def _instruction_not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("the instruction is empty")
        return value

    def render(self) -> str:
        """The system message: the instruction, then the output format."""
        return render_system_prompt(self.instruction, self.output_format)


TaskPrompt = str | PromptSpec
"""The `prompt:` of a task file: plain text or a structured mapping."""


def parse_prompt(value: Any) -> Any:
    """Check a raw `prompt:` value; a mapping becomes a `PromptSpec` (its errors keep their
    field names, such as `prompt.instruction`).

    Raises:
        ValueError: the value is blank text or neither text nor a mapping.
    """
    if isinstance(value, str):
        if not value.strip():
            raise ValueError("the initial prompt is empty")
        return value
    if isinstance(value, PromptSpec):
        return value
    if isinstance(value, dict):
        return PromptSpec.model_validate(value)
    raise ValueError("must be the prompt's text, or a mapping with instruction and output_format")


def system_prompt(prompt: TaskPrompt) -> str:
    """The full system message of a task's prompt (a plain prompt is its own text)."""
    return prompt if isinstance(prompt, str) else prompt.render()


def prompt_from_file(prompt: TaskPrompt, text: str, *, edit_output_format: bool) -> TaskPrompt:
    """A task's prompt with its text replaced by a prompt file's (`run --baseline FILE`).

    A prompt file holds a full system prompt, as best_prompt.txt and `--write-if-better` write
    it, so that a run's result can be fed back as the next run's baseline. For a structured
    prompt, a file that ends with the task's output format is split there: the rest is the
    instruction. Any other file is the instruction, and the output format is appended as usual;
    with `edit_output_format` (the format was the search's to rewrite) it is the whole prompt.

    Raises:
        UsageError: the file holds nothing but the output format.
    """
    if isinstance(prompt, str):
        return text
    instruction = split_system_prompt(text, prompt.output_format)
    if instruction is not None:
        return prompt.model_copy(update={"instruction": instruction})
    if prompt.output_format.strip() and text.strip() == prompt.output_format.strip():
        raise UsageError("the prompt file holds only the task's output_format, no instruction")
    if edit_output_format:
        return prompt.model_copy(update={"instruction": text, "output_format": ""})
    return prompt.model_copy(update={"instruction": text})


def _squash(text: str) -> str:
    return " ".join(text.casefold().split())


def mentioned_labels(text: str, labels: Sequence[str]) -> tuple[str, ...]:
    """The labels a text names, as whole words, whatever their case and spacing."""
    flat = _squash(text)
    return tuple(
        label
        for label in labels
        if _squash(label) and re.search(rf"(?<!\w){re.escape(_squash(label))}(?!\w)", flat)
    )


@dataclass(frozen=True)
class PromptLayout:
    """How a search edits and sends a task's prompt.

    Candidates hold the editable text (`initial` to start with): the instruction of a structured
    prompt, or the whole prompt when it is plain or its format is editable. `render` turns one
    into the system message the target sees.
    """

    initial: str
    output_format: str = ""
    """The fixed format appended to every candidate; empty when nothing is fixed."""
    labels: tuple[str, ...] = ()
    """A label metric's labels (empty for other metrics)."""
    structured: bool = False
    """Whether the task's prompt is a mapping (its summary then names the instruction too)."""
    demos: DemosSpec | None = None
    """The task's `prompt.demos`, when it asks for demonstrations (k > 0)."""
    fixed_demos: tuple[Demo, ...] = ()
    """The starting prompt's own demonstrations (`run --demos-file`): sent with every
    candidate that has none of its own, so that instructions are compared as they will be
    used, and a demonstration set must beat them to replace them."""

    def sent_demos(self, own: Sequence[Demo]) -> tuple[Demo, ...]:
        """The demonstrations sent with a candidate: its own, else the starting prompt's."""
        return tuple(own) or self.fixed_demos

    @classmethod
    def build(
        cls, prompt: TaskPrompt, metric: MetricSpec | None, *, edit_output_format: bool = False
    ) -> PromptLayout:
        """The layout of a task's prompt, metric (None: the task has none) and
        `search.edit_output_format`."""
        labels = tuple(metric.labels or ()) if metric and metric.type == "label" else ()
        # Stripped as every candidate's text is, so that `eval` (which renders `initial`) and
        # `run` send the same bytes and share cache entries: a YAML block scalar ends with "\n".
        if isinstance(prompt, str):
            return cls(prompt.strip(), labels=labels)
        demos = prompt.demos if prompt.demos is not None and prompt.demos.k > 0 else None
        if edit_output_format:
            return cls(prompt.render().strip(), labels=labels, structured=True, demos=demos)
        return cls(
            prompt.instruction.strip(),
            prompt.output_format.strip(),
            labels,
            structured=True,
            demos=demos,
        )

    @property
    def initial_prompt(self) -> str:
        """The system message of the starting prompt, as a run scores it."""
        return self.render(self.initial)

    def render(self, text: str) -> str:
        """The system message for a candidate's text."""
        return render_system_prompt(text, self.output_format)

    @property
    def required_labels(self) -> tuple[str, ...]:
        """The labels every candidate must still name: those the starting prompt names."""
        return mentioned_labels(self.render(self.initial), self.labels)

    def missing_labels(self, text: str) -> tuple[str, ...]:
        """The required labels that a candidate's system message no longer names.

        The target can only be expected to answer with a label that its prompt names, so a
        candidate that drops one (from the instruction, or with the format line when the format
        is editable) is rejected. A starting prompt that names no label requires none.
        """
        named = set(mentioned_labels(self.render(text), self.required_labels))
        return tuple(label for label in self.required_labels if label not in named)
