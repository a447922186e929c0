"""Quality of every strategy on the benchmark tasks with the embedded local models, at a fixed
budget, over several seeds: initial vs final held-out test score, the gain with its paired 95%
CI, target and optimizer calls, and wall time.

    .venv/bin/python bench/quality.py --seeds 0 1 2            # all tasks, all strategies
    .venv/bin/python bench/quality.py --report                 # table only

`--search-calls` and `--optimizer-calls` set the budget the search gets (the final dev/test
evaluation's calls come on top); strategies size their plans to it. `--structured` splits each
task's prompt into an instruction and its last line as a protected output format.

Each run is a real `promptopt run` in a subprocess. Results are appended to a JSONL file as they
finish (so a long benchmark can be stopped and resumed: finished runs are skipped), and a
Markdown table is printed at the end. One response cache is shared by all runs, so the initial
prompt's dev/test scores are paid for once per task.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
TASKS = ("trec", "sst2", "liar", "antonyms", "quickstart")
STRATEGIES = (
    "ape",
    "protegi",
    "opro",
    "evoprompt-ga",
    "evoprompt-de",
    "plum-hc",
    "plum-sa",
    "plum-tabu",
    "plum-ga",
    "promptbreeder",
)


def local_task(
    task: str,
    folder: Path,
    structured: bool = False,
    demos: int = 0,
    urls: tuple[str | None, str | None] = (None, None),
    optimizer_tokens: int = 96,
    demo_candidates: int | None = None,
) -> Path:
    """A copy of tasks/<task>.yaml that uses the local models, with absolute data paths;
    `urls` (target, optimizer) serve the same GGUF files over HTTP instead, as the anchors
    reach them (bench/anchors.py)."""
    source = ROOT / "tasks" / f"{task}.yaml"
    spec = yaml.safe_load(source.read_text())
    lines = str(spec["prompt"]).strip().splitlines()
    if structured and len(lines) > 1:
        spec["prompt"] = {"instruction": "\n".join(lines[:-1]), "output_format": lines[-1]}
    if demos:
        if not isinstance(spec["prompt"], dict):
            spec["prompt"] = {"instruction": str(spec["prompt"]).strip()}
        spec["prompt"]["demos"] = {"k": demos}
        if demo_candidates is not None:
            spec["prompt"]["demos"]["candidates"] = demo_candidates
    for split in ("train", "dev", "test"):
        spec["data"][split] = str((source.parent / spec["data"][split]).resolve())
    spec["models"] = {
        "target": {"model": "local:target", "temperature": 0, "max_tokens": 8},
        "optimizer": {
            "model": "local:optimizer",
            "temperature": 0.7,
            "max_tokens": optimizer_tokens,
        },
    }
    for role, url in zip(("target", "optimizer"), urls, strict=True):
        if url:
            # llama-cpp-python's server answers with its one model whatever the name; the
            # timeout is for a 1.5B model writing on 2 shared cores.
            spec["models"][role].update(model=f"openai:{role}", base_url=url, timeout_s=3600)
    spec["search"].pop("budget", None)
    spec["search"].pop("params", None)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{task}.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def run_one(
    task: str, strategy: str, seed: int, work: Path, cache: Path, args: argparse.Namespace
) -> dict[str, Any]:
    """One optimization; returns the summary plus what the table needs."""
    # Every benchmark task has 50 dev and 100 test examples: the finalists and the initial
    # prompt on dev, then initial and best on test, come on top of the search's calls.
    final = (args.finalists + 1) * 50 + 2 * 100
    budget = args.search_calls + final
    cmd = [
        str(ROOT / ".venv" / "bin" / "promptopt"),
        "run",
        str(
            local_task(
                task,
                # Kept run folders point at their task file: one per run, not one per task.
                Path(tempfile.mkdtemp(dir=work)) if args.keep_runs else work,
                args.structured,
                args.demos,
                (args.target_url, args.optimizer_url),
                args.optimizer_max_tokens,
                args.demo_candidates,
            )
        ),
        "--strategy",
        strategy,
        "--seed",
        str(seed),
        "--budget",
        str(budget),
        "--optimizer-budget",
        str(args.optimizer_calls),
        "--finalists",
        str(args.finalists),
        "-j",
        str(args.concurrency),
        "--cache-dir",
        str(cache),
        "--out",
        str(work / "runs"),
        "--json",
    ]
    start = time.monotonic()
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    wall = time.monotonic() - start
    if proc.returncode != 0:
        return {"task": task, "strategy": strategy, "seed": seed, "error": proc.stderr[-2000:]}
    summary = json.loads(proc.stdout)
    searched = bool(args.demos) or strategy == "demos"
    sets = demo_sets_tried(Path(summary["run_dir"])) if searched else None
    alone = demo_sets_alone(Path(summary["run_dir"])) if searched else 0
    return {
        "task": task,
        "strategy": strategy,
        "seed": seed,
        "search_calls": args.search_calls,
        "optimizer_budget": args.optimizer_calls,
        "structured": args.structured,
        "demos": args.demos,
        "demo_sets": "mipro" if args.demos else None,
        **({"demo_candidates": args.demo_candidates} if args.demo_candidates else {}),
        **({"demo_sets_tried": sets} if sets is not None else {}),
        **({"demo_sets_alone": alone} if alone else {}),
        "endpoints": "served" if args.target_url else "embedded",
        "optimizer_max_tokens": args.optimizer_max_tokens,
        "rejected": summary.get("rejected"),
        "initial_test": summary["scores"]["initial"]["test"],
        "best_test": summary["scores"]["best"]["test"],
        "comparison": summary.get("test_comparison"),
        "target_calls": summary["usage"]["target"]["requests"]
        + summary["usage"]["target"]["cache_hits"],
        "target_requests": summary["usage"]["target"]["requests"],
        "optimizer_calls": summary["usage"]["optimizer"]["requests"]
        + summary["usage"]["optimizer"]["cache_hits"],
        "wall_s": round(wall, 1),
        "best_prompt": summary["best_prompt"],
        "run_dir": summary["run_dir"],
    }


def demo_sets_tried(run_dir: Path) -> int:
    """How many demonstration sets the run tried (its `demos_plan` event; 0 when the search
    was skipped)."""
    for line in (run_dir / "events.jsonl").read_text().splitlines():
        event = json.loads(line)
        if event.get("event") == "demos_plan":
            return len(event["sets"])
    return 0


def demo_sets_alone(run_dir: Path) -> int:
    """How many of the sets tried showed one label alone (a target stuck on another label)."""
    ids = set()
    for line in (run_dir / "candidates.jsonl").read_text().splitlines():
        record = json.loads(line)
        if record.get("operator") == "demos" and (record.get("feedback") or {}).get("label"):
            ids.add(record["id"])
    return len(ids)


def variant(row: dict[str, Any]) -> str:
    """The strategy as the table names it, with the demos it searched and how the models were
    reached."""
    demos = row.get("demos") or 0
    name = f"{row['strategy']} + {demos} demos" if demos else str(row["strategy"])
    if row["strategy"] == "demos":
        # The demonstration search alone, for the initial instruction (no optimizer calls).
        name = f"demos alone, k = {demos or 4}"  # the strategy's own k without prompt.demos
    sets = row.get("demo_sets")
    if demos and sets == "mixed":
        # Sets drawn as MIPROv2 draws them (all bootstrapped, all labelled, mixed), from
        # commit 6c451f7 on; rows without the field drew every set from bootstrapped ones.
        name += ", mixed sets"
    elif demos and sets == "mipro":
        # From session 8 on: the labelled set whatever bootstrapping found, and every set
        # filled from all pool examples it did not take bootstrapped, as MIPROv2 fills them.
        name += ", MIPROv2 sets"
    # Rows from before the count was recorded tried prompt.demos.candidates, 6 unless set.
    tried = row.get("demo_sets_tried") or row.get("demo_candidates")
    if (demos or row["strategy"] == "demos") and tried and tried != 6:
        name += f", {tried} sets tried"
    if row.get("demo_sets_alone"):
        # From session 12 on, a target stuck on one label also gets sets of another label alone.
        name += f", {row['demo_sets_alone']} of one label alone"
    # Served rows reach the models over HTTP, as the anchors do: a separate setup. Without
    # --structured the whole prompt is edited (no protected output format), as the anchors edit.
    notes = ["served"] if row.get("endpoints") == "served" else []
    if not row.get("structured", True):
        notes.append("whole prompt edited")
    if row.get("optimizer_max_tokens", 96) != 96 and row["strategy"] != "demos":
        # Rows before the option gave the optimizer 96 tokens a reply; the anchors get 512.
        notes.append(f"optimizer {row['optimizer_max_tokens']} tokens")
    return f"{name} ({', '.join(notes)})" if notes else name


def table(rows: list[dict[str, Any]]) -> str:
    """The Markdown table of BENCHMARKS.md, one line per task and strategy."""
    out = [
        "| task | strategy | seeds | initial test | final test (mean, per seed) | gain, per seed "
        "[paired 95% CI] | significant gains | target calls | optimizer calls | wall (s) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    keys = sorted({(r["task"], variant(r)) for r in rows if "error" not in r})
    for task, strategy in keys:
        # One row per seed: a run recorded twice (a count pinned with --demo-candidates, and
        # later the same count an unset one grew to) is one run, not two seeds.
        by_seed = {
            r["seed"]: r
            for r in reversed(rows)
            if r["task"] == task and variant(r) == strategy and "error" not in r
        }
        group = sorted(by_seed.values(), key=lambda r: r["seed"])
        finals = [r["best_test"] for r in group]
        gains = []
        for r in group:
            c = r["comparison"]
            gains.append(f"{c['delta']:+.2f} [{c['ci95'][0]:+.2f}, {c['ci95'][1]:+.2f}]")
        wins = sum(1 for r in group if r["comparison"]["verdict"] == "improved")
        losses = sum(1 for r in group if r["comparison"]["verdict"] == "regressed")
        out.append(
            f"| {task} | {strategy} | {len(group)} | {group[0]['initial_test']:.2f} | "
            f"{statistics.mean(finals):.2f} ({', '.join(f'{x:.2f}' for x in finals)}) | "
            f"{'; '.join(gains)} | {wins} up, {losses} down | "
            f"{statistics.mean(r['target_calls'] for r in group):.0f} | "
            f"{statistics.mean(r['optimizer_calls'] for r in group):.0f} | "
            f"{statistics.mean(r['wall_s'] for r in group):.0f} |"
        )
    errors = [r for r in rows if "error" in r]
    for r in errors:
        out.append(f"\nfailed: {r['task']} {r['strategy']} seed {r['seed']}: {r['error'][-300:]}")
    return "\n".join(out)


def main() -> None:
    """Run the benchmark (or print the table of an earlier one)."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tasks", nargs="+", default=list(TASKS))
    parser.add_argument("--strategies", nargs="+", default=list(STRATEGIES))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--search-calls", type=int, default=500)
    parser.add_argument("--optimizer-calls", type=int, default=40)
    parser.add_argument("--finalists", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--structured", action="store_true")
    parser.add_argument("--demos", type=int, default=0, help="prompt.demos.k (0: none)")
    parser.add_argument(
        "--demo-candidates",
        type=int,
        default=None,
        help="prompt.demos.candidates (default: the task file's default)",
    )
    parser.add_argument(
        "--keep-runs",
        type=Path,
        default=None,
        help="a folder to keep every run folder in (default: a temporary one, removed)",
    )
    parser.add_argument(
        "--optimizer-max-tokens",
        type=int,
        default=96,
        help="the optimizer's max_tokens (bench/anchors.py gives its proposer 512)",
    )
    parser.add_argument(
        "--results", type=Path, default=ROOT / "bench" / "results" / "quality-v2.jsonl"
    )
    parser.add_argument("--cache-dir", type=Path, default=None)
    parser.add_argument(
        "--target-url",
        help="an OpenAI-compatible server with the target GGUF (../shared/tools/"
        "local-llm-servers.sh), instead of the embedded model",
    )
    parser.add_argument("--optimizer-url", help="likewise for the optimizer")
    parser.add_argument("--report", action="store_true", help="print the table and exit")
    args = parser.parse_args()
    if args.demo_candidates is not None and (args.demos < 1 or args.demo_candidates < 1):
        parser.error("--demo-candidates needs --demos K (K >= 1) and a count of at least 1")
    args.results.parent.mkdir(parents=True, exist_ok=True)
    done = (
        [json.loads(line) for line in args.results.read_text().splitlines() if line.strip()]
        if args.results.exists()
        else []
    )
    if not args.report:
        with tempfile.TemporaryDirectory() as tmp:
            work = args.keep_runs or Path(tmp)
            work.mkdir(parents=True, exist_ok=True)
            cache = args.cache_dir or work / "cache"
            for seed in args.seeds:
                for task in args.tasks:
                    for strategy in args.strategies:
                        if any(
                            (r["task"], r["strategy"], r["seed"]) == (task, strategy, seed)
                            and r.get("demos", 0) == args.demos
                            and r.get("demo_candidates") == args.demo_candidates
                            # The demos strategy's unset count follows the budget since
                            # 7d74483; rows without the count it tried came from before.
                            and (
                                strategy != "demos"
                                or args.demo_candidates is not None
                                or "demo_sets_tried" in r
                            )
                            and (not args.demos or r.get("demo_sets") == "mipro")
                            and r.get("structured", False) == args.structured
                            and r.get("optimizer_max_tokens", 96) == args.optimizer_max_tokens
                            and "error" not in r
                            for r in done
                        ):
                            continue
                        row = run_one(task, strategy, seed, work, cache, args)
                        if args.keep_runs is None:
                            row.pop("run_dir", None)
                        done.append(row)
                        with args.results.open("a") as handle:
                            handle.write(json.dumps(row) + "\n")
                        print(
                            json.dumps({k: v for k, v in row.items() if k != "best_prompt"}),
                            file=sys.stderr,
                            flush=True,
                        )
    print(table(done))


if __name__ == "__main__":
    main()
