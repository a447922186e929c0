"""The `metric:` section of a task file."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

MetricType = Literal[
    "label",
    "exact",
    "contains",
    "icontains",
    "regex",
    "f1",
    "rouge_l",
    "numeric",
    "json",
    "python",
    "judge",
]


class MetricSpec(BaseModel):
    """Which metric scores an output against an example, with its options.

    Options apply only to the types named in their descriptions.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    type: MetricType = Field(description="which metric scores an answer")
    labels: list[str] | None = Field(default=None, description="label: the allowed labels")
    normalize: bool = Field(
        default=True,
        description="exact/f1/rouge_l: compare lowercased text without punctuation "
        "and surrounding whitespace",
    )
    pattern: str | None = Field(default=None, description="regex: must match the output")
    tolerance: float = Field(default=0.0, ge=0, description="numeric: absolute tolerance")
    fields: list[str] | None = Field(
        default=None, description="json: keys whose values must equal the target JSON's"
    )
    function: str | None = Field(
        default=None, description="python: 'file.py:function' (relative to the task file)"
    )
    rubric: str | None = Field(default=None, description="judge: what a good answer does")

    @field_validator("labels", mode="before")
    @classmethod
    def _labels_as_text(cls, value: Any) -> Any:
        if not isinstance(value, list):
            return value
        labels: list[Any] = []
        for item in value:
            if isinstance(item, bool):
                raise ValueError(
                    f"{str(item).lower()} is read as a boolean; quote the label: "
                    f'"{str(item).lower()}"'
                )
            # A rating scale (labels: [1, 2, 3]) names labels that outputs hold as text.
            labels.append(str(item) if isinstance(item, int | float) else item)
        return labels

    @model_validator(mode="after")
    def _required_options(self) -> MetricSpec:
        needs = {"label": "labels", "regex": "pattern", "python": "function", "judge": "rubric"}
        option = needs.get(self.type)
        if option is not None and not getattr(self, option):
            raise ValueError(f"metric type {self.type!r} needs the option {option!r}")
        return self
