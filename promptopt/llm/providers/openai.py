"""OpenAI chat completions, and OpenAI-compatible servers (vLLM, Ollama, llama.cpp, LM Studio)."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Awaitable, Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit

from promptopt.errors import FatalProviderError, ProviderError, TransientProviderError
from promptopt.llm.messages import ChatRequest, Completion, Usage, normalize_finish_reason
from promptopt.llm.providers.base import Embeddings
from promptopt.llm.providers.endpoints import is_openai_host, resolve_base_url
from promptopt.llm.providers.http_errors import (
    classify_status,
    parse_rate_limit,
    safe_endpoint,
    without_userinfo,
)
from promptopt.llm.providers.openai_batch import OpenAIBatches
from promptopt.llm.providers.wire import (
    AiohttpWire,
    HttpxWire,
    JsonWire,
    WireFailure,
    WireResponse,
    WireTimeout,
)
from promptopt.task.modelspec import ModelSpec
from promptopt.util.redact import redact, url_credentials

if TYPE_CHECKING:
    # The SDK is imported only when it is used: the lean path (every OpenAI-compatible
    # server) never needs it, and importing it takes about a second.
    import httpx2
    import openai
    from openai._types import RequestOptions

# Local servers ignore the key but the SDK insists on one; a dummy keeps real keys at home.
DUMMY_KEY = "not-needed"
# Asks the SDK for the response with its headers (what `with_raw_response` sends), so that the
# rate-limit headers of an answer reach the client's adaptive concurrency.
_RAW_RESPONSE: RequestOptions = {"headers": {"X-Stainless-Raw-Response": "true"}}
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


class OpenAIProvider(OpenAIBatches):
    """A model behind the OpenAI API: chat completions, and embeddings (POST /embeddings) for
    an embedding model; one attempt per call."""

    def __init__(
        self,
        spec: ModelSpec,
        *,
        http_client: httpx2.AsyncClient | None = None,
        env: Mapping[str, str] = os.environ,
        lean: bool | None = None,
    ) -> None:
        """`lean` chooses the plain-JSON path (see `_complete_lean`) over the SDK; by default
        OpenAI-compatible servers get it, and OpenAI's own API keeps the SDK (its organization
        and project settings, and the batch API, go through the SDK's client)."""
        self._spec = spec
        written = resolve_base_url(spec)
        self._base_url = written if spec.url_credentials else without_userinfo(written)
        self._official = is_openai_host(self._base_url)
        self._key, self._key_env = resolve_api_key(spec, self._base_url, env)
        # Everything a server could echo back: the key, and the URL's credentials in any form.
        self._secrets = [self._key, *url_credentials(written)]
        self._owns_http = http_client is None
        # Read for every request's cache key: worked out once.
        self._endpoint = safe_endpoint(self._base_url)
        self._label = f"{spec.model} at {self._endpoint}"
        self.lean = not self._official if lean is None else lean
        self._http_client = http_client
        self._sdk: openai.AsyncOpenAI | None = None
        self._wire: JsonWire | None = None
        if self.lean:
            # A lent client carries the caller's transport (a test's fake server); otherwise
            # the lean path gets aiohttp's pool, which costs far less CPU per request.
            self._wire = HttpxWire(http_client) if http_client is not None else AiohttpWire()
            self._url = self._base_url.rstrip("/") + "/chat/completions"
            self._headers = {
                "authorization": f"Bearer {self._key}",
                "content-type": "application/json",
                "accept": "application/json",
            }
            if urlsplit(self._base_url).username is not None:
                # Kept only with url_credentials: the URL's own Basic auth is what the SDK's
                # client sends then, in place of the key.
                del self._headers["authorization"]

    @property
    def _client(self) -> openai.AsyncOpenAI:
        """The SDK's client, made on first use: the lean path never needs it, and making one
        loads the TLS certificates (tens of milliseconds)."""
        if self._sdk is None:
            import openai

            self._sdk = openai.AsyncOpenAI(
                api_key=self._key,
                base_url=self._base_url,
                max_retries=0,  # the scorer owns retries and counts every attempt
                timeout=self._spec.timeout_s,
                http_client=self._http_client,
            )
        return self._sdk

    @property
    def endpoint(self) -> str:
        """The server's base URL, without credentials."""
        return self._endpoint

    @property
    def model_id(self) -> str:
        """The "provider:name" the user asked for."""
        return self._spec.model

    @property
    def samples_per_request(self) -> bool:
        """Whether a request for several samples sends `n` (OpenAI's own API honours it;
        another server only when the model's `n_sampling` says it does: Ollama ignores it)."""
        if self._spec.n_sampling is not None:
            return self._spec.n_sampling
        return self._official

    def _wire_body(self, request: ChatRequest) -> dict[str, Any]:
        """The request's JSON body. Server-specific parameters (vLLM's top_k,
        repetition_penalty, ...) go in as they are: the server decides what it accepts."""
        params: dict[str, Any] = {**self._spec.sampling_params(), **request.params}
        # OpenAI's reasoning models reject max_tokens; its replacement works for every model
        # there, while compatible servers only reliably know the old name.
        if self._official and "max_tokens" in params:
            params["max_completion_tokens"] = params.pop("max_tokens")
        body: dict[str, Any] = {
            "model": self._spec.name,
            "messages": [{"role": m["role"], "content": m["content"]} for m in request.messages],
        }
        if request.n > 1:
            body["n"] = request.n
        body.update(params)
        return body

    async def complete(self, request: ChatRequest) -> Completion:
        """Send one chat request; raise Transient/FatalProviderError on failure."""
        if self._wire is not None:
            return await self._complete_lean(self._wire, request)
        from openai.types.chat import ChatCompletion

        started = time.perf_counter()

        async def post() -> tuple[Any, Any]:
            # The SDK's own low-level post: same request building, auth and response parsing
            # as chat.completions.create, without re-walking the already plain JSON body
            # through its TypedDict transform, which costs about a third of the client-side
            # CPU per request at high concurrency (bench/throughput.py).
            raw = await self._client.post(
                "/chat/completions",
                body=self._wire_body(request),
                cast_to=ChatCompletion,
                options=_RAW_RESPONSE,
            )
            headers = getattr(raw, "headers", None) or {}
            return (raw.parse() if hasattr(raw, "parse") else raw), headers

        response, headers = await self._guarded(post())
        latency = time.perf_counter() - started
        return replace(self._completion(response, latency), rate_limit=parse_rate_limit(headers))

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
        import openai

        try:
            return await call
        except openai.APIStatusError as error:
            raise self._status_error(error) from None
        except openai.APITimeoutError:
            raise TransientProviderError(
                f"{self._label}: the request timed out", kind="timed out"
            ) from None
        except openai.APIConnectionError as error:
            detail = redact(str(error.__cause__ or error), self._secrets)
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
        more: list[tuple[str, str | None]] = []
        for choice in choices[1:]:
            extra = getattr(getattr(choice, "message", None), "content", None)
            if isinstance(extra, str):
                more.append(
                    (extra, normalize_finish_reason(getattr(choice, "finish_reason", None)))
                )
        return Completion(
            text=text,
            usage=_usage(getattr(response, "usage", None)),
            model=getattr(response, "model", None) or self._spec.name,
            latency_s=latency,
            finish_reason=normalize_finish_reason(getattr(choices[0], "finish_reason", None)),
            more=tuple(more),
        )

    async def _complete_lean(self, wire: JsonWire, request: ChatRequest) -> Completion:
        """The same request as the SDK path, as JSON bytes on a plain connection pool, and
        only the fields promptopt uses read back: the SDK's typed request and response objects
        cost about a millisecond of CPU per request, which caps one process at a few hundred
        requests per second against a fast local server (bench/throughput.py). Errors are
        classified exactly as on the SDK path."""
        content = json.dumps(self._wire_body(request), ensure_ascii=False).encode()
        started = time.perf_counter()
        try:
            # The model's timeout on each request: the pool may be lent, with its own default.
            response = await wire.post(self._url, content, self._headers, self._spec.timeout_s)
        except WireTimeout:
            raise TransientProviderError(
                f"{self._label}: the request timed out", kind="timed out"
            ) from None
        except WireFailure as error:
            detail = redact(str(error), self._secrets)
            raise TransientProviderError(
                f"{self._label}: connection failed: {detail}", kind="connection failed"
            ) from None
        raw = response.body
        latency = time.perf_counter() - started
        try:
            data = json.loads(raw) if raw else None
        except ValueError:
            data = None
        if response.status >= 400:
            raise self._lean_status_error(response, data) from None
        if not isinstance(data, dict):
            raise self._malformed("the body is not a JSON object")
        choices = data.get("choices")
        if not isinstance(choices, list) or not choices:
            raise self._malformed("no choices")
        texts: list[tuple[str, str | None]] = []
        for choice in choices:
            message = choice.get("message") if isinstance(choice, dict) else None
            text = message.get("content") if isinstance(message, dict) else None
            if not isinstance(text, str):
                if not texts:
                    raise self._malformed("no message content")
                continue
            texts.append((text, normalize_finish_reason(choice.get("finish_reason"))))
        model = data.get("model")
        (text, finish_reason), *more = texts
        try:
            usage = _usage_of(data.get("usage"))
        except (TypeError, ValueError):
            raise self._malformed("usage is not a count of tokens") from None
        return Completion(
            text=text,
            usage=usage,
            model=model if isinstance(model, str) and model else self._spec.name,
            latency_s=latency,
            finish_reason=finish_reason,
            rate_limit=parse_rate_limit(response.headers),
            more=tuple(more),
        )

    def _lean_status_error(self, response: WireResponse, data: Any) -> ProviderError:
        """The error an HTTP error status means, read from the body as the SDK reads it."""
        error = data.get("error", data) if isinstance(data, dict) else data
        fields = error if isinstance(error, dict) else {}
        message = fields.get("message") if fields else error
        if not isinstance(message, str) or not message:
            message = f"Error code: {response.status}"
        code = fields.get("code")
        kind = fields.get("type")
        return classify_status(
            label=self._label,
            status=response.status,
            message=redact(message, self._secrets),
            headers=response.headers,
            quota_exhausted=response.status == 429 and "insufficient_quota" in (code, kind),
            key_env=self._key_env or "the server's key (set api_key_env)",
            code=code if isinstance(code, str) else None,
        )

    def _malformed(self, why: str) -> TransientProviderError:
        return TransientProviderError(
            f"{self._label}: malformed response ({why})", kind="malformed response"
        )

    def _status_error(self, error: openai.APIStatusError) -> ProviderError:
        return classify_status(
            label=self._label,
            status=error.status_code,
            message=redact(_server_message(error), self._secrets),
            headers=error.response.headers,
            quota_exhausted=_is_quota_error(error),
            key_env=self._key_env or "the server's key (set api_key_env)",
            code=error.code,
        )

    async def aclose(self) -> None:
        """Close the connections, unless the caller lent the HTTP client."""
        if self._owns_http and self._sdk is not None:
            await self._sdk.close()
        if self._wire is not None:
            # A wire on a lent client leaves it open; aiohttp's own session always closes.
            await self._wire.aclose()


def _usage_of(usage: Any) -> Usage:
    """`_usage` of a usage object as plain JSON."""
    if not isinstance(usage, dict):
        return Usage()
    details = usage.get("prompt_tokens_details")
    cached = details.get("cached_tokens") if isinstance(details, dict) else 0
    prompt = int(usage.get("prompt_tokens") or 0)
    return Usage(
        input=max(0, prompt - int(cached or 0)),
        cache_read=int(cached or 0),
        output=int(usage.get("completion_tokens") or 0),
    )


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
