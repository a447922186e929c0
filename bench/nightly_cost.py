"""What one nightly run of tasks/trec.yaml costs, three ways: plain, batch, batch + prompt caching.

Each run is a real `promptopt run` (the command line, in a child process) against the loopback
batch server (promptopt.testing.FakeBatchServer: chat completions, OpenAI's Batch API,
Anthropic's Messages API and Message Batches), with both roles given a real model name. The
dollars are promptopt's own accounting (summary.json), never estimated here.

A base_url on this machine is priced as free (your own hardware), so each model carries an
explicit `price:` taken from genai-prices (the library promptopt prices hosted models with);
under --batch promptopt charges half of it, which is the library's batch price for both models.

The server answers like a model would in size: the target a label, the optimizer one instruction
between <START> and <END>. It counts one token per whitespace-separated word. With
"batch + cache", Anthropic answers report cache writes and reads for the prefix promptopt marks
with cache_control (OpenAI's caching is automatic and the fake reports no cached tokens).

    .venv/bin/python bench/nightly_cost.py    # trec as it is: --budget 2000 --optimizer-budget 50
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from promptopt.llm.pricing import library_price
from promptopt.testing.fake_batch import FakeBatchServer

ROOT = Path(__file__).resolve().parent.parent
TREC = ROOT / "tasks" / "trec.yaml"
MODELS = (("openai", "gpt-4o-mini"), ("anthropic", "claude-haiku-4-5"))
MODES = ("plain", "batch", "batch + cache")
LABELS = ("Description", "Entity", "Expression", "Human", "Location", "Number")
PHRASES = (
    "Read the question and decide what kind of thing its answer names.",
    "Decide which category the answer to the question belongs to.",
    "Identify the type of the expected answer: a person, a place, a number, and so on.",
    "Classify the question by what its answer would be.",
)
TIPS = (
    "Questions asking who are Human.",
    "Questions asking where are Location.",
    "Questions asking how many, how much or when are Number.",
    "Questions asking what an abbreviation stands for are Expression.",
    "Questions asking what something is or why are Description.",
    "Questions naming an animal, a film, a colour or a product are Entity.",
    "Think about the answer, not the question word.",
    "When two labels fit, choose the more specific one.",
)


@dataclass(frozen=True)
class Outcome:
    """Cost of one run per role, with its calls and tokens."""

    provider: str
    model: str
    mode: str
    cost: dict[str, float]
    calls: dict[str, int]
    tokens: dict[str, tuple[int, int, int, int]]  # input, cache read, cache write, output
    batched: int = 0  # requests the server received inside batches
    batches: int = 0


def _gold() -> dict[str, str]:
    """Every trec question's label, by question text."""
    gold: dict[str, str] = {}
    for split in ("train", "dev", "test"):
        for line in (ROOT / "tasks" / "data" / "trec" / f"{split}.jsonl").read_text().splitlines():
            if line.strip():
                row = json.loads(line)
                gold[row["input"]] = row["target"]
    return gold


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(str(b.get("text", "")) for b in content if isinstance(b, dict))
    return ""


def _replier(gold: dict[str, str]) -> Any:
    def reply(body: dict[str, Any]) -> str:
        users = [m for m in body.get("messages") or [] if m.get("role") == "user"]
        question = _text(users[-1].get("content")) if users else ""
        # From the texts alone, so that the same request gets the same answer on every path
        # (chat completions, Messages, either batch service).
        texts = [_text(body.get("system"))]
        texts += [_text(m.get("content")) for m in body.get("messages") or []]
        digest = hashlib.sha256("\x00".join(t for t in texts if t).encode()).digest()
        if question in gold:
            # Right four times in five, so that candidates score differently.
            return gold[question] if digest[0] % 5 else LABELS[digest[1] % len(LABELS)]
        phrase = PHRASES[digest[2] % len(PHRASES)]
        tips = " ".join(TIPS[i % len(TIPS)] for i in sorted({digest[3], digest[4], digest[5]}))
        labels = ", ".join(LABELS)
        return (
            f"<START>{phrase} {tips} Answer with exactly one of: {labels}. Use Human for "
            f"people and "
            f"groups, Location for places, Number for counts, dates and amounts, Expression "
            f"for abbreviations, Entity for things, and Description for definitions, reasons "
            f"and manners.<END>"
        )

    return reply


def _price(provider: str, model: str) -> dict[str, float]:
    price = library_price(provider, None, model)
    if price is None:
        raise SystemExit(f"genai-prices has no price for {provider}:{model}")
    return {k: v for k, v in price.model_dump().items() if v is not None}


def _task(folder: Path, provider: str, model: str, base_url: str) -> Path:
    spec = yaml.safe_load(TREC.read_text())
    spec["data"] = {k: str((TREC.parent / v).resolve()) for k, v in spec["data"].items()}
    price = _price(provider, model)
    for role in ("target", "optimizer"):
        spec["models"][role].update(
            {"model": f"{provider}:{model}", "base_url": base_url, "price": price}
        )
    path = folder / "trec.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def _guide(words: int) -> str:
    """A label guide of about `words` words, long enough to pass a provider's caching minimum."""
    lines = ["Label guide:"]
    i = 0
    while sum(len(line.split()) for line in lines) < words:
        label = LABELS[i % len(LABELS)]
        tip = TIPS[i % len(TIPS)]
        lines.append(
            f"{i + 1}. Rule {i + 1} for {label}: {tip} Check the rule against the example."
        )
        i += 1
    return "\n".join(lines)


def _eval(args: argparse.Namespace, provider: str, model: str, mode: str) -> Outcome:
    """`promptopt eval` of trec's test split with the instruction plus a long label guide: a
    fixed prompt whose stable prefix is long enough for the provider to cache."""
    gold = _gold()
    with (
        tempfile.TemporaryDirectory() as tmp,
        FakeBatchServer(
            polls_to_end=1, reply=_replier(gold), prompt_caching=mode == "batch + cache"
        ) as server,
    ):
        folder = Path(tmp)
        base_url = server.base_url if provider == "openai" else server.anthropic_base_url
        task = _task(folder, provider, model, base_url)
        spec = yaml.safe_load(task.read_text())
        spec["prompt"] = spec["prompt"] + "\n" + _guide(args.guide_words)
        task.write_text(yaml.safe_dump(spec, sort_keys=False))
        command = [sys.executable, "-m", "promptopt", "eval", str(task), "--split", "test"]
        command += ["--cache-dir", str(folder / "cache"), "-j", str(args.concurrency), "--json"]
        if mode != "plain":
            command.append("--batch")
        env = {**os.environ, "OPENAI_API_KEY": "not-needed", "ANTHROPIC_API_KEY": "not-needed"}
        done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
        if done.returncode != 0:
            raise SystemExit(
                f"eval {provider} {mode}: exit {done.returncode}\n{done.stderr[-3000:]}"
            )
        result = json.loads(done.stdout)
        batched, batches = server.batched_requests, server.batch_submissions
    if args.keep:
        keep = args.keep / f"eval-{provider}-{mode.replace(' + ', '-')}.json"
        keep.parent.mkdir(parents=True, exist_ok=True)
        keep.write_text(done.stdout)
    return _outcome({"usage": {"target": result["usage"]}}, provider, model, mode, batched, batches)


def _run(args: argparse.Namespace, provider: str, model: str, mode: str) -> Outcome:
    gold = _gold()
    with (
        tempfile.TemporaryDirectory() as tmp,
        FakeBatchServer(
            polls_to_end=1, reply=_replier(gold), prompt_caching=mode == "batch + cache"
        ) as server,
    ):
        folder = Path(tmp)
        base_url = server.base_url if provider == "openai" else server.anthropic_base_url
        task = _task(folder, provider, model, base_url)
        command = [sys.executable, "-m", "promptopt", "run", str(task)]
        command += ["--out", str(folder / "runs"), "--cache-dir", str(folder / "cache")]
        command += ["--budget", str(args.budget), "--optimizer-budget", str(args.optimizer_budget)]
        command += ["-j", str(args.concurrency)]
        if mode != "plain":
            command.append("--batch")
        env = {**os.environ, "OPENAI_API_KEY": "not-needed", "ANTHROPIC_API_KEY": "not-needed"}
        done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
        summaries = list((folder / "runs").glob("*/summary.json"))
        if done.returncode != 0 or len(summaries) != 1:
            raise SystemExit(f"{provider} {mode}: exit {done.returncode}\n{done.stderr[-3000:]}")
        summary = json.loads(summaries[0].read_text())
        batched, batches = server.batched_requests, server.batch_submissions
        if args.keep:
            keep = args.keep / f"{provider}-{mode.replace(' + ', '-')}"
            keep.mkdir(parents=True, exist_ok=True)
            keep.joinpath("summary.json").write_text(summaries[0].read_text())
    return _outcome(summary, provider, model, mode, batched, batches)


def _outcome(
    summary: dict[str, Any], provider: str, model: str, mode: str, batched: int, batches: int
) -> Outcome:
    cost: dict[str, float] = {}
    calls: dict[str, int] = {}
    tokens: dict[str, tuple[int, int, int, int]] = {}
    for role, used in summary["usage"].items():
        cost[role] = float(used.get("cost_usd") or 0.0)
        calls[role] = int(used.get("requests", 0))
        tokens[role] = (
            int(used.get("input_tokens", 0)),
            int(used.get("cache_read_tokens", 0)),
            int(used.get("cache_write_tokens", 0)),
            int(used.get("output_tokens", 0)),
        )
    return Outcome(provider, model, mode, cost, calls, tokens, batched, batches)


def _table(outcomes: list[Outcome]) -> str:
    lines = [
        "| model (both roles) | way | target calls | target input tokens"
        " (of them cache read / written)"
        " / out | target $ | optimizer calls | optimizer $ | total $ | / plain |"
        " requests in batches (batches) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    plain: dict[str, float] = {}
    for o in outcomes:
        total = sum(o.cost.values())
        if o.mode == "plain":
            plain[o.model] = total
        base = plain.get(o.model)
        ratio = f"{total / base:.2f}" if base else "n/a"
        t_in, t_read, t_write, t_out = o.tokens.get("target", (0, 0, 0, 0))
        lines.append(
            f"| {o.model} | {o.mode} | {o.calls.get('target', 0)} | "
            f"{t_in} ({t_read} / {t_write}) / {t_out} | {o.cost.get('target', 0.0):.5f} | "
            f"{o.calls.get('optimizer', 0)} | {o.cost.get('optimizer', 0.0):.5f} | "
            f"{total:.5f} | {ratio} | {o.batched} ({o.batches}) |"
        )
    return "\n".join(lines)


def main() -> None:
    """Run trec plain, batched and batched with caching for each model; print the table."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--budget", type=int, default=2000, help="target calls (trec: 2000)")
    parser.add_argument("--optimizer-budget", type=int, default=50, help="(trec: 50)")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--keep", type=Path, help="copy each run's summary.json here")
    parser.add_argument(
        "--guide-words",
        type=int,
        default=3000,
        help="also evaluate trec's test split with a label guide of this many words appended "
        "to the instruction (0: not)",
    )
    args = parser.parse_args()
    for measure, title in ((_run, "promptopt run tasks/trec.yaml"), (_eval, "eval, long guide")):
        if measure is _eval and not args.guide_words:
            continue
        outcomes = []
        for provider, model in MODELS:
            for mode in MODES:
                outcome = measure(args, provider, model, mode)
                print(json.dumps(outcome.__dict__), file=sys.stderr, flush=True)
                outcomes.append(outcome)
        print(f"\n{title}\n")
        print(_table(outcomes))


if __name__ == "__main__":
    main()
