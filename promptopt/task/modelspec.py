"""How a task file names a model: `provider:name`, or a mapping with endpoint and options."""

from __future__ import annotations

from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    GetJsonSchemaHandler,
    SerializerFunctionWrapHandler,
    model_serializer,
    model_validator,
)
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema


class Price(BaseModel):
    """US dollars per million tokens."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    input: float = Field(ge=0, description="dollars per million input tokens")
    output: float = Field(ge=0, description="dollars per million output tokens")
    cache_read: float | None = Field(
        default=None, ge=0, description="dollars per million cached input tokens read"
    )
    cache_write: float | None = Field(
        default=None, ge=0, description="dollars per million input tokens written to a cache"
    )


LATER_FIELDS: dict[str, Any] = {
    "batch": False,
    "url_credentials": False,
    "n_sampling": None,
    "rpm": None,
    "tpm": None,
}
"""Model fields added after the first release, with the default at which they are left out of
the task's canonical form."""


class ModelSpec(BaseModel):
    """A model endpoint plus its sampling parameters.

    `model` is "provider:name" (openai:gpt-4o-mini, anthropic:claude-sonnet-4-5, ollama:llama3,
    scripted:file.py:function, local:default). A plain string in the task file is shorthand for
    `{model: <string>}`.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    model: str = Field(
        min_length=1,
        description="provider:name: openai:gpt-4o-mini, anthropic:claude-sonnet-4-5, "
        "ollama:llama3, local:target, scripted:file.py:function",
    )
    base_url: str | None = Field(
        default=None, description="an OpenAI-compatible server's URL (vLLM, llama.cpp, a gateway)"
    )
    api_key_env: str | None = Field(
        default=None, description="the environment variable holding the key for base_url"
    )
    url_credentials: bool = Field(
        default=False,
        description="send the user:password@ of base_url as HTTP Basic auth (by default it is "
        "removed before any request)",
    )
    temperature: float | None = Field(default=None, ge=0, le=2, description="sampling temperature")
    max_tokens: int | None = Field(default=None, gt=0, description="longest answer, in tokens")
    params: dict[str, Any] = Field(
        default_factory=dict, description="other request parameters, sent as given"
    )
    price: Price | None = Field(
        default=None, description="the model's price; wins over every other source"
    )
    timeout_s: float = Field(default=60.0, gt=0, description="seconds before a request times out")
    batch: bool = Field(
        default=False,
        description="send the requests known in advance (scoring) through the provider's batch "
        "service, at batch prices (openai and anthropic)",
    )
    n_sampling: bool | None = Field(
        default=None,
        description="several samples of one prompt in one request (the API's n), paying its "
        "input once: on by default for OpenAI's own API, off for other servers (turn it on for "
        "servers that honour n, such as vLLM and SGLang); Anthropic has no n",
    )
    rpm: float | None = Field(
        default=None,
        gt=0,
        description="the account's requests per minute for this model; promptopt keeps under it",
    )
    tpm: float | None = Field(
        default=None,
        gt=0,
        description="the account's tokens (input plus output) per minute for this model",
    )

    @classmethod
    def __get_pydantic_json_schema__(
        cls, core_schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        # The task file may name a model by its id alone, as _from_string accepts.
        mapping = handler(core_schema)
        shorthand = {"type": "string", "pattern": ".:.", "description": "provider:name"}
        return {"anyOf": [shorthand, mapping]}

    @model_serializer(mode="wrap")
    def _without_later_defaults(self, handler: SerializerFunctionWrapHandler) -> Any:
        # Fields added after the first release are left out at their defaults, so that the
        # task hash of every task written before them stays the same (it names run folders
        # and decides what a diff compares).
        data = handler(self)
        if isinstance(data, dict):
            for name, default in LATER_FIELDS.items():
                if data.get(name, default) == default:
                    data.pop(name, None)
        return data

    @model_validator(mode="before")
    @classmethod
    def _from_string(cls, data: Any) -> Any:
        if isinstance(data, str):
            return {"model": data}
        return data

    @model_validator(mode="after")
    def _provider_prefix(self) -> ModelSpec:
        if ":" not in self.model:
            raise ValueError(
                f"model {self.model!r} must be written provider:name, "
                "for example openai:gpt-4o-mini or anthropic:claude-sonnet-4-5"
            )
        return self

    @property
    def provider(self) -> str:
        """The provider prefix, e.g. "openai"."""
        return self.model.split(":", 1)[0]

    @property
    def name(self) -> str:
        """The model name after the provider prefix."""
        return self.model.split(":", 1)[1]

    def sampling_params(self) -> dict[str, Any]:
        """The parameters sent with each request (and hashed into its cache key)."""
        out: dict[str, Any] = dict(self.params)
        if self.temperature is not None:
            out["temperature"] = self.temperature
        if self.max_tokens is not None:
            out["max_tokens"] = self.max_tokens
        return out
