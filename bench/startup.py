"""Start-up time of the command line: `promptopt --version`, `promptopt --help` and
`promptopt strategies` as whole processes, against a bare `python -c pass` as the floor.

Runs alternate between the commands, so that a drift in the machine's speed hits all alike;
the ratios to the bare interpreter are what to compare across machines. Optionally times a
second checkout (`--other DIR`, e.g. a worktree of an older commit) the same way.

    .venv/bin/python bench/startup.py --runs 15
    .venv/bin/python bench/startup.py --runs 15 --other /tmp/old-checkout
    .venv/bin/python bench/startup.py --runs 15 --eval --other /tmp/old-checkout

`--eval` adds `promptopt eval` of a 20-example task against a loopback OpenAI-compatible
server, answered from a warmed response cache: a whole command against a local server, without
the server's own time.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from promptopt.testing.fake_server import FakeOpenAIServer

ROOT = Path(__file__).resolve().parents[1]
COMMANDS = (["--version"], ["--help"], ["strategies"])


def timed(argv: list[str], env: dict[str, str], cwd: str) -> float:
    start = time.perf_counter()
    subprocess.run(argv, env=env, cwd=cwd, check=True, capture_output=True)
    return time.perf_counter() - start


def _eval_command(folder: Path, base_url: str) -> list[str]:
    """`eval` of a small task against the server at `base_url`, with its cache folder."""
    rows = [{"id": f"x{i}", "input": f"question {i}", "target": f"QUESTION {i}"} for i in range(20)]
    (folder / "data.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    target = {"model": "openai:fake-model", "base_url": base_url, "temperature": 0, "max_tokens": 8}
    task = {
        "name": "startup-eval",
        "prompt": "Repeat the input.",
        "data": {"dev": "data.jsonl"},
        "metric": {"type": "contains"},
        "models": {"target": target},
    }
    (folder / "task.yaml").write_text(json.dumps(task))  # JSON is YAML
    return ["eval", str(folder / "task.yaml"), "--split", "dev", "--cache-dir", str(folder / "c")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--other", type=Path, help="another checkout to time the same way")
    parser.add_argument(
        "--eval", action="store_true", help="also a cached eval against a loopback server"
    )
    args = parser.parse_args()
    checkouts = {"this": ROOT}
    if args.other is not None:
        checkouts["other"] = args.other.resolve()
    # Bytecode is written and reused, as in an installed package: an environment that sets
    # PYTHONDONTWRITEBYTECODE would otherwise time the compilation of every module.
    base = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    cases: dict[str, tuple[list[str], dict[str, str]]] = {
        "python -c pass": ([sys.executable, "-c", "pass"], base)
    }
    # A neutral folder: `python -m` puts the working folder first on sys.path.
    with tempfile.TemporaryDirectory() as cwd, FakeOpenAIServer() as server:
        commands = list(COMMANDS)
        if args.eval:
            commands.append(_eval_command(Path(cwd), server.base_url))
        for name, checkout in checkouts.items():
            env = {**base, "PYTHONPATH": str(checkout)}
            for command in commands:
                shown = (
                    "eval (cached, loopback server)" if command[0] == "eval" else " ".join(command)
                )
                label = f"{name}: promptopt {shown}"
                cases[label] = ([sys.executable, "-m", "promptopt", *command], env)
        for argv, env in cases.values():  # warm-up: the file cache, .pyc files
            timed(argv, env, cwd)
        times: dict[str, list[float]] = {label: [] for label in cases}
        for _ in range(args.runs):
            for label, (argv, env) in cases.items():
                times[label].append(timed(argv, env, cwd))
    floor = statistics.median(times["python -c pass"])
    print(f"{args.runs} runs each, interleaved; median wall seconds and ratio to python -c pass")
    print("| command | median (s) | min (s) | x bare python |")
    print("|---|---|---|---|")
    for label, values in times.items():
        median = statistics.median(values)
        print(f"| {label} | {median:.3f} | {min(values):.3f} | {median / floor:.1f} |")


if __name__ == "__main__":
    main()
