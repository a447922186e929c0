"""OpenAI chat completions, and OpenAI-compatible servers (vLLM, Ollama, llama.cpp, LM Studio)."""

from __future__ import annotations

import inspect
import os
import time
from collections.abc import Awaitable, Mapping, Sequence
from typing import Any, TypeVar

import httpx2
import openai
from openai.resources.chat.completions import AsyncCompletions
from openai.types.chat import ChatCompletion

from promptopt.errors import FatalProviderError, ProviderError, TransientProviderError
from promptopt.llm.messages import ChatRequest, Completion, Usage, normalize_finish_reason
from promptopt.llm.providers.base import Embeddings
from promptopt.llm.providers.endpoints import is_openai_host, resolve_base_url
from promptopt.llm.providers.http_errors import classify_status, safe_endpoint
from promptopt.task.modelspec import ModelSpec
from promptopt.util.redact import redact

# Local servers ignore the key but the SDK insists on one; a dummy keeps real keys at home.
DUMMY_KEY = "not-needed"
# Server-specific parameters (vLLM's top_k, repetition_penalty, ...) are not SDK arguments;
# they travel in extra_body so the server decides what it accepts.
_NOT_PARAMS = frozenset({"self", "stream", "timeout", "extra_body", "extra_headers", "extra_query"})
_SDK_PARAMS = frozenset(inspect.signature(AsyncCompletions.create).parameters) - _NOT_PARAMS
_T = TypeVar("_T")


def resolve_api_key(
    spec: ModelSpec, base_url: str, env: Mapping[str, str]
) -> tuple[str, str | None]:
    """The key to send and the name of the variable it came from (None for the dummy key).

    Raises FatalProviderError when a needed key is missing, naming the variable to set.
    """
    if spec.api_key_env:
        value = env.get(spec.api_key_env)
        if not value:
            raise FatalProviderError(
                f"model {spec.model}: set the environment variable {spec.api_key_env} "
                "(named by api_key_env), or remove api_key_env if the server needs no key"
            )
        return value, spec.api_key_env
    if not is_openai_host(base_url):
        return DUMMY_KEY, None
    value = env.get("OPENAI_API_KEY")
    if not value:
        raise FatalProviderError(
            f"model {spec.model}: set OPENAI_API_KEY, or set models.<role>.base_url "
            "to an OpenAI-compatible server"
        )
    return value, "OPENAI_API_KEY"


def _server_message(error: openai.APIStatusError) -> str:
    """The server's own explanation, rather than the SDK's dump of the whole body."""
    # The SDK unwraps {"error": ...}; Ollama and others put a bare string there.
    body = error.body
    if isinstance(body, dict):
        body = body.get("error", body)
    message = body.get("message") if isinstance(body, dict) else body
    if isinstance(message, str) and message:
        return message
    return error.message


def _is_quota_error(error: openai.APIStatusError) -> bool:
    return error.status_code == 429 and "insufficient_quota" in (error.code, error.type)


class OpenAIProvider:
    """A model behind the OpenAI API: chat completions, and embeddings (POST /embeddings) for
    an embedding model; one attempt per call."""

    def __init__(
        self,
        spec: ModelSpec,
        *,
        http_client: httpx2.AsyncClient | None = None,
        env: Mapping[str, str] = os.environ,
    ) -> None:
        self._spec = spec
        self._base_url = resolve_base_url(spec)
        self._official = is_openai_host(self._base_url)
        self._key, self._key_env = resolve_api_key(spec, self._base_url, env)
        self._owns_http = http_client is None
        self._label = f"{spec.model} at {safe_endpoint(self._base_url)}"
        self._client = openai.AsyncOpenAI(
            api_key=self._key,
            base_url=self._base_url,
            max_retries=0,  # the scorer owns retries and counts every attempt
            timeout=spec.timeout_s,
            http_client=http_client,
        )

    @property
    def endpoint(self) -> str:
        """The server's base URL, without credentials."""
        return safe_endpoint(self._base_url)

    @property
    def model_id(self) -> str:
        """The "provider:name" the user asked for."""
        return self._spec.model

    def _body(self, request: ChatRequest) -> dict[str, Any]:
        params: dict[str, Any] = {**self._spec.sampling_params(), **request.params}
        # OpenAI's reasoning models reject max_tokens; its replacement works for every model
        # there, while compatible servers only reliably know the old name.
        if self._official and "max_tokens" in params:
            params["max_completion_tokens"] = params.pop("max_tokens")
        body: dict[str, Any] = {
            "model": self._spec.name,
            "messages": [{"role": m["role"], "content": m["content"]} for m in request.messages],
        }
        extra: dict[str, Any] = {}
        for name, value in params.items():
            (body if name in _SDK_PARAMS else extra)[name] = value
        if extra:
            body["extra_body"] = extra
        return body

    def _wire_body(self, request: ChatRequest) -> dict[str, Any]:
        body = self._body(request)
        return {**body, **body.pop("extra_body", {})}

    async def complete(self, request: ChatRequest) -> Completion:
        """Send one chat request; raise Transient/FatalProviderError on failure."""
        started = time.perf_counter()
        # The SDK's own low-level post: same request building, auth and response parsing
        # as chat.completions.create, without re-walking the already plain JSON body
        # through its TypedDict transform, which costs about a third of the client-side
        # CPU per request at high concurrency (bench/throughput.py).
        response = await self._guarded(
            self._client.post(
                "/chat/completions", body=self._wire_body(request), cast_to=ChatCompletion
            )
        )
        latency = time.perf_counter() - started
        return self._completion(response, latency)

    async def embed(self, texts: Sequence[str]) -> Embeddings:
        """Embed `texts` with one POST /embeddings; raise Transient/FatalProviderError on
        failure. The vectors come back in the order of `texts` whatever order the server
        lists them in."""
        started = time.perf_counter()
        response = await self._guarded(
            self._client.embeddings.create(
                model=self._spec.name, input=list(texts), encoding_format="float"
            )
        )
        latency = time.perf_counter() - started
        data = getattr(response, "data", None)
        if not isinstance(data, list) or len(data) != len(texts):
            raise self._malformed(f"expected {len(texts)} embeddings")
        vectors: list[tuple[float, ...] | None] = [None] * len(texts)
        for position, item in enumerate(data):
            index = getattr(item, "index", position)
            vector = getattr(item, "embedding", None)
            if not isinstance(index, int) or not 0 <= index < len(texts) or not vector:
                raise self._malformed("an embedding without a valid index or vector")
            if not isinstance(vector, list):
                raise self._malformed("an embedding that is not a list of floats")
            vectors[index] = tuple(float(x) for x in vector)
        if any(v is None for v in vectors):
            raise self._malformed("an input without an embedding")
        usage = getattr(response, "usage", None)
        return Embeddings(
            vectors=tuple(v for v in vectors if v is not None),
            usage=Usage(input=int(getattr(usage, "prompt_tokens", 0) or 0)),
            model=getattr(response, "model", None) or self._spec.name,
            latency_s=latency,
        )

    async def _guarded(self, call: Awaitable[_T]) -> _T:
        """Await one SDK call, turning its errors into Transient/FatalProviderError."""
        try:
            return await call
        except openai.APIStatusError as error:
            raise self._status_error(error) from None
        except openai.APITimeoutError:
            raise TransientProviderError(
                f"{self._label}: the request timed out", kind="timed out"
            ) from None
        except openai.APIConnectionError as error:
            detail = redact(str(error.__cause__ or error), [self._key])
            raise TransientProviderError(
                f"{self._label}: connection failed: {detail}", kind="connection failed"
            ) from None
        except (openai.APIResponseValidationError, ValueError) as error:
            raise self._malformed(type(error).__name__) from None

    def _completion(self, response: Any, latency: float) -> Completion:
        choices = getattr(response, "choices", None)
        if not choices:
            raise self._malformed("no choices")
        message = getattr(choices[0], "message", None)
        text = getattr(message, "content", None)
        if not isinstance(text, str):
            raise self._malformed("no message content")
        return Completion(
            text=text,
            usage=_usage(getattr(response, "usage", None)),
            model=getattr(response, "model", None) or self._spec.name,
            latency_s=latency,
            finish_reason=normalize_finish_reason(getattr(choices[0], "finish_reason", None)),
        )

    def _malformed(self, why: str) -> TransientProviderError:
        return TransientProviderError(
            f"{self._label}: malformed response ({why})", kind="malformed response"
        )

    def _status_error(self, error: openai.APIStatusError) -> ProviderError:
        return classify_status(
            label=self._label,
            status=error.status_code,
            message=redact(_server_message(error), [self._key]),
            headers=error.response.headers,
            quota_exhausted=_is_quota_error(error),
            key_env=self._key_env or "the server's key (set api_key_env)",
            code=error.code,
        )

    async def aclose(self) -> None:
        """Close the connections, unless the caller lent the HTTP client."""
        if self._owns_http:
            await self._client.close()


def _usage(usage: Any) -> Usage:
    """Normalize OpenAI usage: its prompt_tokens include cached tokens, ours do not."""
    if usage is None:
        return Usage()
    prompt = int(getattr(usage, "prompt_tokens", 0) or 0)
    details = getattr(usage, "prompt_tokens_details", None)
    cached = int(getattr(details, "cached_tokens", 0) or 0) if details is not None else 0
    return Usage(
        input=max(0, prompt - cached),
        cache_read=cached,
        output=int(getattr(usage, "completion_tokens", 0) or 0),
    )
