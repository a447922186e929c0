"""The search loop: budgets, stopping rules, checkpoints after every step, resume, and the
held-out final evaluation."""

from __future__ import annotations

import asyncio
import contextlib
import math
import platform
import random
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from importlib import metadata
from typing import Any, NoReturn

from promptopt.errors import BudgetExhausted
from promptopt.llm.client import ModelClient, RoleUsage, RunStopped
from promptopt.llm.embeddings import EmbeddingClient
from promptopt.llm.error_budget import TooManyErrors
from promptopt.run.folder import (
    BEST_DEMOS,
    BEST_PROMPT,
    CANDIDATES,
    CONFIG,
    EVENTS,
    FINAL_EVAL,
    SUMMARY,
    RunFolder,
)
from promptopt.run.records import (
    SCHEMA_VERSION,
    ComparisonRecord,
    ConfigRecord,
    EventRecord,
    ExampleRecord,
    FinalEvalRecord,
    ModelUsed,
    PairRecord,
    PreferenceEvalRecord,
    ResultRecord,
    ScoresRecord,
    SettingsRecord,
    SideRecord,
    SplitScores,
    SummaryRecord,
    UsageRecord,
)
from promptopt.scoring.preference import DEFAULT_RUBRIC, Choice, Comparator, JudgeComparator
from promptopt.scoring.runtime import Runtime
from promptopt.scoring.scorer import ExampleResult
from promptopt.scoring.stats import WinRate, compare, mean_ci, win_rate
from promptopt.search.context import Candidate, SearchContext, StepReport, Strategy
from promptopt.search.demos import DEMOS_STRATEGY, NO_SEARCH, DemoSizing, search_demos
from promptopt.search.meta_prompts import MetaPromptSet
from promptopt.search.plan import (
    FinalEvalCost,
    RunSettings,
    cost_left_for_search,
    demo_cost_share,
    final_eval_cost,
    final_reserve,
    initial_system_prompt,
    run_judge_reserve,
    search_caps,
    search_sizes,
    target_call_max_cost_usd,
    task_demo_sizing,
)
from promptopt.search.state import SearchState
from promptopt.task.example import Example
from promptopt.task.loader import LoadedTask
from promptopt.version import __version__

StepCallback = Callable[[SearchContext, StepReport, Runtime], None]
"""Called after every checkpointed step (the CLI shows progress with it)."""


def _finalists(
    state: SearchState, ranking: tuple[str, ...], k: int, initial: Candidate
) -> list[Candidate]:
    """The strategy's top k prompts other than the initial one, in its order: the initial prompt
    is scored at the gate anyway, so it does not take a finalist's place."""
    ranked = [state.candidates[c] for c in ranking if c in state.candidates]
    return [c for c in ranked if c is not initial][:k]


@dataclass(frozen=True)
class FinalScores:
    """What the final evaluation adds to the summary."""

    initial_test: float | None
    best_test: float | None
    test_errors: int
    dev_errors: int
    n: dict[str, int]
    ci95: dict[str, tuple[float, float]] | None
    comparison: ComparisonRecord | None
    test_preference: PreferenceEvalRecord | None = None
    dev_preference: PreferenceEvalRecord | None = None


@dataclass(frozen=True)
class Judged:
    """Best against initial on one split, judged pairwise."""

    rate: WinRate | None
    """None when no input got a preference (every pair skipped)."""
    pairs: list[PairRecord]
    source: str

    def record(self) -> PreferenceEvalRecord | None:
        """The summary's record of it."""
        if self.rate is None:
            return None
        r = self.rate
        return PreferenceEvalRecord(
            source=self.source,
            n=r.n,
            wins=r.wins,
            losses=r.losses,
            ties=r.ties,
            win_rate=round(r.rate, 6),
            ci95=(round(r.ci_low, 6), round(r.ci_high, 6)),
            sign_p=r.sign_p,
            verdict=r.verdict,
        )

    @property
    def best_preferred(self) -> bool:
        """The best prompt's answers won more often than they lost."""
        return self.rate is not None and self.rate.wins > self.rate.losses


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
        comparator: Comparator | None = None,
        on_final: Callable[[], None] | None = None,
    ) -> None:
        self.task = task
        if comparator is None and settings.params.get("feedback") == "judge":
            # The search's judge also judges the final win rate, with the same rubric.
            rubric = settings.params.get("rubric") or DEFAULT_RUBRIC
            comparator = JudgeComparator(runtime.judge, str(rubric), task.spec.description)
        # Told when the search is over and the final dev and test evaluation begins.
        self.on_final = on_final
        self.comparator = comparator
        self.runtime = runtime
        self.folder = folder
        self.settings = settings
        self.strategy = strategy
        self.meta_prompts = meta_prompts
        self.on_step = on_step
        self._started = time.monotonic()
        self._prior_wall = 0.0
        self._done_steps = 0
        # Rejected proposals by reason, over the events written so far (summary.json).
        self._rejected: Counter[str] = Counter()

    def _count_rejected(self, events: Iterable[Mapping[str, Any]]) -> None:
        self._rejected.update(str(e.get("reason")) for e in events if e.get("event") == "rejected")

    def _final_cost(self) -> FinalEvalCost:
        """What the final evaluation's target calls cost, by the prompt they score."""
        client = self.runtime.client("target")
        return final_eval_cost(
            self.task,
            client.spec,
            client.price,
            self.settings.finalists,
            self.settings.initial_demos,
        )

    def _demo_share(self, sizing: DemoSizing, left: float) -> tuple[float, DemoSizing]:
        """Dollars kept back for the demonstration step out of the search's `left`, and the
        step they pay for (`demo_cost_share`)."""
        client = self.runtime.client("target")
        per_call = target_call_max_cost_usd(
            self.task, client.spec, client.price, self.settings.initial_demos
        )
        train = search_sizes(self.task, self.settings)["train"]
        return demo_cost_share(self.task, sizing, left, per_call, train)

    def _search_cost_cap(self, state: SearchState, final: FinalEvalCost) -> float:
        """The search's share of the cost cap once the final evaluation of its longest
        candidate so far is set aside: proposals longer than the task's prompt cost more to
        evaluate, so the share shrinks as they appear (never below what is spent: the next
        request then stops the search)."""
        cap = self.settings.caps.cost_usd
        assert cap is not None
        longest = max(
            (state.layout.render(c.text) for c in state.candidates.values()),
            key=lambda text: len(text.encode("utf-8")),
        )
        return max(0.0, cap - final.usd(longest))

    def _affordable(
        self, state: SearchState, initial: Candidate, finalists: list[Candidate]
    ) -> list[Candidate]:
        """The finalists whose final evaluation the cost cap still covers, best ranked first.

        The search's share of the cap is set after each step for the longest candidate so
        far, but a step can end with a longer one; rather than run out of money halfway through
        the final evaluation (which then proves nothing), a finalist it cannot pay for is left
        out, with an event saying so."""
        cap = self.settings.caps.cost_usd
        if cap is None or not finalists:
            return finalists
        client = self.runtime.client("target")
        left = cap - self.runtime.ledger.spent_usd
        kept: list[Candidate] = []
        for cand in finalists:
            prompts = [state.layout.render(c.text) for c in (initial, *kept, cand)]
            longest = max(prompts, key=lambda text: len(text.encode("utf-8")))
            cost = final_eval_cost(
                self.task, client.spec, client.price, len(kept) + 1, self.settings.initial_demos
            )
            if cost.usd(longest) <= left:
                kept.append(cand)
        if len(kept) < len(finalists):
            ids = {c.id for c in kept}
            state.event(
                "finalists_left_out",
                left_out=[c.id for c in finalists if c.id not in ids],
                reason="the cost cap does not cover their final evaluation",
            )
        return kept

    def _spent_usd(self) -> float | None:
        """Dollars spent so far, or None when a model's price is unknown (not a false $0)."""
        if any(client.price is None for client in self.runtime.clients.values()):
            return None
        if self.runtime.embedding is not None and not self.runtime.embedding.usage.cost_known:
            return None
        return round(self.runtime.ledger.spent_usd, 8)

    def write_config(self) -> None:
        """config.json: the resolved task, the options, versions and seed (no secrets)."""
        self.folder.write_record(
            CONFIG,
            ConfigRecord(
                schema_version=SCHEMA_VERSION,
                task_path=str(self.task.path.resolve()),
                task=self.task.spec.model_dump(mode="json"),
                task_hash=self.task.task_hash,
                data_hash=self.task.data_hash,
                settings=SettingsRecord.model_validate(self.settings.to_json()),
                promptopt_version=__version__,
                versions=_versions(),
            ),
        )

    def _load_progress(self) -> None:
        """On resume: how many steps the killed run had checkpointed, and its wall time."""
        events = self.folder.events()
        self._done_steps = sum(1 for e in events if e.event == "step")
        self._count_rejected(e.to_json() for e in events)
        summary = self.folder.summary()
        self._prior_wall = summary.wall_s if summary is not None else 0.0

    def _wall(self) -> float:
        return self._prior_wall + time.monotonic() - self._started

    def _usage(self) -> dict[str, UsageRecord]:
        out: dict[str, UsageRecord] = {}
        for role in ("target", "optimizer"):
            client = self.runtime.clients.get(role)
            out[role] = UsageRecord.model_validate(
                (client.usage if client else RoleUsage()).to_json()
            )
        judge = self.runtime.clients.get("judge")
        if judge is not None:
            out["judge"] = UsageRecord.model_validate(judge.usage.to_json())
        embedding = self.runtime.embedding
        if embedding is not None:
            out["embedding"] = UsageRecord.model_validate(embedding.usage.to_json())
        return out

    def _models_used(self) -> dict[str, ModelUsed]:
        clients: dict[str, ModelClient | EmbeddingClient] = dict(self.runtime.clients)
        if self.runtime.embedding is not None:
            clients["embedding"] = self.runtime.embedding
        return {
            role: ModelUsed(model=c.spec.model, reported=sorted(c.reported_models))
            for role, c in clients.items()
        }

    def _checkpoint(
        self, state: SearchState, report: StepReport | None, status: str, write: bool
    ) -> None:
        events, changed = state.take_step()
        if write:
            self._count_rejected(events)
            if report is not None:
                step = EventRecord(
                    step=state.step,
                    event="step",
                    name=report.name,
                    ranking=list(report.ranking[:10]),
                    best_score=report.best_score,
                    detail=dict(report.detail),
                    calls=dict(self.runtime.ledger.calls),
                    cost_usd=self._spent_usd(),
                )
                events.append(step.to_json())
            self.folder.append_records(CANDIDATES, [c.to_record() for c in changed])
            best = state.candidates[report.ranking[0]] if report and report.ranking else None
            if best is not None:
                self._write_best(state, best)
            self.folder.write_record(SUMMARY, self._summary(state, status, None, None, best))
            # Last: the "step" event is what a resume counts as done.
            self.folder.append_jsonl(EVENTS, events)

    def _save_interrupted(self, state: SearchState, last: StepReport) -> NoReturn:
        """Save what a resume needs and stop. The partial step's events and score updates are
        dropped: the resumed run redoes that step (from the journal) and writes them then."""
        state.discard_step()
        best = state.candidates.get(last.ranking[0]) if last.ranking else None
        self.folder.write_record(
            SUMMARY, self._summary(state, "interrupted", "interrupted", None, best)
        )
        raise RunStopped(f"interrupted; resume with: promptopt run --resume {self.folder.path}")

    def _save_failed(self, state: SearchState, last: StepReport, exc: TooManyErrors) -> NoReturn:
        """Save what a resume needs, keeping the best candidate the finished steps found, and
        stop: no score that errors decided becomes a result. Transient failures are not in
        the journal, so the resumed run sends those requests again."""
        state.discard_step()
        best = state.candidates.get(last.ranking[0]) if last.ranking else None
        self.folder.write_record(SUMMARY, self._summary(state, "failed", "errors", None, best))
        raise TooManyErrors(
            f"{exc}; the run stopped and is saved: once the endpoint works, continue it with "
            f"promptopt run --resume {self.folder.path}"
        ) from exc

    def _summary(
        self,
        state: SearchState,
        status: str,
        stop_reason: str | None,
        final: FinalScores | None,
        best: Candidate | None,
    ) -> SummaryRecord:
        initial = state.candidates["c0000"]
        best = best or initial
        layout = state.layout
        summary = SummaryRecord(
            schema_version=SCHEMA_VERSION,
            run_dir=str(self.folder.path),
            task=self.task.spec.name,
            strategy=self.settings.strategy,
            seed=self.settings.seed,
            # What a user deploys: the full system prompt, output format included.
            initial_prompt=layout.render(initial.text),
            best_prompt=layout.render(best.text),
            initial_instruction=initial.text if layout.structured else None,
            best_instruction=best.text if layout.structured else None,
            best_id=best.id,
            scores=ScoresRecord(
                initial=SplitScores(dev=initial.mean("dev")),
                best=SplitScores(dev=best.mean("dev")),
            ),
            usage=self._usage(),
            wall_s=round(self._wall(), 3),
            status=status,
            stop_reason=stop_reason,
            steps=state.step - 1,
            candidates=len(state.candidates),
            models=self._models_used(),
            promptopt_version=__version__,
            rejected=dict(sorted(self._rejected.items())),
            best_demos=(
                [d.id for d in layout.sent_demos(best.demos)]
                if self._searches_demos(state)
                else None
            ),
            initial_demos=[d.id for d in layout.fixed_demos] or None,
            metric_errors=self.runtime.scorer.metric_errors.failed,
        )
        if final is not None:
            summary.test_errors = final.test_errors
            summary.dev_errors = final.dev_errors
            summary.scores.initial.test = final.initial_test
            summary.scores.best.test = final.best_test
            summary.n = final.n
            summary.ci95 = final.ci95
            summary.test_comparison = final.comparison
            summary.test_preference = final.test_preference
            summary.dev_preference = final.dev_preference
        return summary

    async def run(self, *, resume: bool = False) -> SummaryRecord:
        """Search, evaluate the best prompt on held-out test, write everything; return the
        summary. Raises RunStopped after saving when a stop was requested."""
        dev = self.task.split("dev")
        test = self.task.split("test")
        reserve = final_reserve(len(dev), len(test), self.settings.finalists)
        ledger = self.runtime.ledger
        caps = search_caps(self.settings.caps, reserve, run_judge_reserve(self.task, self.settings))
        demo_sizing = task_demo_sizing(self.task, self.settings)
        search_caps_all = caps
        final_cost = self._final_cost() if caps.cost_usd is not None else None
        demo_usd = 0.0
        if caps.cost_usd is not None and final_cost is not None:
            left = cost_left_for_search(
                caps.cost_usd, final_cost.usd(initial_system_prompt(self.task))
            )
            # Dollars too are set aside for the demonstration step, or a search that spends
            # all it may leaves it nothing (with a cost cap alone, it always did).
            demo_usd, demo_sizing = self._demo_share(demo_sizing, left)
            caps = replace(caps, cost_usd=left - demo_usd)
            search_caps_all = replace(search_caps_all, cost_usd=left)
        if demo_sizing.target_calls and caps.target_calls is not None:
            # The demonstration step after the instruction search has its calls set aside, so
            # that a search that spends all it may still leaves the demonstrations theirs.
            caps = replace(caps, target_calls=caps.target_calls - demo_sizing.target_calls)
        ledger.caps = caps
        if resume:
            self._load_progress()
        else:
            self.write_config()
        # The initial prompt's own demonstrations carry their answers: no candidate is scored
        # on them, or every prompt sent with them would look right there.
        shown = {d.id for d in self.settings.initial_demos}
        state = SearchState(
            train=[e for e in self.task.splits.get("train", ()) if e.id not in shown],
            dev=dev,
            test=test,
            scorer=self.runtime.scorer,
            optimizer=lambda: self.runtime.client("optimizer"),
            ledger=ledger,
            meta_prompts=self.meta_prompts,
            rng=random.Random(self.settings.seed),
            render_input=self.task.render_input,
            task_description=self.task.spec.description or "",
            layout=replace(self.task.spec.prompt_layout(), fixed_demos=self.settings.initial_demos),
            judge=self.runtime.judge,
            comparator=self.comparator,
            embedder=self.runtime.embedding_client,
        )
        # Candidates hold what strategies edit (a structured prompt's instruction); the layout
        # renders each into the system message that is scored, reported and written.
        initial = state.add_candidate(state.layout.initial, operator="initial")
        assert initial is not None
        state.step = 1
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
        failure: TooManyErrors | None = None
        # The strategy gets the narrow context only: dev and the buffers stay on `state`.
        ctx = state.context
        async with contextlib.aclosing(self.strategy.search(ctx, initial)) as steps:
            try:
                async for report in steps:
                    last = report
                    # state.step is the step that just ended; what it recorded carries its number.
                    self._checkpoint(state, report, "running", state.step > self._done_steps)
                    if self.on_step is not None:
                        self.on_step(ctx, report, self.runtime)
                    completed = state.step
                    state.step += 1
                    if final_cost is not None:
                        left = self._search_cost_cap(state, final_cost)
                        ledger.caps = replace(ledger.caps, cost_usd=max(0.0, left - demo_usd))
                        search_caps_all = replace(search_caps_all, cost_usd=left)
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
                state.event("budget_exhausted", message=str(exc))
            except RunStopped:
                interrupted = True
            except TooManyErrors as exc:
                failure = exc
        if stop_reason == "finished" and ctx.optimizer_budget_spent:
            # The strategy ran to its end on the proposals it had paid for.
            stop_reason = "budget"
        if failure is not None:
            self._save_failed(state, last, failure)
        if not interrupted and demo_sizing != NO_SEARCH:
            ledger.caps = search_caps_all
            try:
                demo_report = await self._demo_step(state, last, initial, demo_sizing)
            except BudgetExhausted as exc:
                stop_reason = "budget"
                state.event("budget_exhausted", message=str(exc), phase="demos")
            except RunStopped:
                interrupted = True
            except TooManyErrors as exc:
                self._save_failed(state, last, exc)
            else:
                if demo_report is not None:
                    last = demo_report
                    self._checkpoint(state, last, "running", state.step > self._done_steps)
                    if self.on_step is not None:
                        self.on_step(ctx, last, self.runtime)
                    state.step += 1
        if interrupted:
            self._save_interrupted(state, last)
        state.event("search_done", stop_reason=stop_reason)
        ledger.caps = self.settings.caps
        if self.on_final is not None:
            self.on_final()
        try:
            final, best = await self._final(state, last, initial)
        except RunStopped:
            self._save_interrupted(state, last)
        except TooManyErrors as exc:
            self._save_failed(state, last, exc)
        except BudgetExhausted as exc:
            state.event("budget_exhausted", message=str(exc), phase="final")
            # Nothing was proven on dev, so the initial prompt stays the answer.
            final, best = None, initial
            stop_reason = "budget"
        events, changed = state.take_step()
        self._count_rejected(events)
        self.folder.append_jsonl(EVENTS, events)
        self.folder.append_records(CANDIDATES, [c.to_record() for c in changed])
        summary = self._summary(state, "finished", stop_reason, final, best)
        self._write_best(state, best)
        self.folder.write_record(SUMMARY, summary)
        return summary

    def _searches_demos(self, state: SearchState) -> bool:
        """Whether the run searches few-shot demonstrations (the task's `prompt.demos`, or the
        `demos` strategy) or starts from demonstrations (`--demos-file`); only then do its files
        mention them, so that other runs' files stay as they were."""
        layout = state.layout
        return (
            layout.demos is not None
            or bool(layout.fixed_demos)
            or self.settings.strategy == DEMOS_STRATEGY
        )

    def _write_best(self, state: SearchState, best: Candidate) -> None:
        """best_prompt.txt (the system message) and, when demonstrations were searched,
        best_demos.json (the best prompt's demonstrations, in the order they are sent)."""
        self.folder.write_text(BEST_PROMPT, state.layout.render(best.text) + "\n")
        if self._searches_demos(state):
            self.folder.write_json(
                BEST_DEMOS,
                {
                    "id": best.id,
                    "demos": [d.to_json() for d in state.layout.sent_demos(best.demos)],
                },
            )

    async def _demo_step(
        self, state: SearchState, last: StepReport, initial: Candidate, sizing: DemoSizing
    ) -> StepReport | None:
        """Demonstration sets for the instruction search's best instruction, ranked with it on
        the same training examples; the step's ranking puts the ranked arms before the rest of
        the instruction search's ranking, so that the dev gate weighs instructions with and
        without demonstrations alike."""
        spec = state.layout.demos
        assert spec is not None
        base = state.candidates[last.ranking[0]] if last.ranking else initial
        report = await search_demos(state.context, base, spec, sizing)
        if report is None:
            return None
        rest = tuple(c for c in last.ranking if c not in report.ranking)
        return replace(report, ranking=report.ranking + rest)

    def _judging(self, scored: bool) -> Comparator | None:
        """The comparator that judges best against initial on held-out inputs, when the search
        asked one which answer is better: its judge, or the person when the task has no
        metric (with one, the held-out scores are the evidence, and a person is not asked
        for a test set's worth of answers more)."""
        comparator = self.comparator
        if comparator is None:
            return None
        if comparator.source == "judge" or (comparator.source == "human" and not scored):
            return comparator
        return None

    async def _judge_split(
        self,
        comparator: Comparator,
        split: str,
        examples: Sequence[Example],
        best: Sequence[ExampleResult],
        initial: Sequence[ExampleResult],
    ) -> Judged:
        """The best prompt's answer against the initial one's on every input of `split`.

        Each pair is shown in a seeded random order, so that a person's (or a one-order
        judge's) position bias cannot favour either prompt; a person answers one pair at a
        time, a judge's pairs go concurrently.
        """
        rng = random.Random(f"{self.settings.seed}:{split}:order")
        swapped = [rng.random() < 0.5 for _ in examples]

        async def one(i: int) -> tuple[float | None, PairRecord]:
            example, new, old = examples[i], best[i], initial[i]
            if swapped[i]:
                pref = await comparator.compare(example, old, new)
                choice = pref.choice.flipped()
            else:
                pref = await comparator.compare(example, new, old)
                choice = pref.choice
            preferred = {Choice.FIRST: "best", Choice.SECOND: "initial", Choice.TIE: "tie"}
            record = PairRecord(
                id=example.id,
                preferred=preferred[choice],
                detail=pref.detail,
                skipped=pref.skipped,
            )
            return (None if pref.skipped else choice.first_wins), record

        if comparator.source == "human":
            answered = [await one(i) for i in range(len(examples))]
        else:
            # Every question finishes before a failure is raised: no paid answer is left
            # unwaited.
            results = await asyncio.gather(
                *(one(i) for i in range(len(examples))), return_exceptions=True
            )
            for result in results:
                if isinstance(result, BaseException):
                    raise result
            answered = [r for r in results if not isinstance(r, BaseException)]
        outcomes = [o for o, _ in answered if o is not None]
        rate = win_rate(outcomes, seed=self.settings.seed) if outcomes else None
        return Judged(rate, [r for _, r in answered], comparator.source)

    async def _final(
        self, state: SearchState, last: StepReport, initial: Candidate
    ) -> tuple[FinalScores, Candidate]:
        """The final gate: choose the best prompt on all of dev, then score it and the initial
        one on test.

        The strategy's top finalists and the initial prompt are all scored on every dev
        example, so they are compared on the same examples. A finalist replaces the initial
        prompt only if its dev mean is strictly higher; among finalists with equal means, the
        one the strategy ranked higher wins.

        A task without a metric has no dev mean: the strategy's first finalist replaces the
        initial prompt only if a judge (or the person) prefers its dev answers more often than
        not. When the search asked a judge or a person, the best prompt is then judged against
        the initial one on test too, as a win rate with its interval and a sign test.
        """
        dev, test = state.dev, state.test
        finalists = self._affordable(
            state, initial, _finalists(state, last.ranking, self.settings.finalists, initial)
        )
        judging = self._judging(state.scored)
        if not state.scored:
            finalists = finalists[:1]
        dev_results: dict[str, list[ExampleResult]] = {}
        await state.prefetch_held_out([initial, *finalists], "dev")
        for cand in [initial, *finalists]:
            dev_results[cand.id] = await state.score_held_out(cand, "dev")
        best = initial
        dev_judged: Judged | None = None
        if state.scored:
            # Exact sums over the same examples: prompts with equal scores tie exactly, and a
            # tie keeps the earlier of the two (the initial prompt first, then the strategy's
            # order).
            totals = {c: math.fsum(r.score for r in rs) for c, rs in dev_results.items()}
            for cand in finalists:
                if totals[cand.id] > totals[best.id]:
                    best = cand
        elif finalists and judging is not None:
            challenger = finalists[0]
            dev_judged = await self._judge_split(
                judging, "dev", dev, dev_results[challenger.id], dev_results[initial.id]
            )
            if dev_judged.best_preferred:
                best = challenger
        dev_record = dev_judged.record() if dev_judged is not None else None
        state.event(
            "final_dev",
            finalists={c.id: c.mean("dev") for c in [*finalists, initial]},
            order=[c.id for c in finalists],
            best=best.id,
            **({"judged": dev_record.to_json()} if dev_record is not None else {}),
        )
        await state.prefetch_held_out([initial, best], "test")
        initial_test = await state.score_held_out(initial, "test")
        best_test = initial_test if best is initial else await state.score_held_out(best, "test")
        test_judged: Judged | None = None
        if judging is not None and best is not initial:
            test_judged = await self._judge_split(judging, "test", test, best_test, initial_test)
        old = [r.score for r in initial_test]
        new = [r.score for r in best_test]
        preferences = {
            split: judged.pairs
            for split, judged in (("dev", dev_judged), ("test", test_judged))
            if judged is not None
        }
        self.folder.write_record(
            FINAL_EVAL,
            FinalEvalRecord(
                examples={
                    split: [
                        ExampleRecord(
                            id=e.id, input=self.task.render_input(e), targets=list(e.targets)
                        )
                        for e in exs
                    ]
                    for split, exs in (("dev", dev), ("test", test))
                },
                initial=SideRecord(
                    id=initial.id,
                    dev=[_result_record(r) for r in dev_results[initial.id]],
                    test=[_result_record(r) for r in initial_test],
                ),
                best=SideRecord(
                    id=best.id,
                    dev=[_result_record(r) for r in dev_results[best.id]],
                    test=[_result_record(r) for r in best_test],
                ),
                preferences=preferences or None,
            ),
        )
        test_errors = sum(1 for r in initial_test if r.error is not None)
        if best is not initial:
            test_errors += sum(1 for r in best_test if r.error is not None)
        dev_errors = sum(1 for rs in dev_results.values() for r in rs if r.error is not None)
        n = {"dev": len(dev), "test": len(test)}
        judged_records = {
            "test_preference": test_judged.record() if test_judged else None,
            "dev_preference": dev_record,
        }
        if not state.scored:
            # No metric: no score, interval or paired comparison to report, only preferences.
            return FinalScores(
                None, None, test_errors, dev_errors, n, None, None, **judged_records
            ), best
        comparison = compare(old, new, seed=self.settings.seed)
        final = FinalScores(
            initial_test=initial.mean("test"),
            best_test=best.mean("test"),
            test_errors=test_errors,
            dev_errors=dev_errors,
            n=n,
            ci95={
                "initial_test": _interval(old, self.settings.seed),
                "best_test": _interval(new, self.settings.seed),
            },
            comparison=ComparisonRecord(
                delta=comparison.paired.delta,
                ci95=(comparison.paired.ci_low, comparison.paired.ci_high),
                mcnemar_p=comparison.mcnemar.p_value if comparison.mcnemar else None,
                sign_p=comparison.sign.p_value if comparison.sign else None,
                verdict=comparison.verdict,
            ),
            **judged_records,
        )
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


def _interval(scores: list[float], seed: int) -> tuple[float, float]:
    _, lo, hi = mean_ci(scores, seed=seed)
    return lo, hi


def _result_record(r: ExampleResult) -> ResultRecord:
    return ResultRecord(
        id=r.id, output=r.output, score=r.score, latency_s=round(r.latency_s, 4), error=r.error
    )
