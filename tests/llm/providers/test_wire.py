"""The aiohttp wire of the lean OpenAI-compatible path, against a real loopback server: what it
returns, and that its failures reach the provider as the same errors the SDK path raises."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from promptopt.errors import FatalProviderError, TransientProviderError
from promptopt.llm.messages import ChatRequest, Completion
from promptopt.llm.providers.openai import OpenAIProvider
from promptopt.llm.providers.wire import AiohttpWire, WireFailure, WireTimeout
from promptopt.task.modelspec import ModelSpec
from promptopt.testing.fake_server import FakeOpenAIServer
from tests.support import REPO

BODY = json.dumps(
    {"model": "fake-model", "messages": [{"role": "user", "content": "ping"}]}
).encode()
HEADERS = {"content-type": "application/json"}
REQUEST = ChatRequest(messages=({"role": "user", "content": "ping"},))


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_the_answer_comes_back_whole_with_its_headers() -> None:
    wire = AiohttpWire()
    with FakeOpenAIServer(rpm=1000) as server:
        try:
            response = await wire.post(server.base_url + "/chat/completions", BODY, HEADERS, 5)
        finally:
            await wire.aclose()
    assert response.status == 200
    assert json.loads(response.body)["choices"][0]["message"]["content"]
    lowered = {k.lower() for k in response.headers}
    assert "x-ratelimit-remaining-requests" in lowered
    assert server.requests_total == 1


async def test_a_slow_server_is_a_wire_timeout() -> None:
    wire = AiohttpWire()
    with FakeOpenAIServer(mode="hang", hang_s=5) as server:
        try:
            with pytest.raises(WireTimeout):
                await wire.post(server.base_url + "/chat/completions", BODY, HEADERS, 0.2)
        finally:
            await wire.aclose()


async def test_nobody_listening_is_a_wire_failure() -> None:
    wire = AiohttpWire()
    try:
        with pytest.raises(WireFailure):
            await wire.post(f"http://127.0.0.1:{closed_port()}/v1/x", BODY, HEADERS, 5)
    finally:
        await wire.aclose()


async def test_closing_an_unused_wire_is_harmless() -> None:
    await AiohttpWire().aclose()


def provider(base_url: str, **spec: object) -> OpenAIProvider:
    return OpenAIProvider(
        ModelSpec(model="openai:fake-model", base_url=base_url, **spec),  # type: ignore[arg-type]
        env={},
    )


async def complete_once(**server_options: Any) -> Completion:
    with FakeOpenAIServer(**server_options) as server:
        model = provider(server.base_url)
        try:
            return await model.complete(REQUEST)
        finally:
            await model.aclose()


async def test_the_provider_on_aiohttp_reads_text_usage_and_rate_limits() -> None:
    completion = await complete_once(rpm=1000)
    assert completion.text
    assert completion.usage.input > 0 and completion.usage.output > 0
    assert completion.rate_limit is not None


@pytest.mark.parametrize(
    ("mode", "error", "kind"),
    [
        ("quota", FatalProviderError, None),
        ("unauthorized", FatalProviderError, None),
        ("malformed", TransientProviderError, "malformed response"),
    ],
)
async def test_the_provider_on_aiohttp_classifies_errors_as_the_sdk_path_does(
    mode: str, error: type[Exception], kind: str | None
) -> None:
    with FakeOpenAIServer(mode=mode) as server:  # type: ignore[arg-type]
        model = provider(server.base_url)
        try:
            with pytest.raises(error) as raised:
                await model.complete(REQUEST)
        finally:
            await model.aclose()
    if kind is not None:
        assert getattr(raised.value, "kind", None) == kind


async def test_the_provider_on_aiohttp_times_out_and_fails_to_connect_transiently() -> None:
    with FakeOpenAIServer(mode="hang", hang_s=5) as server:
        model = provider(server.base_url, timeout_s=0.2)
        try:
            with pytest.raises(TransientProviderError, match="timed out"):
                await model.complete(REQUEST)
        finally:
            await model.aclose()
    model = provider(f"http://127.0.0.1:{closed_port()}/v1")
    try:
        with pytest.raises(TransientProviderError, match="connection failed"):
            await model.complete(REQUEST)
    finally:
        await model.aclose()


def test_proxies_come_from_the_environment_unless_no_proxy_covers_the_host(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("http_proxy", "https_proxy", "all_proxy", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    monkeypatch.setenv("NO_PROXY", "internal.example")
    wire = AiohttpWire()
    assert wire.proxy_for("https://api.example/v1/chat/completions") == (
        "http://proxy.example:3128"
    )
    assert wire.proxy_for("https://internal.example/v1/chat/completions") is None
    assert wire.proxy_for("http://api.example/v1/chat/completions") is None  # no HTTP_PROXY


async def test_a_netrc_login_for_the_server_does_not_break_requests(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    netrc = tmp_path / ".netrc"
    netrc.write_text("machine 127.0.0.1 login someone password secret\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    monkeypatch.setenv("HOME", str(tmp_path))
    assert (await complete_once()).text


def test_an_openai_compatible_server_is_called_without_importing_either_sdk() -> None:
    # Importing the openai SDK takes about a second: a command against a local server
    # should not pay for it.
    with FakeOpenAIServer() as server:
        probe = (
            "import asyncio, sys\n"
            "from promptopt.llm.messages import ChatRequest\n"
            "from promptopt.llm.providers.openai import OpenAIProvider\n"
            "from promptopt.task.modelspec import ModelSpec\n"
            "async def main():\n"
            f"    p = OpenAIProvider(ModelSpec(model='openai:m', base_url={server.base_url!r}),"
            " env={})\n"
            "    c = await p.complete(ChatRequest(messages=({'role': 'user', 'content': 'x'},)))\n"
            "    await p.aclose()\n"
            "    assert c.text\n"
            "asyncio.run(main())\n"
            "print(' '.join(m for m in ('openai', 'anthropic') if m in sys.modules))\n"
        )
        done = subprocess.run(
            [sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, check=True
        )
    assert done.stdout.split() == []


async def test_a_key_with_a_newline_is_a_transient_failure_that_does_not_show_it() -> None:
    with FakeOpenAIServer() as server:
        model = OpenAIProvider(
            ModelSpec(model="openai:m", base_url=server.base_url, api_key_env="K"),
            env={"K": "sk-SECRET0123456789\n"},
        )
        try:
            with pytest.raises(TransientProviderError, match="connection failed") as raised:
                await model.complete(REQUEST)
        finally:
            await model.aclose()
    assert "SECRET" not in str(raised.value)


def test_a_provider_used_from_a_second_event_loop_says_what_to_do() -> None:
    with FakeOpenAIServer() as server:
        model = provider(server.base_url)

        async def ask_and_close() -> None:
            await model.complete(REQUEST)
            with pytest.raises(RuntimeError, match="new provider for each asyncio"):
                await asyncio.wait_for(other_loop_request(), 5)
            await model.aclose()

        async def other_loop_request() -> None:
            # A request from another thread's loop, while the first loop is still running.
            await asyncio.to_thread(asyncio.run, model.complete(REQUEST))

        asyncio.run(ask_and_close())
