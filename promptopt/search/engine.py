"""The search loop: budgets, stopping rules, checkpoints after every step, resume, and the
held-out final evaluation."""

from __future__ import annotations

import contextlib
import platform
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, replace
from importlib import metadata
from typing import Any, NoReturn

from promptopt import __version__
from promptopt.errors import BudgetExhausted, UsageError
from promptopt.llm.budget import BudgetCaps
from promptopt.llm.client import RoleUsage, RunStopped, estimate_tokens
from promptopt.llm.pricing import max_cost_usd
from promptopt.reporting.markdown import write_run_reports
from promptopt.run.folder import (
    BEST_PROMPT,
    CANDIDATES,
    CONFIG,
    EVENTS,
    FINAL_EVAL,
    SUMMARY,
    RunFolder,
)
from promptopt.scoring.runtime import Runtime, model_for_role
from promptopt.scoring.scorer import ExampleResult, build_messages
from promptopt.scoring.stats import compare, mean_ci
from promptopt.search.context import Candidate, Plan, SearchContext, StepReport, Strategy
from promptopt.search.meta_prompts import MetaPromptSet
from promptopt.task.loader import LoadedTask
from promptopt.task.modelspec import ModelSpec

# The longest instruction extraction accepts (promptopt.search.extract's default), in characters.
PROPOSAL_MAX_CHARS = 2000
# Tokens assumed for one optimizer request when estimating a plan's cost.
_META_PROMPT_TOKENS = 1500
_OPTIMIZER_OUTPUT_TOKENS = 512


@dataclass(frozen=True)
class StopRules:
    """When to stop searching, besides budgets and the strategy finishing."""

    max_steps: int | None = None
    patience: int | None = None
    target_score: float | None = None


@dataclass(frozen=True)
class RunSettings:
    """Everything about a run besides the task, as written to config.json."""

    strategy: str
    params: dict[str, Any]
    seed: int
    caps: BudgetCaps = field(default_factory=BudgetCaps)
    stop: StopRules = field(default_factory=StopRules)
    finalists: int = 3
    concurrency: int = 8

    def to_json(self) -> dict[str, Any]:
        """As stored in config.json."""
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RunSettings:
        """Inverse of `to_json`."""
        return cls(
            strategy=str(data["strategy"]),
            params=dict(data["params"]),
            seed=int(data["seed"]),
            caps=BudgetCaps(**data.get("caps", {})),
            stop=StopRules(**data.get("stop", {})),
            finalists=int(data.get("finalists", 3)),
            concurrency=int(data.get("concurrency", 8)),
        )


StepCallback = Callable[[SearchContext, StepReport, Runtime], None]
"""Called after every checkpointed step (the CLI shows progress with it)."""


def final_reserve(dev_n: int, test_n: int, finalists: int) -> int:
    """Target calls kept back from the search for the final evaluation: the finalists and the
    initial prompt on all of dev, then the initial and the best prompt on all of test."""
    return (finalists + 1) * dev_n + 2 * test_n


def search_caps(caps: BudgetCaps, reserve: int) -> BudgetCaps:
    """The caps the search itself runs under."""
    if caps.target_calls is None:
        return caps
    left = caps.target_calls - reserve
    if left <= 0:
        raise UsageError(
            f"budget.target_calls ({caps.target_calls}) is too small: the final evaluation "
            f"on dev and test alone needs {reserve} target calls; raise it or use smaller splits"
        )
    return BudgetCaps(
        target_calls=left, optimizer_calls=caps.optimizer_calls, cost_usd=caps.cost_usd
    )


@dataclass(frozen=True)
class DryRunPlan:
    """What `run --dry-run` prints: the most calls the run can make and their estimated cost."""

    target_calls: int
    optimizer_calls: int
    final_eval_calls: int
    estimated_cost_usd: float | None
    notes: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        """As printed by `run --dry-run --json`."""
        return asdict(self)


def plan_run(
    task: LoadedTask,
    settings: RunSettings,
    strategy_plan: Plan,
    prices: Mapping[str, Any],
) -> DryRunPlan:
    """The worst case of a run, without calling any model."""
    dev_n, test_n = len(task.splits.get("dev", ())), len(task.splits.get("test", ()))
    reserve = final_reserve(dev_n, test_n, settings.finalists)
    caps = settings.caps
    search = strategy_plan.target_calls
    if caps.target_calls is not None:
        search = min(search, caps.target_calls - reserve)
    optimizer = strategy_plan.optimizer_calls
    if caps.optimizer_calls is not None:
        optimizer = min(optimizer, caps.optimizer_calls)
    notes: list[str] = []
    cost: float | None = 0.0
    examples = task.splits.get("train", ()) or task.splits.get("dev", ())
    avg_input = (
        sum(len(task.render_input(e)) for e in examples) / len(examples) if examples else 0.0
    )
    for role, calls, tokens_in, default_out in (
        ("target", search + reserve, None, 16),
        ("optimizer", optimizer, _META_PROMPT_TOKENS, _OPTIMIZER_OUTPUT_TOKENS),
    ):
        spec: ModelSpec | None = model_for_role(task, role)
        if spec is None or calls <= 0:
            continue
        price = prices.get(role)
        if price is None:
            notes.append(f"no price known for {spec.model}: counted as $0")
            continue
        if tokens_in is None:
            message = {"role": "user", "content": task.spec.prompt + " " * int(avg_input)}
            tokens_in = estimate_tokens([message])  # type: ignore[list-item]
        out = spec.max_tokens or default_out
        assert cost is not None
        cost += calls * max_cost_usd(tokens_in, out, price)
    if caps.cost_usd is not None and cost is not None:
        cost = min(cost, caps.cost_usd)
    return DryRunPlan(search + reserve, optimizer, reserve, cost, tuple(notes))


def _ranking_best(ctx: SearchContext, ranking: tuple[str, ...], k: int) -> list[Candidate]:
    return [ctx.candidates[c] for c in ranking[:k] if c in ctx.candidates]


class Engine:
    """Runs one strategy on one task into one run folder."""

    def __init__(
        self,
        task: LoadedTask,
        runtime: Runtime,
        folder: RunFolder,
        settings: RunSettings,
        strategy: Strategy,
        meta_prompts: MetaPromptSet,
        *,
        on_step: StepCallback | None = None,
    ) -> None:
        self.task = task
        self.runtime = runtime
        self.folder = folder
        self.settings = settings
        self.strategy = strategy
        self.meta_prompts = meta_prompts
        self.on_step = on_step
        self._started = time.monotonic()
        self._prior_wall = 0.0
        self._done_steps = 0

    def _final_cost(self, calls: int, examples: tuple[Any, ...]) -> float:
        """A worst case of what the final evaluation's target calls cost: every prompt as long
        as an accepted proposal may be, every input as long as the longest one."""
        client = self.runtime.client("target")
        longest = max((self.task.render_input(e) for e in examples), key=len, default="")
        prompt = "x" * max(len(self.task.spec.prompt.encode("utf-8")), PROPOSAL_MAX_CHARS * 4)
        messages = build_messages(prompt, longest)
        params = client.spec.sampling_params()
        out = int(params.get("max_tokens") or params.get("max_completion_tokens") or 4096)
        return calls * max_cost_usd(estimate_tokens(messages), out, client.price)

    def write_config(self) -> None:
        """config.json: the resolved task, the options, versions and seed (no secrets)."""
        self.folder.write_json(
            CONFIG,
            {
                "task_path": str(self.task.path.resolve()),
                "task": self.task.spec.model_dump(mode="json"),
                "task_hash": self.task.task_hash,
                "data_hash": self.task.data_hash,
                "settings": self.settings.to_json(),
                "promptopt_version": __version__,
                "versions": _versions(),
            },
        )

    def _load_progress(self) -> None:
        """On resume: how many steps the killed run had checkpointed, and its wall time."""
        steps = [e for e in self.folder.read_jsonl(EVENTS) if e.get("event") == "step"]
        self._done_steps = len(steps)
        summary = self.folder.read_json(SUMMARY) or {}
        self._prior_wall = float(summary.get("wall_s", 0.0))

    def _wall(self) -> float:
        return self._prior_wall + time.monotonic() - self._started

    def _usage(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for role in ("target", "optimizer"):
            client = self.runtime.clients.get(role)
            out[role] = (client.usage if client else RoleUsage()).to_json()
        judge = self.runtime.clients.get("judge")
        if judge is not None:
            out["judge"] = judge.usage.to_json()
        return out

    def _checkpoint(
        self, ctx: SearchContext, report: StepReport | None, status: str, write: bool
    ) -> None:
        if write:
            events = list(ctx.pending_events)
            if report is not None:
                events.append(
                    {
                        "step": ctx.step,
                        "event": "step",
                        "name": report.name,
                        "ranking": list(report.ranking[:10]),
                        "best_score": report.best_score,
                        "detail": dict(report.detail),
                        "calls": dict(self.runtime.ledger.calls),
                        "cost_usd": round(self.runtime.ledger.spent_usd, 8),
                    }
                )
            self.folder.append_jsonl(
                CANDIDATES, [ctx.candidates[c].to_record() for c in sorted(ctx.changed)]
            )
            best = ctx.candidates[report.ranking[0]] if report and report.ranking else None
            if best is not None:
                self.folder.write_text(BEST_PROMPT, best.text + "\n")
            self.folder.write_json(SUMMARY, self._summary(ctx, status, None, None, best))
            # Last: the "step" event is what a resume counts as done.
            self.folder.append_jsonl(EVENTS, events)
        ctx.pending_events.clear()
        ctx.changed.clear()

    def _save_interrupted(self, ctx: SearchContext, last: StepReport) -> NoReturn:
        """Save what a resume needs and stop. The partial step's events and score updates are
        dropped: the resumed run redoes that step (from the journal) and writes them then."""
        ctx.pending_events.clear()
        ctx.changed.clear()
        best = ctx.candidates.get(last.ranking[0]) if last.ranking else None
        self.folder.write_json(
            SUMMARY, self._summary(ctx, "interrupted", "interrupted", None, best)
        )
        raise RunStopped(f"interrupted; resume with: promptopt run --resume {self.folder.path}")

    def _summary(
        self,
        ctx: SearchContext,
        status: str,
        stop_reason: str | None,
        final: dict[str, Any] | None,
        best: Candidate | None,
    ) -> dict[str, Any]:
        initial = ctx.candidates["c0000"]
        best = best or initial
        scores: dict[str, Any] = {
            "initial": {"dev": initial.mean("dev"), "test": None},
            "best": {"dev": best.mean("dev"), "test": None},
        }
        summary: dict[str, Any] = {
            "run_dir": str(self.folder.path),
            "task": self.task.spec.name,
            "strategy": self.settings.strategy,
            "seed": self.settings.seed,
            "initial_prompt": initial.text,
            "best_prompt": best.text,
            "best_id": best.id,
            "scores": scores,
            "usage": self._usage(),
            "wall_s": round(self._wall(), 3),
            "status": status,
            "stop_reason": stop_reason,
            "steps": ctx.step - 1,
            "candidates": len(ctx.candidates),
            "models": {
                role: {"model": c.spec.model, "reported": sorted(c.reported_models)}
                for role, c in self.runtime.clients.items()
            },
            "promptopt_version": __version__,
        }
        if final is not None:
            scores["initial"]["test"] = final["initial_test"]
            scores["best"]["test"] = final["best_test"]
            summary["n"] = final["n"]
            summary["ci95"] = final["ci95"]
            summary["test_comparison"] = final["comparison"]
        return summary

    async def run(self, *, resume: bool = False) -> dict[str, Any]:
        """Search, evaluate the best prompt on held-out test, write everything; return the
        summary. Raises RunStopped after saving when a stop was requested."""
        dev = self.task.split("dev")
        test = self.task.split("test")
        reserve = final_reserve(len(dev), len(test), self.settings.finalists)
        ledger = self.runtime.ledger
        caps = search_caps(self.settings.caps, reserve)
        if caps.cost_usd is not None:
            left = caps.cost_usd - self._final_cost(reserve, dev + test)
            if left <= 0:
                raise UsageError(
                    f"the cost cap (${caps.cost_usd}) does not cover the worst case of the final "
                    "evaluation on dev and test; raise it, or set the target's max_tokens"
                )
            caps = replace(caps, cost_usd=left)
        ledger.caps = caps
        if resume:
            self._load_progress()
        else:
            self.write_config()
        ctx = SearchContext(
            train=self.task.splits.get("train", ()),
            dev=dev,
            scorer=self.runtime.scorer,
            optimizer=lambda: self.runtime.client("optimizer"),
            ledger=ledger,
            meta_prompts=self.meta_prompts,
            rng=random.Random(self.settings.seed),
            render_input=self.task.render_input,
            task_description=self.task.spec.description or "",
        )
        initial = ctx.add_candidate(self.task.spec.prompt, operator="initial")
        assert initial is not None
        ctx.step = 1
        if resume:
            self.folder.append_jsonl(
                EVENTS,
                [
                    {
                        "step": self._done_steps,
                        "event": "resumed",
                        "replayed_steps": self._done_steps,
                    }
                ],
            )
        last = StepReport("initial", (initial.id,))
        best_score: float | None = None
        stale = 0
        stop_reason = "finished"
        interrupted = False
        async with contextlib.aclosing(self.strategy.search(ctx, initial)) as steps:
            try:
                async for report in steps:
                    last = report
                    # ctx.step is the step that just ended; what it recorded carries its number.
                    self._checkpoint(ctx, report, "running", ctx.step > self._done_steps)
                    if self.on_step is not None:
                        self.on_step(ctx, report, self.runtime)
                    completed = ctx.step
                    ctx.step += 1
                    score = report.best_score
                    if score is not None and (best_score is None or score > best_score + 1e-12):
                        best_score, stale = score, 0
                    else:
                        stale += 1
                    rules = self.settings.stop
                    if rules.max_steps is not None and completed >= rules.max_steps:
                        stop_reason = "max_steps"
                        break
                    if rules.patience is not None and stale >= rules.patience:
                        stop_reason = "patience"
                        break
                    if (
                        rules.target_score is not None
                        and best_score is not None
                        and best_score >= rules.target_score
                    ):
                        stop_reason = "target_score"
                        break
            except BudgetExhausted as exc:
                stop_reason = "budget"
                ctx.event("budget_exhausted", message=str(exc))
            except RunStopped:
                interrupted = True
        if interrupted:
            self._save_interrupted(ctx, last)
        ctx.event("search_done", stop_reason=stop_reason)
        ledger.caps = self.settings.caps
        try:
            final, best = await self._final(ctx, last, initial, dev, test)
        except RunStopped:
            self._save_interrupted(ctx, last)
        except BudgetExhausted as exc:
            ctx.event("budget_exhausted", message=str(exc), phase="final")
            # Nothing was proven on dev, so the initial prompt stays the answer.
            final, best = None, initial
            stop_reason = "budget"
        self.folder.append_jsonl(EVENTS, ctx.pending_events)
        self.folder.append_jsonl(
            CANDIDATES, [ctx.candidates[c].to_record() for c in sorted(ctx.changed)]
        )
        summary = self._summary(ctx, "finished", stop_reason, final, best)
        self.folder.write_text(BEST_PROMPT, best.text + "\n")
        self.folder.write_json(SUMMARY, summary)
        write_run_reports(self.folder)
        return summary

    async def _final(
        self,
        ctx: SearchContext,
        last: StepReport,
        initial: Candidate,
        dev: tuple[Any, ...],
        test: tuple[Any, ...],
    ) -> tuple[dict[str, Any], Candidate]:
        """Choose the best prompt on all of dev, then score it and the initial one on test."""
        finalists = _ranking_best(ctx, last.ranking, self.settings.finalists)
        if initial not in finalists:
            finalists.append(initial)
        dev_results: dict[str, list[ExampleResult]] = {}
        for cand in finalists:
            dev_results[cand.id] = await ctx.score(cand, dev, "dev")
        # The initial prompt wins ties: a new prompt must be better on dev to replace it.
        best = max(finalists, key=lambda c: (c.mean("dev") or 0.0, c is initial))
        ctx.event(
            "final_dev",
            finalists={c.id: c.mean("dev") for c in finalists},
            best=best.id,
        )
        initial_test = await ctx.score(initial, test, "test")
        best_test = initial_test if best is initial else await ctx.score(best, test, "test")
        old = [r.score for r in initial_test]
        new = [r.score for r in best_test]
        comparison = compare(old, new, seed=self.settings.seed)
        self.folder.write_json(
            FINAL_EVAL,
            {
                "examples": {
                    split: [
                        {"id": e.id, "input": self.task.render_input(e), "targets": list(e.targets)}
                        for e in exs
                    ]
                    for split, exs in (("dev", dev), ("test", test))
                },
                "initial": {
                    "id": initial.id,
                    "dev": [_result_json(r) for r in dev_results[initial.id]],
                    "test": [_result_json(r) for r in initial_test],
                },
                "best": {
                    "id": best.id,
                    "dev": [_result_json(r) for r in dev_results[best.id]],
                    "test": [_result_json(r) for r in best_test],
                },
            },
        )
        final = {
            "initial_test": initial.mean("test"),
            "best_test": best.mean("test"),
            "n": {"dev": len(dev), "test": len(test)},
            "ci95": {
                "initial_test": list(mean_ci(old, seed=self.settings.seed)[1:]),
                "best_test": list(mean_ci(new, seed=self.settings.seed)[1:]),
            },
            "comparison": {
                "delta": comparison.paired.delta,
                "ci95": [comparison.paired.ci_low, comparison.paired.ci_high],
                "mcnemar_p": comparison.mcnemar.p_value if comparison.mcnemar else None,
                "verdict": comparison.verdict,
            },
        }
        return final, best


def _versions() -> dict[str, str | None]:
    """Python and the packages whose behaviour a run's results depend on."""
    out: dict[str, str | None] = {"python": platform.python_version(), "promptopt": __version__}
    for package in ("openai", "anthropic", "httpx2", "llama-cpp-python", "numpy"):
        try:
            out[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            out[package] = None
    return out


def _result_json(r: ExampleResult) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": r.id,
        "output": r.output,
        "score": r.score,
        "latency_s": round(r.latency_s, 4),
    }
    if r.error:
        out["error"] = r.error
    return out
