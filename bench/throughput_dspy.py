"""The same requests as bench/throughput.py, sent through DSPy's ``Evaluate`` (bench env only).

Run by ``bench/throughput.py --dspy-python PYTHON`` with the interpreter of the environment
that has the anchors installed (bench/requirements-anchors.txt), against the same loopback
server, at the same concurrency (``num_threads``); it prints one JSON line: seconds, requests
per second, errors. DSPy's response caches are off, so every example reaches the server.

    /work/anchors-venv/bin/python bench/throughput_dspy.py --base-url URL --n 2000 --concurrency 64
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import tempfile
import time
from typing import Any


def main() -> None:
    """Evaluate ``--n`` examples through dspy.Evaluate and print the rate as JSON."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--base-url", required=True, help="the fake server's /v1 URL")
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=64)
    args = parser.parse_args()
    # DSPy's disk cache would otherwise live in the home folder; litellm would try to download
    # its price list at import, and this machine is offline.
    os.environ.setdefault("DSPY_CACHEDIR", tempfile.mkdtemp(prefix="throughput-dspy-cache-"))
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    # A bench-only dependency, imported by name (and typed as Any) so that promptopt's
    # environment and its type checks never need it.
    dspy: Any = importlib.import_module("dspy")

    lm = dspy.LM(
        "openai/fake-model",
        api_base=args.base_url,
        api_key="not-needed",
        cache=False,
        num_retries=0,
        temperature=0,
        max_tokens=8,
    )
    dspy.configure(lm=lm)
    dspy.configure_cache(enable_disk_cache=False, enable_memory_cache=False)

    class PlainAdapter(dspy.Adapter):  # type: ignore[misc]
        """The same messages as promptopt sends: system = instruction, user = input."""

        def format(
            self, signature: Any, demos: list[dict[str, Any]], inputs: dict[str, Any]
        ) -> list[dict[str, Any]]:
            return [
                {"role": "system", "content": "Repeat the input."},
                {"role": "user", "content": str(inputs["input"])},
            ]

        def parse(self, signature: Any, completion: str) -> dict[str, Any]:
            return {"answer": completion}

    class Plain(dspy.Module):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__()
            self.predict = dspy.Predict(
                dspy.Signature("input -> answer", instructions="Repeat the input.")
            )

        def forward(self, input: str) -> Any:
            with dspy.context(adapter=PlainAdapter()):
                return self.predict(input=input)

    devset = [
        dspy.Example(input=f"question {i}", answer=f"QUESTION {i}").with_inputs("input")
        for i in range(args.n)
    ]

    def contains(gold: Any, pred: Any, trace: Any = None) -> float:
        answer = str(getattr(pred, "answer", "") or "")
        return float(gold.answer.lower() in answer.lower())

    evaluate = dspy.Evaluate(
        devset=devset,
        metric=contains,
        num_threads=args.concurrency,
        display_progress=False,
        max_errors=args.n,
        provide_traceback=False,
    )
    start = time.perf_counter()
    result = evaluate(Plain())
    elapsed = time.perf_counter() - start
    # Failed examples are scored 0; a score below 100 therefore counts errors.
    score = float(getattr(result, "score", result))
    errors = round(args.n * (1 - score / 100))
    print(json.dumps({"seconds": elapsed, "rps": args.n / elapsed, "errors": errors}))


if __name__ == "__main__":
    main()
