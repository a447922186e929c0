"""DSPy MIPROv2 and GEPA as anchors for promptopt's search quality, on the same local endpoints,
splits, budget and plain layout as `bench/quality.py`.

    bash ../shared/tools/local-llm-servers.sh          # with TARGET_PORT / OPTIMIZER_PORT set
    /work/anchors-venv/bin/python bench/anchors.py --tasks trec --anchors mipro mipro-demos gepa
    /work/anchors-venv/bin/python bench/anchors.py --report     # the table only
    /work/anchors-venv/bin/python bench/anchors.py --report --compare bench/results/quality-v2.jsonl

The anchors need `bench/requirements-anchors.txt` (dspy, gepa) in a separate environment with
promptopt installed; they are never promptopt's own dependencies, so DSPy is imported lazily.

What each run does:
- The target (0.5B, temperature 0, 8 output tokens) sees exactly promptopt's layout: the
  instruction as the system message, the rendered input as the user message, and DSPy's
  few-shot demos (MIPROv2 with demos) as user/assistant turns before it. A tiny DSPy adapter
  does this instead of DSPy's field-marker layout.
- The search uses the task's train split as DSPy's trainset and its dev split as the valset.
- Every request to either server goes through a counting proxy in this process, so target
  and optimizer calls are counted at the HTTP level (retries and parse-failure re-asks too);
  DSPy's response cache is off.
- The final test evaluation is promptopt's own: `evaluate_prompt` on the test split for the
  initial prompt and for the anchor's best instruction (with its demos, as promptopt sends
  demos), then promptopt's paired bootstrap and McNemar test (`promptopt.scoring.stats`).
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import importlib.metadata
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

ROOT = Path(__file__).resolve().parent.parent
TASKS = ("trec", "sst2", "liar", "antonyms")
ANCHORS = ("mipro", "mipro-demos", "gepa")
TARGET = {"temperature": 0.0, "max_tokens": 8}
# The proposer/reflection model gets far more room than promptopt's 96 tokens: DSPy's
# proposer writes field-marked answers (and dataset observations), GEPA's reflection a whole
# instruction in a code block; cut at 96 they would mostly fail to parse.
OPTIMIZER = {"temperature": 0.7, "max_tokens": 512}


@dataclass
class CallCounter:
    """Requests forwarded to one upstream server, counted under a lock (DSPy uses threads)."""

    upstream: str
    count: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self) -> None:
        """Count one request."""
        with self.lock:
            self.count += 1


class _Proxy(BaseHTTPRequestHandler):
    """Forwards a request to its counter's upstream unchanged and counts it."""

    counter: CallCounter

    def log_message(self, format: str, *args: Any) -> None:
        # Quiet: a benchmark run makes hundreds of requests.
        return

    def _forward(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        if self.command == "POST":
            self.counter.add()
        parts = urlsplit(self.counter.upstream)
        conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=3600)
        headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host",)}
        conn.request(self.command, self.path, body=body, headers=headers)
        reply = conn.getresponse()
        data = reply.read()
        self.send_response(reply.status)
        for key, value in reply.getheaders():
            if key.lower() not in ("transfer-encoding", "content-length", "connection"):
                self.send_header(key, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
        conn.close()

    do_POST = _forward
    do_GET = _forward


def start_proxy(upstream: str) -> tuple[ThreadingHTTPServer, CallCounter, str]:
    """A counting proxy in a daemon thread; returns it, its counter and its /v1 base URL."""
    counter = CallCounter(upstream)
    handler = type("CountingProxy", (_Proxy,), {"counter": counter})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, counter, f"http://127.0.0.1:{server.server_address[1]}/v1"


def local_task(task: str, folder: Path, target_url: str, optimizer_url: str) -> Path:
    """A copy of tasks/<task>.yaml whose models are the local servers, with absolute data
    paths; the prompt stays the task's plain prompt (the anchors edit all of it)."""
    source = ROOT / "tasks" / f"{task}.yaml"
    spec = yaml.safe_load(source.read_text())
    for split in ("train", "dev", "test"):
        spec["data"][split] = str((source.parent / spec["data"][split]).resolve())
    spec["models"] = {
        "target": {"model": "openai:target", "base_url": f"{target_url}/v1", **TARGET},
        "optimizer": {"model": "openai:optimizer", "base_url": f"{optimizer_url}/v1", **OPTIMIZER},
    }
    spec["search"].pop("budget", None)
    spec["search"].pop("params", None)
    path = folder / f"{task}.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


@dataclass
class Found:
    """What an anchor returned: its best instruction and demos (input, answer) in order."""

    instruction: str
    demos: list[tuple[str, str]]
    stopped_by: str | None = None
    """What ended GEPA's search early (its own metric-call budget is None)."""


def run_anchor(
    anchor: str,
    task: Any,
    seed: int,
    target_url: str,
    optimizer_url: str,
    optimizer_counter: CallCounter,
    args: argparse.Namespace,
) -> Found:
    """Run one DSPy optimizer on the task's train/dev splits; returns the best program's
    instruction and demos. `task` is a promptopt LoadedTask."""
    # A bench-only dependency, imported here (and typed as Any) so that promptopt and its
    # type checks never need it.
    dspy: Any = importlib.import_module("dspy")
    stops: list[str] = []

    from promptopt.scoring.metrics import build_metric

    metric_fn = build_metric(task.spec.metric, base_dir=task.path.parent)

    def lm(url: str, name: str, params: dict[str, Any]) -> Any:
        # litellm's OpenAI-compatible route, a dummy key (llama.cpp checks none), no cache.
        return dspy.LM(
            f"openai/{name}",
            api_base=url,
            api_key="dummy",
            cache=False,
            num_retries=1,
            # On 2 shared cores a 1.5B reply can take many minutes; a client that gives up
            # wastes the server's work and makes dspy.GEPA (which raises on errors) stop.
            timeout=3600,
            engine="litellm",
            **params,
        )

    target_lm = lm(target_url, "target", TARGET)
    optimizer_lm = lm(optimizer_url, "optimizer", OPTIMIZER)
    dspy.configure(lm=target_lm, max_errors=100_000)
    # No response cache in memory or on disk: every call the frameworks make reaches a server.
    dspy.configure_cache(enable_disk_cache=False, enable_memory_cache=False)

    class PlainAdapter(dspy.Adapter):  # type: ignore[misc]
        """promptopt's layout: system = instruction, demos as user/assistant turns, user =
        the input; the whole reply is the answer."""

        def format(
            self, signature: Any, demos: list[dict[str, Any]], inputs: dict[str, Any]
        ) -> list[dict[str, Any]]:
            messages = [{"role": "system", "content": signature.instructions}]
            for demo in demos:
                messages.append({"role": "user", "content": str(demo["input"])})
                messages.append({"role": "assistant", "content": str(demo["answer"])})
            messages.append({"role": "user", "content": str(inputs["input"])})
            return messages

        def parse(self, signature: Any, completion: str) -> dict[str, Any]:
            return {"answer": completion}

    initial = task.spec.system_prompt

    class Plain(dspy.Module):  # type: ignore[misc]
        """One predictor whose instruction is the system prompt."""

        def __init__(self) -> None:
            super().__init__()
            self.predict = dspy.Predict(dspy.Signature("input -> answer", instructions=initial))

        def forward(self, input: str) -> Any:
            # Only the target's calls use the plain layout; DSPy's proposer and reflection
            # keep their own adapters.
            with dspy.context(adapter=PlainAdapter()):
                return self.predict(input=input)

    by_input = {}
    for split in ("train", "dev"):
        for ex in task.split(split):
            by_input[task.render_input(ex)] = ex

    def to_dspy(split: str) -> list[Any]:
        return [
            dspy.Example(input=task.render_input(ex), answer=ex.targets[0]).with_inputs("input")
            for ex in task.split(split)
        ]

    def score(gold: Any, pred: Any) -> float:
        output = getattr(pred, "answer", None) or ""
        value = metric_fn(str(output), by_input[gold.input])
        if not isinstance(value, int | float):
            # A judge metric is async and calls a third model: not part of these benchmarks.
            raise TypeError(f"{task.spec.metric.type}: only synchronous metrics are supported")
        return float(value)

    def metric(gold: Any, pred: Any, trace: Any = None) -> float:
        return score(gold, pred)

    def feedback_metric(
        gold: Any, pred: Any, trace: Any = None, pred_name: Any = None, pred_trace: Any = None
    ) -> Any:
        value = score(gold, pred)
        output = str(getattr(pred, "answer", None) or "").strip()
        if value >= 1.0:
            text = f"Correct: the answer {output!r} matches the expected {gold.answer!r}."
        else:
            text = f"Wrong: the expected answer was {gold.answer!r}, the model said {output!r}."
        return dspy.Prediction(score=value, feedback=text)

    trainset, valset = to_dspy("train"), to_dspy("dev")
    program = Plain()
    log_dir = tempfile.mkdtemp(prefix=f"anchors-{anchor}-")
    if anchor in ("mipro", "mipro-demos"):
        demos = args.demos if anchor == "mipro-demos" else 0
        optimizer = dspy.MIPROv2(
            metric=metric,
            prompt_model=optimizer_lm,
            task_model=target_lm,
            auto="light",
            max_bootstrapped_demos=demos,
            max_labeled_demos=demos,
            num_threads=args.concurrency,
            max_errors=100_000,
            seed=seed,
            verbose=False,
        )
        best = optimizer.compile(program, trainset=trainset, valset=valset, seed=seed)
    elif anchor == "gepa":
        limit = int(args.optimizer_calls)
        deadline = time.monotonic() + 60 * float(args.max_search_minutes or "inf")
        stop_file = Path(log_dir) / "gepa.stop"
        print(f"GEPA: touch {stop_file} to end the search after this iteration", file=sys.stderr)

        def stop_at_optimizer_budget(state: Any) -> bool:
            # GEPA has no cap on reflection calls; this stops it before an iteration once the
            # optimizer budget is spent (one reflection call per iteration, re-asks counted),
            # or once the wall-clock limit is passed (a loaded machine: see BENCHMARKS.md).
            if optimizer_counter.count >= limit:
                stops.append("optimizer budget")
                return True
            if time.monotonic() >= deadline:
                stops.append("time limit")
                return True
            # GEPA's own graceful stop (it watches the same file); checked here first so the
            # row can say why the search ended.
            if stop_file.exists():
                stops.append("stop file")
                return True
            return False

        optimizer = dspy.GEPA(
            metric=feedback_metric,
            max_metric_calls=args.target_calls,
            reflection_lm=optimizer_lm,
            num_threads=args.concurrency,
            seed=seed,
            log_dir=log_dir,
            gepa_kwargs={"stop_callbacks": [stop_at_optimizer_budget]},
        )
        best = optimizer.compile(program, trainset=trainset, valset=valset)
    else:
        raise SystemExit(f"unknown anchor {anchor!r}; known: {', '.join(ANCHORS)}")
    predictor = best.predict
    found_demos = [(str(d["input"]), str(d["answer"])) for d in (predictor.demos or [])]
    return Found(str(predictor.signature.instructions), found_demos, stops[0] if stops else None)


def test_comparison(task: Any, found: Found, args: argparse.Namespace) -> dict[str, Any]:
    """promptopt's own test evaluation of the initial prompt and the anchor's best, paired."""
    from promptopt.app.evaluate import evaluate_prompt
    from promptopt.scoring.runtime import RuntimeOptions
    from promptopt.scoring.stats import compare
    from promptopt.task.prompt import Demo

    ids = {task.render_input(ex): ex.id for ex in task.split("train")}
    demos = [
        Demo(id=ids.get(text, f"demo-{i}"), input=text, output=answer)
        for i, (text, answer) in enumerate(found.demos)
    ]
    options = RuntimeOptions.for_task(
        task, concurrency=args.concurrency, cache_dir=args.cache_dir, no_cache=False, seed=0
    )

    async def both() -> tuple[Any, Any]:
        old = await evaluate_prompt(task, task.spec.system_prompt, split="test", options=options)
        new = await evaluate_prompt(
            task, found.instruction, split="test", options=options, demos=demos
        )
        return old.result, new.result

    old, new = asyncio.run(both())
    result = compare(old.scores, new.scores)
    calls = sum(r.usage.requests + r.usage.cache_hits for r in (old, new))
    return {
        "initial_test": old.score,
        "final_test": new.score,
        "comparison": {
            "delta": result.paired.delta,
            "ci95": [result.paired.ci_low, result.paired.ci_high],
            "mcnemar_p": result.mcnemar.p_value if result.mcnemar else None,
            "verdict": result.verdict,
        },
        "test_calls": calls,
        "demos": [d.to_json() for d in demos],
    }


def run_one(task_name: str, anchor: str, seed: int, args: argparse.Namespace) -> dict[str, Any]:
    """One anchor run on one task: search through the counting proxies, then the test."""
    from promptopt import load_task

    target_proxy, target_counter, target_url = start_proxy(args.target_url)
    optimizer_proxy, optimizer_counter, optimizer_url = start_proxy(args.optimizer_url)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            # Final evaluation goes straight to the target server (not through the proxy), so
            # the proxy's count is the search's alone.
            task = load_task(local_task(task_name, Path(tmp), args.target_url, args.optimizer_url))
            start = time.monotonic()
            found = run_anchor(
                anchor,
                task,
                seed,
                target_url,
                optimizer_url,
                optimizer_counter,
                args,
            )
            search_s = time.monotonic() - start
            initial = task.spec.system_prompt
            returned_initial = found.instruction.strip() == initial.strip() and not found.demos
            if returned_initial:
                # DSPy strips the prompt's trailing newline; an anchor that kept the initial
                # prompt is scored with it exactly, as promptopt's kept-initial runs are.
                found = Found(initial, [], found.stopped_by)
            scored = test_comparison(task, found, args)
            wall = time.monotonic() - start
    finally:
        for proxy in (target_proxy, optimizer_proxy):
            proxy.shutdown()
            proxy.server_close()
    return {
        "task": task_name,
        "anchor": anchor,
        "seed": seed,
        "initial_test": scored["initial_test"],
        "final_test": scored["final_test"],
        "comparison": scored["comparison"],
        "returned_initial": returned_initial,
        "target_calls_search": target_counter.count,
        "target_calls": target_counter.count + scored["test_calls"],
        "optimizer_calls": optimizer_counter.count,
        "target_budget": args.target_calls,
        "optimizer_budget": args.optimizer_calls,
        "stopped_by": found.stopped_by,
        "search_s": round(search_s, 1),
        "wall_s": round(wall, 1),
        "best_instruction": found.instruction,
        "demos": scored["demos"],
        "demos_k": args.demos if anchor == "mipro-demos" else 0,
        "versions": {p: _version(p) for p in ("dspy", "gepa", "litellm")},
    }


def anchor_label(row: dict[str, Any]) -> str:
    """The anchor as tables group it: mipro-demos with another k than the first runs' 4 is
    another anchor (rows from before `--demos` existed all had 4)."""
    k = row.get("demos_k", 4)
    if row["anchor"] == "mipro-demos" and k != 4:
        return f"mipro-demos (k={k})"
    return str(row["anchor"])


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def _mean(group: list[dict[str, Any]], key: str) -> float:
    return statistics.mean(float(r[key]) for r in group)


def table(rows: list[dict[str, Any]]) -> str:
    """A Markdown table: one line per task and anchor, seeds side by side."""
    out = [
        "| task | anchor | seeds | initial test | final test (mean, per seed) | gain, per seed "
        "[paired 95% CI] | significant gains | returned initial | target calls (search + "
        "test) | optimizer calls | wall (s) |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    ok = [r for r in rows if "error" not in r]
    for task, anchor in sorted({(r["task"], anchor_label(r)) for r in ok}):
        group = sorted(
            (r for r in ok if (r["task"], anchor_label(r)) == (task, anchor)),
            key=lambda r: r["seed"],
        )
        finals = [r["final_test"] for r in group]
        gains = "; ".join(
            f"{c['delta']:+.2f} [{c['ci95'][0]:+.2f}, {c['ci95'][1]:+.2f}]"
            for c in (r["comparison"] for r in group)
        )
        up = sum(1 for r in group if r["comparison"]["verdict"] == "improved")
        down = sum(1 for r in group if r["comparison"]["verdict"] == "regressed")
        same = sum(1 for r in group if r["returned_initial"])
        out.append(
            f"| {task} | {anchor} | {len(group)} | {group[0]['initial_test']:.2f} | "
            f"{statistics.mean(finals):.2f} ({', '.join(f'{x:.2f}' for x in finals)}) | "
            f"{gains} | {up} up, {down} down | {same} of {len(group)} | "
            f"{_mean(group, 'target_calls'):.0f} ({_mean(group, 'target_calls_search'):.0f} + "
            f"{_mean(group, 'target_calls') - _mean(group, 'target_calls_search'):.0f}) | "
            f"{_mean(group, 'optimizer_calls'):.0f} | {_mean(group, 'wall_s'):.0f} |"
        )
    for r in ok:
        if r.get("stopped_by"):
            out.append(
                f"\n{r['task']} {r['anchor']} seed {r['seed']}: search stopped early by the "
                f"{r['stopped_by']} after {r['optimizer_calls']} optimizer calls"
            )
    for r in rows:
        if "error" in r:
            out.append(f"\nfailed: {r['task']} {r['anchor']} seed {r['seed']}: {r['error'][-300:]}")
    return "\n".join(out)


def _quality_variant(row: dict[str, Any]) -> str:
    demos = row.get("demos") or 0
    name = f"{row['strategy']} + {demos} demos" if demos else str(row["strategy"])
    if row["strategy"] == "demos":
        name = f"demos alone, k = {demos or 4}"  # no instruction search: bench/quality.py
    sets = row.get("demo_sets")
    if demos and sets == "mixed":
        # Sets drawn as MIPROv2 draws them (all bootstrapped, all labelled, mixed), from
        # commit 6c451f7 on; rows without the field drew every set from bootstrapped ones.
        name += ", mixed sets"
    elif demos and sets == "mipro":
        # From session 8 on: the labelled set whatever bootstrapping found, and every set
        # filled from all pool examples it did not take bootstrapped, as MIPROv2 fills them.
        name += ", MIPROv2 sets"
    # Rows from before bench/quality.py recorded the count tried prompt.demos.candidates: 6.
    tried = row.get("demo_sets_tried") or row.get("demo_candidates")
    if (demos or row["strategy"] == "demos") and tried and tried != 6:
        name += f", {tried} sets tried"
    if row.get("demo_sets_alone"):
        name += f", {row['demo_sets_alone']} of one label alone"  # as bench/quality.py names it
    if row.get("search_calls", 500) != 500:
        # Another budget than the anchors' (500 search + 200 dev calls): not the same race.
        name += f" ({row['search_calls']}/{row.get('optimizer_budget')})"
    notes = ["served"] if row.get("endpoints") == "served" else []
    if not row.get("structured", True):
        notes.append("whole prompt edited")  # no protected output format, as the anchors
    if row.get("optimizer_max_tokens", 96) != 96 and row["strategy"] != "demos":
        notes.append(f"optimizer {row['optimizer_max_tokens']} tokens")  # the anchors': 512
    return f"{name} ({', '.join(notes)})" if notes else name


def head_to_head(anchor_rows: list[dict[str, Any]], quality_rows: list[dict[str, Any]]) -> str:
    """promptopt against the anchors, one line per task that has both: the default strategy
    (OPRO, chosen before these runs), promptopt's best strategy and the best anchor, each by
    its mean final test score over the seeds it ran."""
    out = [
        "| task | initial test | promptopt default: opro (seeds, mean, significant gains) | "
        "promptopt best (seeds, mean, significant gains) | best anchor (seeds, mean, "
        "significant gains) | best promptopt - best anchor |",
        "|---|---|---|---|---|---|",
    ]

    def groups(rows: list[dict[str, Any]], name: Any) -> dict[str, list[dict[str, Any]]]:
        # One row per seed: the same run recorded twice (a pinned count, then the same count
        # an unset one grew to) is not two seeds.
        found: dict[str, dict[int, dict[str, Any]]] = {}
        for r in rows:
            if "error" not in r:
                found.setdefault(name(r), {}).setdefault(r["seed"], r)
        return {key: list(seeds.values()) for key, seeds in found.items()}

    def cell(name: str, group: list[dict[str, Any]], final: str) -> str:
        up = sum(1 for r in group if r["comparison"]["verdict"] == "improved")
        return f"{name} ({len(group)}, {_mean(group, final):.2f}, {up} of {len(group)})"

    tasks = sorted({r["task"] for r in anchor_rows if "error" not in r})
    for task in tasks:
        mine = groups([r for r in quality_rows if r["task"] == task], _quality_variant)
        theirs = groups([r for r in anchor_rows if r["task"] == task], anchor_label)
        if not mine or not theirs:
            continue
        mine = {k: v for k, v in mine.items() if "/" not in k} or mine
        best_name = max(mine, key=lambda k: _mean(mine[k], "best_test"))
        anchor_name = max(theirs, key=lambda k: _mean(theirs[k], "final_test"))
        default = mine.get("opro")
        gap = _mean(mine[best_name], "best_test") - _mean(theirs[anchor_name], "final_test")
        out.append(
            f"| {task} | {mine[best_name][0]['initial_test']:.2f} (anchors' endpoint: "
            f"{theirs[anchor_name][0]['initial_test']:.2f}) | "
            f"{cell('opro', default, 'best_test') if default else 'not run'} | "
            f"{cell(best_name, mine[best_name], 'best_test')} | "
            f"{cell(anchor_name, theirs[anchor_name], 'final_test')} | {gap:+.2f} |"
        )
    return "\n".join(out)


def main() -> None:
    """Run the anchors (or print the table of earlier runs)."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tasks", nargs="+", default=list(TASKS))
    parser.add_argument("--anchors", nargs="+", default=list(ANCHORS), choices=ANCHORS)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument(
        "--target-calls",
        type=int,
        default=700,
        help="target calls before test: quality.py's 500 for the search + 200 for its dev gate "
        "(GEPA's max_metric_calls; MIPROv2 light has no such knob, see BENCHMARKS.md)",
    )
    parser.add_argument("--optimizer-calls", type=int, default=40)
    parser.add_argument(
        "--demos",
        type=int,
        default=4,
        help="mipro-demos: MIPROv2's max_bootstrapped_demos and max_labeled_demos",
    )
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument(
        "--max-search-minutes",
        type=float,
        default=None,
        help="GEPA only: stop its search after this long (MIPROv2 has no such hook)",
    )
    port_t, port_o = os.environ.get("TARGET_PORT", "18431"), os.environ.get("OPTIMIZER_PORT")
    parser.add_argument("--target-url", default=f"http://127.0.0.1:{port_t}")
    parser.add_argument("--optimizer-url", default=f"http://127.0.0.1:{port_o or '18432'}")
    parser.add_argument(
        "--results", type=Path, default=ROOT / "bench" / "results" / "anchors.jsonl"
    )
    parser.add_argument("--cache-dir", type=Path, default=Path("/tmp/anchors-test-cache"))
    parser.add_argument("--report", action="store_true", help="print the table and exit")
    parser.add_argument(
        "--compare",
        type=Path,
        nargs="+",
        metavar="QUALITY_JSONL",
        help="with --report: also promptopt's rows from bench/quality.py against the anchors",
    )
    args = parser.parse_args()
    if args.demos < 1:
        parser.error("--demos must be at least 1 (mipro is MIPROv2 without demos)")
    # The proxies and promptopt's client take the server's root; promptopt wants /v1 itself.
    args.target_url = args.target_url.rstrip("/").removesuffix("/v1")
    args.optimizer_url = args.optimizer_url.rstrip("/").removesuffix("/v1")
    args.results.parent.mkdir(parents=True, exist_ok=True)
    rows = (
        [json.loads(line) for line in args.results.read_text().splitlines() if line.strip()]
        if args.results.exists()
        else []
    )
    if not args.report:
        # DSPy's on-disk cache would otherwise live in the home folder and answer repeats.
        os.environ.setdefault("DSPY_CACHEDIR", tempfile.mkdtemp(prefix="anchors-dspy-cache-"))
        # litellm would try to download its price list at import; this machine is offline.
        os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
        for seed in args.seeds:
            for task in args.tasks:
                for anchor in args.anchors:
                    key = (task, anchor_label({"anchor": anchor, "demos_k": args.demos}), seed)
                    if any((r["task"], anchor_label(r), r["seed"]) == key for r in rows):
                        continue
                    try:
                        row = run_one(task, anchor, seed, args)
                    except Exception as exc:
                        row = {"task": task, "anchor": anchor, "seed": seed, "error": repr(exc)}
                        with args.results.with_suffix(".errors.jsonl").open("a") as handle:
                            handle.write(json.dumps(row) + "\n")
                        print(json.dumps(row), file=sys.stderr, flush=True)
                        continue
                    rows.append(row)
                    with args.results.open("a") as handle:
                        handle.write(json.dumps(row) + "\n")
                    print(
                        json.dumps({k: v for k, v in row.items() if k != "best_instruction"}),
                        file=sys.stderr,
                        flush=True,
                    )
    print(table(rows))
    if args.compare:
        quality = [
            json.loads(line)
            for path in args.compare
            for line in path.read_text().splitlines()
            if line.strip()
        ]
        print()
        print(head_to_head(rows, quality))


if __name__ == "__main__":
    main()
