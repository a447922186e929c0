"""Throughput of the scorer against a loopback OpenAI-compatible server with fixed latency.

The physical limit at concurrency C and latency L is C / L requests per second. The server runs
in its own process, so that it does not share the client's interpreter lock. Each row measures
promptopt on its lean path (the default for OpenAI-compatible servers) and, in the same run, on
the SDK path (what every server got before), plus the bare SDK and bare aiohttp (the HTTP library
of the lean path, with nothing around it: the ceiling this server and machine allow a Python
client). The first measurement of each opens its connections as it goes; "open connections"
repeats it, with another prompt, on the connections the first one left open, as a search's
later evaluations find them. "CPU" is the client process's CPU time per request, which a
loaded machine distorts less than requests per second.

With ``--dspy-python PYTHON`` (the interpreter of the environment holding the anchors of
bench/requirements-anchors.txt), the same requests also go through DSPy's ``Evaluate`` at the same
concurrency, in a separate process (bench/throughput_dspy.py), against the same server.

    .venv/bin/python bench/throughput.py --n 2000 --latency 0.1 --concurrency 16 64 128 256 \
        --dspy-python /work/anchors-venv/bin/python
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import openai
import yaml
from openai.types.chat import ChatCompletion

from promptopt.llm.providers.openai import OpenAIProvider
from promptopt.scoring.runtime import Runtime, RuntimeOptions
from promptopt.task.loader import LoadedTask, load_task
from promptopt.testing.fake_server import FakeOpenAIServer


def _serve(latency: float, port_out: Any, stop: Any) -> None:
    with FakeOpenAIServer(latency_s=latency) as server:
        port_out.put(server.port)
        stop.wait()


def _write_task(folder: Path, n: int, base_url: str, concurrency: int) -> Path:
    rows = [{"id": f"x{i}", "input": f"question {i}", "target": f"QUESTION {i}"} for i in range(n)]
    data = folder / "data.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    task = {
        "name": "throughput",
        "prompt": "Repeat the input.",
        "data": {"dev": "data.jsonl"},
        "metric": {"type": "contains"},
        "models": {
            "target": {
                "model": "openai:fake-model",
                "base_url": base_url,
                "temperature": 0,
                "max_tokens": 8,
            }
        },
    }
    path = folder / "task.yaml"
    path.write_text(yaml.safe_dump(task))
    return path


async def _evaluate(
    task: LoadedTask, cache_dir: Path, concurrency: int, *, lean: bool = True, again: bool = False
) -> tuple[float, float, int, int, float | None]:
    """Seconds and client CPU seconds of one evaluation, requests sent, errors; with `again`,
    also the seconds of a second evaluation of another prompt on the same examples and the
    same connection pool (as a search's later evaluations find it: connections already open).
    """
    options = RuntimeOptions(concurrency=concurrency, cache_dir=cache_dir)
    spec = task.spec.models.target
    assert spec is not None
    providers = {"target": OpenAIProvider(spec, env={}, lean=lean)}
    async with Runtime(task, options, env={}, providers=providers) as runtime:
        scorer = runtime.scorer
        examples = task.split("dev")
        start, cpu = time.perf_counter(), time.process_time()
        result = await scorer.evaluate(task.spec.system_prompt, examples, split="dev")
        elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
        second, errors = None, result.errors
        if again:
            start = time.perf_counter()
            repeat = await scorer.evaluate(
                task.spec.system_prompt + " Again.", examples, split="dev"
            )
            second = time.perf_counter() - start
            # Every answer must have crossed the network, or the rate would be flattered.
            assert repeat.usage.requests == len(examples), repeat.usage.requests
            errors += repeat.errors
    return elapsed, cpu, result.usage.requests, errors, second


def _bare_body(i: int) -> dict[str, Any]:
    """The request promptopt sends for example i of the task, for the clients without it."""
    return {
        "model": "fake-model",
        "messages": [
            {"role": "system", "content": "Repeat the input."},
            {"role": "user", "content": f"question {i}"},
        ],
        "temperature": 0,
        "max_tokens": 8,
    }


async def _raw_sdk(base_url: str, n: int, concurrency: int) -> float:
    """Requests per second of the bare openai SDK (no promptopt) at the same concurrency: what
    the SDK path can reach at best on this machine."""
    client = openai.AsyncOpenAI(base_url=base_url, api_key="not-needed", max_retries=0)
    gate = asyncio.Semaphore(concurrency)

    async def one(i: int) -> None:
        async with gate:
            await client.post("/chat/completions", body=_bare_body(i), cast_to=ChatCompletion)

    start = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(n)))
    elapsed = time.perf_counter() - start
    await client.close()
    return n / elapsed


async def _raw_aiohttp(base_url: str, n: int, concurrency: int) -> tuple[float, float]:
    """Requests per second of bare aiohttp (no promptopt, no SDK) at the same concurrency: what
    any Python client on promptopt's HTTP library reaches against this server on this machine,
    the ceiling the lean path is measured against; first on new connections, then again on
    the same session's open ones."""
    import aiohttp

    gate = asyncio.Semaphore(concurrency)
    headers = {"content-type": "application/json", "authorization": "Bearer not-needed"}
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:

        async def one(i: int) -> None:
            async with gate:
                url = f"{base_url}/chat/completions"
                data = json.dumps(_bare_body(i))
                async with session.post(url, data=data, headers=headers) as response:
                    response.raise_for_status()  # an error answer must not count as a reply
                    json.loads(await response.read())

        rates = []
        for _ in range(2):
            start = time.perf_counter()
            await asyncio.gather(*(one(i) for i in range(n)))
            rates.append(n / (time.perf_counter() - start))
        return rates[0], rates[1]


def _dspy(python: str, base_url: str, n: int, concurrency: int) -> tuple[float, int]:
    """Requests per second and errors of DSPy's Evaluate, run by another interpreter."""
    script = Path(__file__).with_name("throughput_dspy.py")
    command = [python, str(script), "--base-url", base_url, "--n", str(n)]
    command += ["--concurrency", str(concurrency)]
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    result = json.loads(done.stdout.strip().splitlines()[-1])
    return float(result["rps"]), int(result["errors"])


def main() -> None:
    """Run the benchmark and print one Markdown table row per concurrency."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--latency", type=float, default=0.1)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[64, 128])
    parser.add_argument(
        "--dspy-python", help="also send the requests through dspy.Evaluate with this interpreter"
    )
    args = parser.parse_args()

    ctx = multiprocessing.get_context("spawn")
    port_q = ctx.Queue()
    stop = ctx.Event()
    proc = ctx.Process(target=_serve, args=(args.latency, port_q, stop), daemon=True)
    proc.start()
    try:
        base_url = f"http://127.0.0.1:{port_q.get(timeout=30)}/v1"
        print(
            "| N | L | C | limit C/L | lean (req/s) | lean/limit | SDK path (req/s) | "
            "SDK path/limit | lean/SDK path | bare SDK (req/s) | lean/bare SDK | "
            "bare aiohttp (req/s) | bare aiohttp/limit | lean/bare aiohttp | "
            "open connections: lean/limit | open connections: bare aiohttp/limit | "
            "CPU lean / SDK path (ms/req) | cached rerun (s) | DSPy Evaluate (req/s) | "
            "lean/DSPy | errors |",
            flush=True,
        )
        print("|" + "---|" * 21, flush=True)
        for concurrency in args.concurrency:
            with tempfile.TemporaryDirectory() as tmp:
                folder = Path(tmp)
                task = load_task(_write_task(folder, args.n, base_url, concurrency))
                cache = folder / "cache"
                cold, cpu, sent, errors, second = asyncio.run(
                    _evaluate(task, cache, concurrency, again=True)
                )
                cached, _, sent_again, _, _ = asyncio.run(_evaluate(task, cache, concurrency))
                sdk, sdk_cpu, sdk_sent, sdk_errors, _ = asyncio.run(
                    _evaluate(task, folder / "sdk-cache", concurrency, lean=False)
                )
                assert sent == sdk_sent == args.n and sent_again == 0, (sent, sdk_sent, sent_again)
                assert second is not None
                bare = asyncio.run(_raw_sdk(base_url, args.n, concurrency))
                bare_http, bare_http_open = asyncio.run(_raw_aiohttp(base_url, args.n, concurrency))
                limit = concurrency / args.latency
                lean_rate, sdk_rate = args.n / cold, args.n / sdk
                dspy_cells = "not run | not run"
                if args.dspy_python:
                    dspy_rate, dspy_errors = _dspy(args.dspy_python, base_url, args.n, concurrency)
                    errors += dspy_errors
                    dspy_cells = f"{dspy_rate:.0f} | {lean_rate / dspy_rate:.2f}"
                print(
                    f"| {args.n} | {args.latency * 1000:.0f} ms | {concurrency} | {limit:.0f} | "
                    f"{lean_rate:.0f} | {lean_rate / limit:.2f} | {sdk_rate:.0f} | "
                    f"{sdk_rate / limit:.2f} | {lean_rate / sdk_rate:.2f} | {bare:.0f} | "
                    f"{lean_rate / bare:.2f} | {bare_http:.0f} | {bare_http / limit:.2f} | "
                    f"{lean_rate / bare_http:.2f} | {args.n / second / limit:.2f} | "
                    f"{bare_http_open / limit:.2f} | {1000 * cpu / args.n:.2f} / "
                    f"{1000 * sdk_cpu / args.n:.2f} | {cached:.3f} | {dspy_cells} | "
                    f"{errors + sdk_errors} |",
                    flush=True,
                )
    finally:
        stop.set()
        proc.join(timeout=10)


if __name__ == "__main__":
    main()
