"""The task file's schema: pydantic models for every section, checked as the file is read."""

from __future__ import annotations

from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    field_validator,
    model_serializer,
    model_validator,
)

from promptopt.task.metricspec import MetricSpec
from promptopt.task.modelspec import ModelSpec, Price
from promptopt.task.prompt import PromptLayout, PromptSpec, parse_prompt
from promptopt.util.template import template_fields

SPLITS: tuple[str, ...] = ("train", "dev", "test")

DataSource = str | list[dict[str, Any]]


class _Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class SplitSpec(_Strict):
    """How many rows of `data.file` go to each split: a count (int) or a fraction (0 < x <= 1)."""

    train: int | float | None = Field(default=None, description="rows for train")
    dev: int | float | None = Field(default=None, description="rows for dev (required)")
    test: int | float | None = Field(default=None, description="rows for test")

    @field_validator("train", "dev", "test", mode="before")
    @classmethod
    def _size(cls, value: Any) -> Any:
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError("must be a row count (like 50) or a fraction (like 0.25)")
        if value <= 0:
            raise ValueError(f"must be greater than 0 (got {value})")
        if isinstance(value, float) and value > 1:
            raise ValueError(
                f"a fraction must be at most 1 (got {value}); write a whole number for a row count"
            )
        return value

    @model_validator(mode="after")
    def _fractions_fit(self) -> SplitSpec:
        total = sum(v for v in (self.train, self.dev, self.test) if isinstance(v, float))
        if total > 1 + 1e-9:
            raise ValueError(f"the fractions add up to {total:g}, more than 1")
        return self


class DataSpec(_Strict):
    """Where the examples come from and which fields hold input, targets and ids."""

    train: DataSource | None = Field(
        default=None,
        description="examples the search learns from: a .jsonl or .csv path, or a list of rows",
    )
    dev: DataSource | None = Field(
        default=None, description="examples candidates are scored and chosen on (required)"
    )
    test: DataSource | None = Field(
        default=None, description="held-out examples, scored once at the end"
    )
    file: DataSource | None = Field(
        default=None, description="one data source to cut into splits (with split)"
    )
    split: SplitSpec | None = Field(
        default=None, description="how many rows of file go to each split (with file)"
    )
    seed: int = Field(default=0, description="seed of the shuffle before file is split")
    input_field: str = Field(
        default="input",
        min_length=1,
        description="the field every row must have; {{input}} in templates names it",
    )
    target_field: str = Field(
        default="target", min_length=1, description="the field holding the expected answer"
    )
    targets_field: str = Field(
        default="targets",
        min_length=1,
        description="the field holding a list of acceptable answers (instead of target)",
    )
    id_field: str = Field(
        default="id", min_length=1, description="the field holding a row's id (else its position)"
    )

    @field_validator("train", "dev", "test", "file", mode="before")
    @classmethod
    def _source(cls, value: Any) -> Any:
        if value is None:
            return None
        if isinstance(value, str):
            if not value.strip():
                raise ValueError("the path is empty")
            return value
        if isinstance(value, list) and all(isinstance(row, dict) for row in value):
            # Field names are text, as in JSONL and CSV rows, whatever YAML made of them.
            return [{str(key): item for key, item in row.items()} for row in value]
        raise ValueError("must be a path to a .jsonl or .csv file, or a list of mappings")

    @model_validator(mode="after")
    def _one_layout(self) -> DataSpec:
        named = [name for name in SPLITS if getattr(self, name) is not None]
        if self.file is not None:
            if named:
                raise ValueError(
                    f"give either 'file' with 'split', or {'/'.join(SPLITS)}, not both "
                    f"(found file and {', '.join(named)})"
                )
            if self.split is None:
                raise ValueError(
                    "'file' needs 'split', e.g. split: {train: 50, dev: 50, test: 100}"
                )
            if self.split.dev is None:
                raise ValueError("'split' needs a dev size: the search scores prompts on dev")
        else:
            if self.split is not None:
                raise ValueError("'split' only applies with 'file'")
            if self.dev is None:
                raise ValueError(
                    "no dev data: set data.dev (the search scores prompts on it), "
                    "or data.file with split"
                )
        return self

    def has_split(self, name: str) -> bool:
        """Whether the task file provides the named split."""
        if self.file is not None:
            return self.split is not None and getattr(self.split, name) is not None
        return getattr(self, name) is not None


class ModelsSpec(_Strict):
    """The models a run uses; CLI flags may supply or replace them."""

    target: ModelSpec | None = Field(
        default=None, description="the model the prompt is for; it answers the examples"
    )
    optimizer: ModelSpec | None = Field(
        default=None, description="the model that writes and revises candidate prompts"
    )
    judge: ModelSpec | None = Field(
        default=None, description="the judge metric's model (default: the optimizer)"
    )
    embedding: ModelSpec | None = Field(
        default=None,
        description="the model that embeds candidate prompts for strategies that compare them "
        "(apohf); default: the optimizer's endpoint when it has embeddings "
        "(openai:text-embedding-3-small on OpenAI's API, the optimizer's own model on an "
        "OpenAI-compatible server or local:), else none",
    )


class BudgetSpec(_Strict):
    """Hard caps; any subset may be set."""

    target_calls: int | None = Field(
        default=None, gt=0, description="most target-model calls, final evaluation included"
    )
    optimizer_calls: int | None = Field(
        default=None, gt=0, description="most optimizer-model calls"
    )
    cost_usd: float | None = Field(default=None, gt=0, description="most US dollars spent")
    judge_calls: int | None = Field(
        default=None,
        gt=0,
        description="most judge-model calls (a judge metric's, and a preference search's "
        "pairwise judge, final win rate included)",
    )


class SearchSpec(_Strict):
    """Which strategy searches, with what seed, budget and strategy parameters."""

    strategy: str = Field(
        default="opro",
        min_length=1,
        description="the search strategy; `promptopt strategies` lists them",
    )
    seed: int = Field(default=0, description="random seed of the search and its samples")
    budget: BudgetSpec = Field(default_factory=BudgetSpec, description="hard caps")
    params: dict[str, Any] = Field(
        default_factory=dict,
        description="the strategy's parameters, or preset: NAME (promptopt strategies)",
    )
    edit_output_format: bool = Field(
        default=False, description="whether strategies may rewrite prompt.output_format too"
    )
    """Whether strategies may rewrite a structured prompt's output_format too."""

    @model_serializer(mode="wrap")
    def _dump(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        data: dict[str, Any] = handler(self)
        # Left out at its default, so that the spec (and the task_hash) of a task that does not
        # use it is what it was before the option existed.
        if not self.edit_output_format:
            data.pop("edit_output_format", None)
        return data


class ErrorsSpec(_Strict):
    """The error budget and the retries: when failing requests stop a command (exit 1)."""

    max_rate: float = Field(
        default=0.2,
        ge=0,
        le=1,
        description="stop when more than this fraction of a role's requests (or metric calls) "
        "failed, once min_requests have an outcome",
    )
    min_requests: int = Field(
        default=20,
        ge=1,
        description="requests with an outcome before max_rate applies (eval and diff check "
        "the rate at the end)",
    )
    max_consecutive: int = Field(
        default=10,
        ge=1,
        description="stop after this many requests in a row could not reach the endpoint",
    )
    max_retries: int = Field(
        default=6,
        ge=0,
        description="retries of a request that failed for a transient reason (429, 5xx, "
        "timeout, reset)",
    )
    max_backoff_s: float = Field(
        default=30.0,
        gt=0,
        description="the longest wait between two retries (a server's Retry-After is capped "
        "to it too)",
    )


class TaskFile(_Strict):
    """The whole task file: prompt, data, metric, models and search settings."""

    name: str = Field(min_length=1, description="the task's name; run folders start with it")
    description: str = Field(
        default="", description="what the task is; shown to the optimizer as context"
    )
    prompt: str | PromptSpec = Field(
        description="the initial prompt, sent as the system message: text, or a mapping of "
        "instruction, output_format and demos"
    )
    input_template: str = Field(
        default="{{input}}",
        description="the user message, with {{field}} placeholders filled from each row",
    )
    data: DataSpec = Field(description="the examples and their splits")
    metric: MetricSpec | None = Field(
        default=None,
        description="how an answer is scored against its example; leave it out for a task "
        "without expected answers, searched by preferences (apohf with a judge or --human)",
    )
    models: ModelsSpec = Field(
        default_factory=ModelsSpec, description="the models; --target/--optimizer override them"
    )
    search: SearchSpec = Field(
        default_factory=SearchSpec, description="strategy, seed, budget and parameters"
    )
    prices: dict[str, Price] = Field(
        default_factory=dict,
        description="dollars per million tokens by model id (provider:name); they win over "
        "the price library",
    )
    errors: ErrorsSpec = Field(
        default_factory=ErrorsSpec,
        description="when failed requests stop the run, and how often one is retried",
    )

    @model_serializer(mode="wrap")
    def _dump(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        data: dict[str, Any] = handler(self)
        # Left out at its default, so that the task_hash of a task without it is what it was
        # before the section existed (and run folders stay comparable).
        if self.errors == ErrorsSpec():
            data.pop("errors", None)
        return data

    @field_validator("prompt", mode="before")
    @classmethod
    def _prompt(cls, value: Any) -> Any:
        return parse_prompt(value)

    @field_validator("input_template")
    @classmethod
    def _template_has_fields(cls, value: str) -> str:
        names = template_fields(value)
        if "" in names:
            raise ValueError("'{{}}' names no field; write e.g. {{input}}")
        if not names:
            raise ValueError(
                "has no {{field}} placeholder, so every example would send the same message"
            )
        return value

    @field_validator("prices")
    @classmethod
    def _price_ids(cls, value: dict[str, Price]) -> dict[str, Price]:
        for key in value:
            if ":" not in key:
                raise ValueError(f"{key!r} must be a model id written provider:name")
        return value

    @property
    def system_prompt(self) -> str:
        """The task's prompt as the target's system message (instruction, then output format),
        exactly as a run sends its initial prompt."""
        return self.prompt_layout().initial_prompt

    def prompt_layout(self) -> PromptLayout:
        """How a search edits and sends this task's prompt."""
        return PromptLayout.build(
            self.prompt, self.metric, edit_output_format=self.search.edit_output_format
        )
