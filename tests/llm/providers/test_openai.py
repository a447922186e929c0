"""OpenAIProvider on a fake HTTP layer (httpx2.MockTransport), on both of its paths: the real SDK
building and parsing, and the lean path (plain JSON on the shared pool). Every test runs on both,
so that errors, retries and usage are the same whichever path a model takes."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Callable
from typing import Any

import httpx2
import pytest

from promptopt.errors import FatalProviderError, ProviderError, TransientProviderError
from promptopt.llm.messages import ChatRequest, Completion, Usage
from promptopt.llm.providers import openai as openai_provider
from promptopt.task.modelspec import ModelSpec

KEY = "sk-test-SECRET0123456789abcdef"
ENV = {"OPENAI_API_KEY": KEY}
REQUEST = ChatRequest(
    messages=(
        {"role": "system", "content": "Answer with the label only."},
        {"role": "user", "content": "Is water wet?"},
    ),
    params={"temperature": 0},
)

Handler = Callable[[httpx2.Request], httpx2.Response]
OpenAIProvider: Callable[..., openai_provider.OpenAIProvider] = openai_provider.OpenAIProvider


@pytest.fixture(autouse=True, params=["sdk", "lean"])
def client_path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Every provider a test builds takes this path."""
    lean = request.param == "lean"

    def build(*args: Any, **kwargs: Any) -> openai_provider.OpenAIProvider:
        return openai_provider.OpenAIProvider(*args, lean=lean, **kwargs)

    monkeypatch.setitem(globals(), "OpenAIProvider", build)
    return str(request.param)


def completion_body(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1,
        "model": "gpt-4o-mini-2024-07-18",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "Yes"},
                "finish_reason": "stop",
            }
        ],
        "usage": {
            "prompt_tokens": 1200,
            "completion_tokens": 3,
            "total_tokens": 1203,
            "prompt_tokens_details": {"cached_tokens": 1024},
        },
    }
    body.update(overrides)
    return body


class Recorder:
    """Answers every request with one handler and keeps what was sent."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.requests: list[httpx2.Request] = []

    def __call__(self, request: httpx2.Request) -> httpx2.Response:
        self.requests.append(request)
        return self.handler(request)


def run(
    handler: Handler,
    spec: ModelSpec | str = "openai:gpt-4o-mini",
    env: dict[str, str] | None = None,
) -> tuple[Completion | ProviderError, Recorder]:
    """Build a provider on a mock transport, send REQUEST once, return the answer or error."""
    recorder = Recorder(handler)
    model = spec if isinstance(spec, ModelSpec) else ModelSpec(model=spec)

    async def go() -> Completion | ProviderError:
        async with httpx2.AsyncClient(transport=httpx2.MockTransport(recorder)) as client:
            provider = OpenAIProvider(model, http_client=client, env=ENV if env is None else env)
            try:
                return await provider.complete(REQUEST)
            except ProviderError as error:
                return error
            finally:
                await provider.aclose()

    return asyncio.run(go()), recorder


def error_response(status: int, body: Any, headers: dict[str, str] | None = None) -> Handler:
    return lambda request: httpx2.Response(status, json=body, headers=headers or {})


def test_success_normalizes_usage_and_sends_the_request() -> None:
    result, recorder = run(lambda r: httpx2.Response(200, json=completion_body()))
    assert isinstance(result, Completion)
    assert result.text == "Yes"
    assert result.model == "gpt-4o-mini-2024-07-18"
    assert result.usage == Usage(input=176, cache_read=1024, cache_write=0, output=3)
    assert result.latency_s >= 0
    [sent] = recorder.requests
    assert str(sent.url) == "https://api.openai.com/v1/chat/completions"
    assert sent.headers["authorization"] == f"Bearer {KEY}"
    body = json.loads(sent.content)
    assert body["model"] == "gpt-4o-mini"
    assert body["messages"] == [dict(m) for m in REQUEST.messages]
    assert body["temperature"] == 0


@pytest.mark.parametrize(
    ("reported", "expected"),
    [("stop", "stop"), ("length", "length"), ("content_filter", "content_filter"), (None, None)],
)
def test_finish_reason_is_reported(reported: str | None, expected: str | None) -> None:
    body = completion_body()
    body["choices"][0]["finish_reason"] = reported
    result, _ = run(lambda r: httpx2.Response(200, json=body))
    assert isinstance(result, Completion)
    assert result.finish_reason == expected
    assert result.truncated is (expected == "length")


def test_a_compatible_server_reports_a_cut_answer() -> None:
    # llama.cpp's server, vLLM and Ollama answer in the same shape at their own base_url.
    body = completion_body(model="qwen2.5-0.5b", usage=None)
    body["choices"][0]["message"]["content"] = "Classify the review as positive or"
    body["choices"][0]["finish_reason"] = "length"
    spec = ModelSpec(model="openai:qwen2.5-0.5b", base_url="http://127.0.0.1:8080/v1")
    result, recorder = run(lambda r: httpx2.Response(200, json=body), spec, env={})
    assert isinstance(result, Completion)
    assert result.finish_reason == "length"
    assert str(recorder.requests[0].url) == "http://127.0.0.1:8080/v1/chat/completions"


def test_spec_params_are_sent_and_max_tokens_renamed_for_openai() -> None:
    spec = ModelSpec(model="openai:o4-mini", max_tokens=16, params={"seed": 7})
    _, recorder = run(lambda r: httpx2.Response(200, json=completion_body()), spec)
    body = json.loads(recorder.requests[0].content)
    assert body["max_completion_tokens"] == 16
    assert "max_tokens" not in body
    assert body["seed"] == 7


def test_missing_usage_counts_zero() -> None:
    result, _ = run(lambda r: httpx2.Response(200, json=completion_body(usage=None)))
    assert isinstance(result, Completion)
    assert result.usage == Usage()


@pytest.mark.parametrize(
    ("headers", "expected"),
    [({"retry-after": "7"}, 7.0), ({"retry-after-ms": "1500"}, 1.5), ({}, None)],
)
def test_rate_limit_is_transient_with_retry_after_and_sent_once(
    headers: dict[str, str], expected: float | None
) -> None:
    body = {"error": {"message": "Rate limit reached", "type": "requests", "code": None}}
    result, recorder = run(error_response(429, body, headers))
    assert isinstance(result, TransientProviderError)
    assert result.retry_after == expected
    assert result.status == 429
    assert len(recorder.requests) == 1  # the SDK did not retry on its own


def test_insufficient_quota_is_fatal() -> None:
    body = {
        "error": {
            "message": "You exceeded your current quota",
            "type": "insufficient_quota",
            "code": "insufficient_quota",
        }
    }
    result, recorder = run(error_response(429, body))
    assert isinstance(result, FatalProviderError)
    assert "quota" in str(result)
    assert len(recorder.requests) == 1


@pytest.mark.parametrize("status", [500, 502, 503])
def test_server_errors_are_transient_and_sent_once(status: int) -> None:
    result, recorder = run(error_response(status, {"error": {"message": "boom"}}))
    assert isinstance(result, TransientProviderError)
    assert result.status == status
    assert len(recorder.requests) == 1


def test_timeout_is_transient() -> None:
    def handler(request: httpx2.Request) -> httpx2.Response:
        raise httpx2.ReadTimeout("slow", request=request)

    result, recorder = run(handler)
    assert isinstance(result, TransientProviderError)
    assert "timed out" in str(result)
    assert len(recorder.requests) == 1


def test_connection_reset_is_transient() -> None:
    def handler(request: httpx2.Request) -> httpx2.Response:
        raise httpx2.ConnectError("connection reset by peer", request=request)

    result, _ = run(handler)
    assert isinstance(result, TransientProviderError)


@pytest.mark.parametrize(
    "response",
    [
        httpx2.Response(200, content=b"{not json", headers={"content-type": "application/json"}),
        httpx2.Response(200, json={"id": "x", "object": "chat.completion", "model": "m"}),
        httpx2.Response(200, json=completion_body(choices=[])),
        httpx2.Response(
            200, json=completion_body(choices=[{"index": 0, "message": {"role": "assistant"}}])
        ),
    ],
    ids=["invalid-json", "no-choices", "empty-choices", "no-content"],
)
def test_malformed_bodies_are_transient(response: httpx2.Response) -> None:
    result, _ = run(lambda r: response)
    assert isinstance(result, TransientProviderError)
    assert "malformed response" in str(result)


@pytest.mark.parametrize("status", [401, 403])
def test_auth_failures_are_fatal_and_name_the_variable(status: int) -> None:
    body = {
        "error": {
            "message": "Incorrect API key provided: sk-test-****cdef.",
            "type": "invalid_request_error",
            "code": "invalid_api_key",
        }
    }
    result, _ = run(error_response(status, body))
    assert isinstance(result, FatalProviderError)
    assert "OPENAI_API_KEY" in str(result)
    assert "sk-test" not in str(result)


@pytest.mark.parametrize("status", [400, 404, 422])
def test_invalid_requests_are_fatal_with_the_server_message(status: int) -> None:
    body = {"error": {"message": "The model `gpt-9` does not exist", "type": "invalid_request"}}
    result, _ = run(error_response(status, body))
    assert isinstance(result, FatalProviderError)
    assert "The model `gpt-9` does not exist" in str(result)
    assert "{" not in str(result)  # the server's sentence, not a dump of the body


def test_key_never_appears_in_endpoint_or_errors() -> None:
    leaky = {"error": {"message": f"bad key {KEY}", "type": "invalid_request_error"}}
    for status in (400, 401, 429, 500):
        result, _ = run(error_response(status, leaky))
        assert isinstance(result, ProviderError)
        assert KEY not in str(result)
    provider = OpenAIProvider(ModelSpec(model="openai:gpt-4o"), env=ENV)
    assert provider.endpoint == "https://api.openai.com/v1"
    assert KEY not in provider.endpoint


def test_missing_key_for_openai_is_fatal_with_the_fix() -> None:
    with pytest.raises(
        FatalProviderError, match=re.escape("set OPENAI_API_KEY, or set models.<role>.base_url")
    ):
        OpenAIProvider(ModelSpec(model="openai:gpt-4o"), env={})


def test_base_url_routes_to_the_server_without_the_openai_key() -> None:
    spec = ModelSpec(
        model="openai:qwen2.5",
        base_url="http://127.0.0.1:8000/v1",
        max_tokens=8,
        params={"top_k": 20},
    )
    result, recorder = run(lambda r: httpx2.Response(200, json=completion_body()), spec)
    assert isinstance(result, Completion)
    [sent] = recorder.requests
    assert str(sent.url) == "http://127.0.0.1:8000/v1/chat/completions"
    assert KEY not in sent.headers.get("authorization", "")
    body = json.loads(sent.content)
    assert body["model"] == "qwen2.5"
    assert body["max_tokens"] == 8  # compatible servers keep the classic name
    assert body["top_k"] == 20  # a server-specific parameter, passed through


def test_base_url_uses_the_named_key_variable() -> None:
    spec = ModelSpec(
        model="openai:llama", base_url="https://vllm.example/v1", api_key_env="VLLM_KEY"
    )
    env = {**ENV, "VLLM_KEY": "vllm-token-1234"}
    _, recorder = run(lambda r: httpx2.Response(200, json=completion_body()), spec, env)
    assert recorder.requests[0].headers["authorization"] == "Bearer vllm-token-1234"


def test_named_key_variable_missing_is_fatal() -> None:
    spec = ModelSpec(
        model="openai:llama", base_url="https://vllm.example/v1", api_key_env="VLLM_KEY"
    )
    with pytest.raises(FatalProviderError, match="VLLM_KEY"):
        OpenAIProvider(spec, env=ENV)


def test_ollama_shorthand() -> None:
    result, recorder = run(lambda r: httpx2.Response(200, json=completion_body()), "ollama:llama3")
    assert isinstance(result, Completion)
    [sent] = recorder.requests
    assert str(sent.url) == "http://localhost:11434/v1/chat/completions"
    assert json.loads(sent.content)["model"] == "llama3"
    assert KEY not in sent.headers.get("authorization", "")
    provider = OpenAIProvider(ModelSpec(model="ollama:llama3"), env={})
    assert provider.endpoint == "http://localhost:11434/v1"
    assert provider.model_id == "ollama:llama3"


def test_endpoint_drops_credentials_in_the_url() -> None:
    spec = ModelSpec(model="openai:m", base_url="https://user:pw@host.example:8443/v1/?key=abc")
    assert OpenAIProvider(spec, env={}).endpoint == "https://host.example:8443/v1"


def test_ollama_style_error_body_keeps_the_server_message() -> None:
    handler = error_response(404, {"error": "model 'llama9' not found, try pulling it first"})
    result, _ = run(handler, "ollama:llama9")
    assert isinstance(result, FatalProviderError)
    assert "model 'llama9' not found, try pulling it first" in str(result)


def test_each_path_is_the_one_taken(client_path: str) -> None:
    _, recorder = run(lambda r: httpx2.Response(200, json=completion_body()))
    # The SDK marks its requests; the lean path sends only what the API needs.
    assert ("x-stainless-lang" in recorder.requests[0].headers) == (client_path == "sdk")


def test_compatible_servers_take_the_lean_path_and_openai_the_sdk() -> None:
    compatible = ModelSpec(model="openai:qwen", base_url="http://127.0.0.1:8000/v1")
    assert openai_provider.OpenAIProvider(compatible, env={}).lean
    assert not openai_provider.OpenAIProvider(ModelSpec(model="openai:gpt-4o"), env=ENV).lean


def test_rate_limit_headers_and_further_samples_are_read() -> None:
    body = completion_body()
    body["choices"].append(
        {"index": 1, "message": {"role": "assistant", "content": "No"}, "finish_reason": "length"}
    )
    headers = {"x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "250ms"}
    result, _ = run(lambda r: httpx2.Response(200, json=body, headers=headers))
    assert isinstance(result, Completion)
    assert result.rate_limit is not None and result.rate_limit.wait_s() == 0.25
    assert result.more == (("No", "length"),)


def test_the_models_timeout_applies_to_a_lent_connection_pool() -> None:
    spec = ModelSpec(model="openai:gpt-4o-mini", timeout_s=123)
    _, recorder = run(lambda r: httpx2.Response(200, json=completion_body()), spec)
    assert recorder.requests[0].extensions["timeout"]["read"] == 123


def embeddings_body(vectors: list[list[float]], order: list[int] | None = None) -> dict[str, Any]:
    indices = order if order is not None else list(range(len(vectors)))
    return {
        "object": "list",
        "data": [{"object": "embedding", "index": i, "embedding": vectors[i]} for i in indices],
        "model": "text-embedding-3-small",
        "usage": {"prompt_tokens": 7, "total_tokens": 7},
    }


def embed(
    handler: Handler, spec: str = "openai:text-embedding-3-small", texts: tuple[str, ...] = ()
) -> tuple[Any, Recorder]:
    recorder = Recorder(handler)

    async def go() -> Any:
        async with httpx2.AsyncClient(transport=httpx2.MockTransport(recorder)) as client:
            provider = OpenAIProvider(ModelSpec(model=spec), http_client=client, env=ENV)
            try:
                return await provider.embed(list(texts))
            except ProviderError as error:
                return error

    return asyncio.run(go()), recorder


def test_embed_posts_to_the_embeddings_endpoint_and_keeps_the_input_order() -> None:
    vectors = [[1.0, 0.0], [0.0, 1.0]]
    answer, recorder = embed(
        lambda r: httpx2.Response(200, json=embeddings_body(vectors, order=[1, 0])),
        texts=("first prompt", "second prompt"),
    )
    sent = recorder.requests[0]
    assert sent.method == "POST"
    assert sent.url.path == "/v1/embeddings"
    body = json.loads(sent.content)
    assert body["model"] == "text-embedding-3-small"
    assert body["input"] == ["first prompt", "second prompt"]
    assert body["encoding_format"] == "float"
    assert sent.headers["authorization"] == f"Bearer {KEY}"
    assert answer.vectors == ((1.0, 0.0), (0.0, 1.0))
    assert answer.usage == Usage(input=7)
    assert answer.model == "text-embedding-3-small"


def test_embed_on_a_server_without_embeddings_is_fatal() -> None:
    answer, _ = embed(
        lambda r: httpx2.Response(501, json={"error": {"message": "no embeddings here"}}),
        texts=("a",),
    )
    assert isinstance(answer, FatalProviderError)
    assert "no embeddings here" in str(answer)


def test_embed_with_a_missing_vector_is_a_malformed_response() -> None:
    body = embeddings_body([[1.0]])
    answer, _ = embed(lambda r: httpx2.Response(200, json=body), texts=("a", "b"))
    assert isinstance(answer, TransientProviderError)
    assert "malformed" in str(answer)
