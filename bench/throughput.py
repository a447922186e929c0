"""Throughput of the scorer against a loopback OpenAI-compatible server with fixed latency.

The physical limit at concurrency C and latency L is C / L requests per second. The server runs
in its own process, so that it does not share the client's interpreter lock.

    .venv/bin/python bench/throughput.py --n 2000 --latency 0.1 --concurrency 64 128
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import tempfile
import time
from pathlib import Path
from typing import Any

import openai
import yaml
from openai.types.chat import ChatCompletion

from promptopt.scoring.runtime import Runtime, RuntimeOptions
from promptopt.task.loader import load_task
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


async def _evaluate(task_path: Path, cache_dir: Path, concurrency: int) -> tuple[float, int, int]:
    task = load_task(task_path)
    options = RuntimeOptions(concurrency=concurrency, cache_dir=cache_dir)
    async with Runtime(task, options, env={}) as runtime:
        scorer = runtime.scorer
        examples = task.split("dev")
        start = time.perf_counter()
        result = await scorer.evaluate(task.spec.system_prompt, examples, split="dev")
        elapsed = time.perf_counter() - start
    return elapsed, result.usage.requests, result.errors


async def _raw_sdk(base_url: str, n: int, concurrency: int) -> float:
    """Requests per second of the bare openai SDK (no promptopt) at the same concurrency: the
    client-side ceiling on this machine."""
    client = openai.AsyncOpenAI(base_url=base_url, api_key="not-needed", max_retries=0)
    gate = asyncio.Semaphore(concurrency)

    async def one(i: int) -> None:
        body = {
            "model": "fake-model",
            "messages": [
                {"role": "system", "content": "Repeat the input."},
                {"role": "user", "content": f"question {i}"},
            ],
            "temperature": 0,
            "max_tokens": 8,
        }
        async with gate:
            await client.post("/chat/completions", body=body, cast_to=ChatCompletion)

    start = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(n)))
    elapsed = time.perf_counter() - start
    await client.close()
    return n / elapsed


def main() -> None:
    """Run the benchmark and print one Markdown table row per concurrency."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--latency", type=float, default=0.1)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[64, 128])
    args = parser.parse_args()

    ctx = multiprocessing.get_context("spawn")
    port_q = ctx.Queue()
    stop = ctx.Event()
    proc = ctx.Process(target=_serve, args=(args.latency, port_q, stop), daemon=True)
    proc.start()
    try:
        base_url = f"http://127.0.0.1:{port_q.get(timeout=30)}/v1"
        print(
            "| N | latency L | concurrency C | limit C/L (req/s) | promptopt (req/s) | "
            "promptopt/limit | bare SDK (req/s) | promptopt/bare SDK | cached rerun (s) | errors |"
        )
        print("|---|---|---|---|---|---|---|---|---|---|")
        for concurrency in args.concurrency:
            with tempfile.TemporaryDirectory() as tmp:
                folder = Path(tmp)
                task = _write_task(folder, args.n, base_url, concurrency)
                cold, sent, errors = asyncio.run(_evaluate(task, folder / "cache", concurrency))
                warm, sent_again, _ = asyncio.run(_evaluate(task, folder / "cache", concurrency))
                assert sent == args.n and sent_again == 0, (sent, sent_again)
                bare = asyncio.run(_raw_sdk(base_url, args.n, concurrency))
                limit = concurrency / args.latency
                achieved = args.n / cold
                print(
                    f"| {args.n} | {args.latency * 1000:.0f} ms | {concurrency} | {limit:.0f} | "
                    f"{achieved:.0f} | {achieved / limit:.2f} | {bare:.0f} | "
                    f"{achieved / bare:.2f} | {warm:.3f} | {errors} |",
                    flush=True,
                )
    finally:
        stop.set()
        proc.join(timeout=10)


if __name__ == "__main__":
    main()
