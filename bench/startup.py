"""Start-up time of the command line: `promptopt --version`, `promptopt --help` and
`promptopt strategies` as whole processes, against a bare `python -c pass` as the floor.

Runs alternate between the commands, so that a drift in the machine's speed hits all alike;
the ratios to the bare interpreter are what to compare across machines. Optionally times a
second checkout (`--other DIR`, e.g. a worktree of an older commit) the same way.

    .venv/bin/python bench/startup.py --runs 15
    .venv/bin/python bench/startup.py --runs 15 --other /tmp/old-checkout
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COMMANDS = (["--version"], ["--help"], ["strategies"])


def timed(argv: list[str], env: dict[str, str], cwd: str) -> float:
    start = time.perf_counter()
    subprocess.run(argv, env=env, cwd=cwd, check=True, capture_output=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--other", type=Path, help="another checkout to time the same way")
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
    for name, checkout in checkouts.items():
        env = {**base, "PYTHONPATH": str(checkout)}
        for command in COMMANDS:
            label = f"{name}: promptopt {' '.join(command)}"
            cases[label] = ([sys.executable, "-m", "promptopt", *command], env)
    # A neutral folder: `python -m` puts the working folder first on sys.path.
    with tempfile.TemporaryDirectory() as cwd:
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
