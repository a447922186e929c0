"""Reliability at scale: the promises of issue 14, measured with the command line itself.

Every scenario runs `python -m promptopt ...` in a subprocess against loopback servers
(`promptopt.testing.fake_server`) that run in this process and count what they are sent, and
takes peak memory from `/usr/bin/time -v`. Each prints one JSON line of figures.

    nice -n 10 python bench/reliability.py memory --n 100000
    nice -n 10 python bench/reliability.py soak --n 10000 -j 128 --fault-rate 0.3
    nice -n 10 python bench/reliability.py budget --runs 4 -j 64
    nice -n 10 python bench/reliability.py resume --runs 20
    nice -n 10 python bench/reliability.py cache --processes 4
    nice -n 10 python bench/reliability.py secrets

`--code DIR` runs another checkout's promptopt package (DIR/promptopt), for a before/after
comparison; by default, the one this script belongs to.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import yaml

from promptopt.testing.fake_server import FakeOpenAIServer, _error, _Response

ROOT = Path(__file__).resolve().parent.parent
SECRET = "sk-proj-RELIABILITYcanary0123456789abcdefXYZ"


class FaultyServer(FakeOpenAIServer):
    """The fake server with the faults a flaky gateway adds: resets, timeouts and malformed
    JSON besides 429 (with Retry-After), 500 and 503, each body failing at most
    `max_faults_per_body` times so that retries always get through; counts the completions it
    generated per body."""

    KINDS = ("429", "500", "503", "reset", "timeout", "malformed")

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.kinds: Counter[str] = Counter()
        self.completed: Counter[str] = Counter()
        self.tokens = 0  # billed tokens of the answers sent, as the server counts them
        self._mine: Counter[str] = Counter()
        self._guard = threading.Lock()

    def __enter__(self) -> FaultyServer:
        super().__enter__()
        return self

    def _fault_for(self, key: str, attempt: int, faults_so_far: int) -> _Response | None:
        if self.fault_rate <= 0:
            return None
        rng = random.Random(f"{self.seed}:{key}:{attempt}")
        with self._guard:
            if self._mine[key] >= self.max_faults_per_body or rng.random() >= self.fault_rate:
                return None
            self._mine[key] += 1
            kind = rng.choice(self.KINDS)
            self.kinds[kind] += 1
        if kind == "reset":
            raise ConnectionResetError("injected reset")  # closes without an answer
        if kind == "timeout":
            return _Hang()  # answered after hang_s, past the client's timeout_s
        if kind == "malformed":
            return _Response(200, b'{"id": "chatcmpl-broken", "choices": [')
        if kind == "429":
            response = _error(429, "Rate limit reached.", "requests", "rate_limit_exceeded")
            return _Response(429, response.body, (("retry-after", "0.05"),))
        return _error(int(kind), f"injected fault {kind}", "server_error")

    async def _chat_completion(self, raw: bytes) -> _Response:
        response = await super()._chat_completion(raw)
        if isinstance(response, _Hang):
            await asyncio.sleep(self.hang_s)
            return _error(504, "too late", "server_error")
        return response

    def _completion(self, body: dict[str, Any], key: str, attempt: int, text: str) -> _Response:
        response = super()._completion(body, key, attempt, text)
        usage = json.loads(response.body)["usage"]
        with self._guard:
            self.completed[key] += 1
            self.tokens += usage["prompt_tokens"] + usage["completion_tokens"]
        return response


class _Hang(_Response):
    def __init__(self) -> None:
        super().__init__(0, b"")


def label_reply(body: dict[str, Any]) -> str:
    """A deterministic classifier: the label depends on the input and the system prompt."""
    messages = body.get("messages") or []
    text = json.dumps(messages[-1:]) + json.dumps(messages[:1])
    return "positive" if int(hashlib.sha256(text.encode()).hexdigest(), 16) % 3 else "negative"


def optimizer_reply(body: dict[str, Any]) -> str:
    digest = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:6]
    return f"<START>Classify the review as positive or negative ({digest}).<END>"


def write_task(
    folder: Path,
    n: int,
    target: dict[str, Any],
    *,
    optimizer: dict[str, Any] | None = None,
    train: int = 0,
    test: int = 0,
    extra: dict[str, Any] | None = None,
) -> Path:
    """A two-label task whose dev split has `n` rows (a JSONL file)."""
    folder.mkdir(parents=True, exist_ok=True)

    def rows(count: int, prefix: str) -> str:
        return "".join(
            json.dumps(
                {
                    "id": f"{prefix}{i}",
                    "input": f"review {prefix}{i}: a film",
                    "target": "positive" if i % 2 else "negative",
                }
            )
            + "\n"
            for i in range(count)
        )

    data: dict[str, str] = {"dev": "dev.jsonl"}
    (folder / "dev.jsonl").write_text(rows(n, "d"))
    if train:
        (folder / "train.jsonl").write_text(rows(train, "t"))
        data["train"] = "train.jsonl"
    if test:
        (folder / "test.jsonl").write_text(rows(test, "s"))
        data["test"] = "test.jsonl"
    models: dict[str, Any] = {"target": target}
    if optimizer is not None:
        models["optimizer"] = optimizer
    task: dict[str, Any] = {
        "name": "reliability",
        "prompt": "Classify the review.",
        "data": data,
        "metric": {"type": "label", "labels": ["positive", "negative"]},
        "models": models,
        "errors": {"max_backoff_s": 0.5},
        **(extra or {}),
    }
    path = folder / "task.yaml"
    path.write_text(yaml.safe_dump(task, sort_keys=False))
    return path


def openai_model(server: FakeOpenAIServer, name: str = "fake-model", **more: Any) -> dict[str, Any]:
    return {
        "model": f"openai:{name}",
        "base_url": server.base_url,
        "temperature": 0,
        "max_tokens": 8,
        "timeout_s": 2,
        **more,
    }


def promptopt(
    code: Path, args: list[str], *, cwd: Path, env: dict[str, str] | None = None
) -> tuple[subprocess.CompletedProcess[str], int]:
    """Run the command line under /usr/bin/time -v; the result and the peak RSS in KB."""
    full_env = {**os.environ, "PYTHONPATH": str(code), **(env or {})}
    cmd = ["/usr/bin/time", "-v", sys.executable, "-m", "promptopt", *args]
    proc = subprocess.run(cmd, cwd=cwd, env=full_env, capture_output=True, text=True)
    match = re.search(r"Maximum resident set size \(kbytes\): (\d+)", proc.stderr)
    return proc, int(match.group(1)) if match else -1


def err_of(proc: subprocess.CompletedProcess[str]) -> str:
    """The command's own stderr, without /usr/bin/time's report."""
    return proc.stderr.split("\tCommand being timed")[0][-400:]


def eval_scores(proc: subprocess.CompletedProcess[str]) -> list[tuple[str, float, str]]:
    data = json.loads(proc.stdout)
    return [(e["id"], e["score"], e["output"]) for e in data["examples"]]


# -- scenarios ------------------------------------------------------------------------------


def memory(args: argparse.Namespace) -> dict[str, Any]:
    """Peak memory of `eval` on `n` examples (scripted model and loopback server), and of
    `eval --limit 100` on the same split."""
    out: dict[str, Any] = {"n": args.n, "code": str(args.code)}
    with tempfile.TemporaryDirectory() as tmp, FakeOpenAIServer(reply=label_reply) as server:
        folder = Path(tmp)
        (folder / "reply.py").write_text("def reply(request):\n    return 'positive'\n")
        scripted = write_task(folder / "s", args.n, {"model": "scripted:../reply.py:reply"})
        loopback = write_task(folder / "l", args.loopback_n, openai_model(server))
        for name, task, j, n in (
            ("scripted", scripted, 8, args.n),
            ("loopback", loopback, args.jobs, args.loopback_n),
        ):
            start = time.perf_counter()
            proc, rss = promptopt(
                args.code,
                ["eval", str(task), "--split", "dev", "--no-cache", "-j", str(j), "--json"],
                cwd=folder,
            )
            wall = time.perf_counter() - start
            ok = proc.returncode == 0 and len(json.loads(proc.stdout)["examples"]) == n
            out[name] = {
                "n": n,
                "peak_rss_mb": round(rss / 1024, 1),
                "wall_s": round(wall, 1),
                "ok": ok,
            }
            if not ok:
                out[name]["stderr"] = err_of(proc)
        start = time.perf_counter()
        proc, rss = promptopt(
            args.code,
            ["eval", str(scripted), "--split", "dev", "--limit", "100", "--no-cache", "--json"],
            cwd=folder,
        )
        out["limit_100"] = {
            "peak_rss_mb": round(rss / 1024, 1),
            "wall_s": round(time.perf_counter() - start, 2),
            "ok": proc.returncode == 0,
        }
    return out


def soak(args: argparse.Namespace) -> dict[str, Any]:
    """`eval` of n examples at -j with mixed faults against the same run without faults: the
    per-example outputs and scores must be identical."""
    out: dict[str, Any] = {"n": args.n, "jobs": args.jobs, "fault_rate": args.fault_rate}
    results = {}
    for label, rate in (("clean", 0.0), ("faulty", args.fault_rate)):
        with (
            tempfile.TemporaryDirectory() as tmp,
            FaultyServer(
                reply=label_reply, fault_rate=rate, max_faults_per_body=2, hang_s=3, seed=7
            ) as server,
        ):
            folder = Path(tmp)
            task = write_task(folder, args.n, openai_model(server))
            start = time.perf_counter()
            proc, rss = promptopt(
                args.code,
                ["eval", str(task), "--split", "dev", "--no-cache", "-j", str(args.jobs), "--json"],
                cwd=folder,
            )
            wall = time.perf_counter() - start
            results[label] = eval_scores(proc) if proc.returncode == 0 else []
            out[label] = {
                "exit": proc.returncode,
                "wall_s": round(wall, 1),
                "peak_rss_mb": round(rss / 1024, 1),
                "requests_on_server": server.requests_total,
                "distinct_bodies": len(server.requests_by_body),
                "faults": dict(server.kinds),
                "errors": json.loads(proc.stdout)["errors"] if proc.returncode == 0 else None,
            }
            if proc.returncode != 0:
                out[label]["stderr"] = err_of(proc)
    out["identical"] = bool(results["clean"]) and results["clean"] == results["faulty"]
    out["mean_score"] = (
        sum(s for _, s, _ in results["clean"]) / len(results["clean"]) if results["clean"] else None
    )
    return out


def budget(args: argparse.Namespace) -> dict[str, Any]:
    """`run` under call and cost caps at -j with faults: distinct requests each server saw
    (the calls the caps count) against the caps."""
    runs: list[dict[str, Any]] = []
    for i in range(args.runs):
        with (
            tempfile.TemporaryDirectory() as tmp,
            FaultyServer(reply=label_reply, fault_rate=args.fault_rate, hang_s=3, seed=i) as tgt,
            FaultyServer(
                reply=optimizer_reply, fault_rate=args.fault_rate, hang_s=3, seed=100 + i
            ) as opt,
        ):
            folder = Path(tmp)
            price = {"input": 1000.0, "output": 1000.0}  # a tenth of a cent a token
            task = write_task(
                folder,
                40,
                openai_model(tgt, price=price),
                optimizer=openai_model(
                    opt, "fake-optimizer", max_tokens=64, temperature=0.9, price=price
                ),
                train=60,
                test=40,
            )
            target_cap, optimizer_cap = 600 + 50 * i, 12 + 2 * i
            cost_cap = 12.0 + 2.0 * i
            flags = ["--budget", str(target_cap), "--optimizer-budget", str(optimizer_cap)]
            flags += ["--max-cost", str(cost_cap), "-j", str(args.jobs), "--json", "--no-cache"]
            flags += ["--out", str(folder / "runs"), "--seed", str(i)]
            proc, rss = promptopt(args.code, ["run", str(task), *flags], cwd=folder)
            summary = json.loads(proc.stdout) if proc.returncode == 0 else {}
            runs.append(
                {
                    "exit": proc.returncode,
                    "target_cap": target_cap,
                    "target_answered": sum(tgt.completed.values()),
                    "optimizer_cap": optimizer_cap,
                    "optimizer_answered": sum(opt.completed.values()),
                    "cost_cap_usd": cost_cap,
                    "cost_on_server_usd": round((tgt.tokens + opt.tokens) * 1000 / 1e6, 4),
                    "faults": tgt.faults_sent + opt.faults_sent,
                    "stop_reason": summary.get("stop_reason"),
                    "peak_rss_mb": round(rss / 1024, 1),
                    **({"stderr": err_of(proc)} if proc.returncode else {}),
                }
            )
    # Answers the servers sent and billed: a call that failed is not billed, so these are at
    # most the calls the caps count.
    over = sum(
        (r["target_answered"] > r["target_cap"])
        + (r["optimizer_answered"] > r["optimizer_cap"])
        + (r["cost_on_server_usd"] > r["cost_cap_usd"] + 1e-9)
        for r in runs
    )
    return {"runs": runs, "caps_overshot": over}


def resume(args: argparse.Namespace) -> dict[str, Any]:
    """`run` killed with SIGKILL at a random moment, then `run --resume` to the end, `runs`
    times: how often a request the server had already answered was answered again."""
    rng = random.Random(0)
    trials: list[dict[str, Any]] = []
    reference: dict[str, Any] | None = None
    for i in range(args.runs + 1):  # the first run is not killed: the reference
        with (
            tempfile.TemporaryDirectory() as tmp,
            FaultyServer(reply=label_reply, latency_s=0.02) as tgt,
            FaultyServer(reply=optimizer_reply, latency_s=0.02) as opt,
        ):
            folder = Path(tmp)
            task = write_task(
                folder,
                30,
                openai_model(tgt),
                optimizer=openai_model(opt, "fake-optimizer", max_tokens=64, temperature=0.9),
                train=40,
                test=30,
            )
            env = {**os.environ, "PYTHONPATH": str(args.code)}
            cmd = [sys.executable, "-m", "promptopt", "run", str(task), "--budget", "500"]
            cmd += ["--out", str(folder / "runs"), "--seed", "0", "-j", "16", "--no-cache"]
            child = subprocess.Popen(
                cmd, cwd=folder, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
            )
            # Killed once a random number of answers is recorded, whatever the machine's load.
            target = rng.randint(10, 200) if i else 10**9
            started = time.perf_counter()
            while child.poll() is None and recorded(folder / "runs") < target:
                time.sleep(0.02)
            delay = time.perf_counter() - started
            killed = child.poll() is None
            if killed:
                os.kill(child.pid, signal.SIGKILL)
            child.wait()
            if not i:
                (run_dir,) = list((folder / "runs").iterdir())
                reference = json.loads((run_dir / "summary.json").read_text())["scores"]
                continue
            before = tgt.completed + opt.completed
            made = list((folder / "runs").iterdir()) if (folder / "runs").exists() else []
            if not made:
                trials.append({"killed_after_s": round(delay, 2), "before_the_run_folder": True})
                continue
            (run_dir,) = made
            journaled = paid_keys(run_dir)
            proc, _ = promptopt(
                args.code, ["run", "--resume", str(run_dir), "--no-cache", "--json"], cwd=folder
            )
            # A completed request is one whose answer the run had recorded (responses.jsonl,
            # written before anything else); sent again, it is recorded as paid a second time.
            again = paid_keys(run_dir)
            summary = json.loads(proc.stdout) if proc.returncode == 0 else {}
            repeats = sum(again[k] - 1 for k in journaled if again[k] > 1)
            trials.append(
                {
                    "killed_after_s": round(delay, 2),
                    "kill_at_answers": target,
                    "killed": killed,
                    "completed_before_kill": sum(journaled.values()),
                    # Answered by a server but not yet read when the process died: sent again.
                    "answers_lost_in_the_kill": sum(before.values()) - sum(journaled.values()),
                    "resume_exit": proc.returncode,
                    "repeats_of_completed": repeats,
                    "status": summary.get("status"),
                    "same_scores_as_uninterrupted": summary.get("scores") == reference,
                }
            )
    resumed = [t for t in trials if "resume_exit" in t]
    return {
        "runs": len(trials),
        "killed_mid_run": sum(t["killed"] for t in resumed),
        "repeats_of_completed": sum(t["repeats_of_completed"] for t in resumed),
        "resumed_ok": sum(t["resume_exit"] == 0 for t in resumed),
        "same_scores_as_uninterrupted": sum(t["same_scores_as_uninterrupted"] for t in resumed),
        "trials": trials,
    }


def recorded(runs: Path) -> int:
    """Lines in the responses.jsonl of the one run folder under `runs` (0 before it exists)."""
    for path in runs.glob("*/responses.jsonl"):
        with path.open("rb") as handle:
            return sum(1 for _ in handle)
    return 0


def paid_keys(run_dir: Path) -> Counter[str]:
    """How many times each request key was recorded as paid in a run's responses.jsonl."""
    counts: Counter[str] = Counter()
    path = run_dir / "responses.jsonl"
    if path.exists():
        for line in path.read_text().splitlines():
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line cut by the kill
            if entry.get("paid"):
                counts[entry["key"]] += 1
    return counts


def cache(args: argparse.Namespace) -> dict[str, Any]:
    """`processes` evals at once sharing one cache folder over overlapping examples, then one
    more eval: every request must come from the cache (nothing lost)."""
    with tempfile.TemporaryDirectory() as tmp, FakeOpenAIServer(reply=label_reply) as server:
        folder = Path(tmp)
        task = write_task(folder, args.n, openai_model(server))
        shared = folder / "cache"
        env = {**os.environ, "PYTHONPATH": str(args.code)}
        children = [
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "promptopt",
                    "eval",
                    str(task),
                    "--split",
                    "dev",
                    "--cache-dir",
                    str(shared),
                    "-j",
                    "16",
                    "--json",
                ],
                cwd=folder,
                env=env,
                # Not piped: 2,000 results fill a pipe nobody reads until they exit.
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            for _ in range(args.processes)
        ]
        codes = [c.wait() for c in children]
        first = server.requests_total
        proc, _ = promptopt(
            args.code,
            ["eval", str(task), "--split", "dev", "--cache-dir", str(shared), "--json"],
            cwd=folder,
        )
        again = server.requests_total - first
        usage = json.loads(proc.stdout)["usage"] if proc.returncode == 0 else {}
        return {
            "processes": args.processes,
            "examples": args.n,
            "exit_codes": codes,
            "requests_by_the_processes": first,
            "requests_after": again,
            "cache_hits_after": usage.get("cache_hits"),
        }


def secrets(args: argparse.Namespace) -> dict[str, Any]:
    """A run and an eval with a distinctive key (in the environment, and echoed back by a
    server that puts the Authorization header in its error bodies): files that hold it."""
    import base64

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        with (
            FaultyServer(reply=label_reply, fault_rate=0.3, seed=3) as tgt,
            FaultyServer(reply=optimizer_reply) as opt,
        ):
            task = write_task(
                folder,
                20,
                openai_model(tgt, api_key_env="CANARY_KEY"),
                optimizer=openai_model(
                    opt, "fake-optimizer", max_tokens=64, api_key_env="CANARY_KEY"
                ),
                train=30,
                test=20,
            )
            env = {"CANARY_KEY": SECRET}
            outputs: list[str] = []
            codes: list[int] = []
            for cmd in (
                [
                    "run",
                    str(task),
                    "--budget",
                    "300",
                    "--out",
                    str(folder / "runs"),
                    "--json",
                    "--cache-dir",
                    str(folder / "cache"),
                ],
                ["eval", str(task), "--json", "--cache-dir", str(folder / "cache")],
                ["run", str(task), "--dry-run", "--budget", "300"],
            ):
                proc, _ = promptopt(args.code, cmd, cwd=folder, env=env)
                outputs.append(proc.stdout + proc.stderr)
                codes.append(proc.returncode)
        needles = [SECRET, base64.b64encode(SECRET.encode()).decode(), SECRET[8:30]]
        hits = []
        scanned = 0
        for path in folder.rglob("*"):
            if path.is_file():
                scanned += 1
                data = path.read_bytes()
                hits += [str(path.relative_to(folder)) for n in needles if n.encode() in data]
        console_hits = sum(1 for text in outputs for n in needles if n in text)
        return {
            "exit_codes": codes,
            "files_scanned": scanned,
            "file_hits": hits,
            "console_hits": console_hits,
        }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument(
        "scenario", choices=["memory", "soak", "budget", "resume", "cache", "secrets"]
    )
    parser.add_argument("--n", type=int, default=None)
    parser.add_argument("-j", "--jobs", type=int, default=128)
    parser.add_argument("--fault-rate", type=float, default=0.3)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--processes", type=int, default=4)
    parser.add_argument(
        "--loopback-n", type=int, default=10_000, help="memory: examples sent over HTTP"
    )
    parser.add_argument("--code", type=Path, default=ROOT)
    args = parser.parse_args()
    defaults = {"memory": 100_000, "soak": 10_000, "cache": 2_000}
    args.n = args.n or defaults.get(args.scenario, 1000)
    args.code = args.code.resolve()
    scenario = globals()[args.scenario]
    start = time.perf_counter()
    result = {"scenario": args.scenario, **scenario(args)}
    result["bench_wall_s"] = round(time.perf_counter() - start, 1)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
