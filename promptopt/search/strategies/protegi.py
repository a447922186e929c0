"""ProTeGi / APO (Pryzant et al., 2023): textual gradients, beam search and bandit selection.

Each round draws one training minibatch, scores every beam prompt on it, asks the optimizer why
a prompt got sampled errors wrong (the "gradient"), asks for edited prompts that fix each reason
(the "step"), adds Monte-Carlo paraphrases of the edits, and then picks the next beam from the
successors and the old beam as a best-arm identification problem under a budget of target calls.
Only the instruction is edited; the input template and the data stay fixed.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Awaitable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, field_validator

from promptopt.errors import UsageError
from promptopt.scoring.scorer import ExampleResult
from promptopt.search.context import (
    Candidate,
    Plan,
    SearchContext,
    StepReport,
    StrategyInfo,
    answer_items,
    is_truncated,
)
from promptopt.search.extract import extract_instruction
from promptopt.search.selection import SELECTORS, keep_count, make_selector
from promptopt.task.example import Example

T = TypeVar("T")

# Characters of an example's input or output kept in the lineage record; the meta-prompt gets
# more, since the optimizer needs the whole example to diagnose it.
_FEEDBACK_CHARS = 200
_META_PROMPT_CHARS = 2000
_RAW_EDIT_CHARS = 4000
_REASON_MAX_CHARS = 4000


class ProTeGiParams(BaseModel):
    """ProTeGi's parameters; the defaults are the paper's (use preset=small for small budgets)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    rounds: int = Field(default=6, ge=1, description="beam search rounds")
    beam_size: int = Field(default=4, ge=1, description="prompts kept after each round")
    minibatch: int = Field(
        default=64, ge=1, description="training examples drawn once per round to find errors"
    )
    n_gradients: int = Field(
        default=4, ge=1, description="error groups sampled per beam prompt (one request each)"
    )
    errors_per_gradient: int = Field(default=4, ge=1, description="errors shown per request")
    gradients_per_error: int = Field(
        default=1, ge=1, description="reasons asked for per error group"
    )
    steps_per_gradient: int = Field(default=1, ge=1, description="edited prompts asked per reason")
    mc_samples_per_step: int = Field(
        default=2, ge=0, description="Monte-Carlo paraphrases asked per edited prompt"
    )
    max_expansion_factor: int = Field(
        default=8, ge=1, description="most successors kept per beam prompt (a random subset)"
    )
    selector: str = Field(
        default="ucb",
        description="bandit choosing the next beam: " + ", ".join(sorted(SELECTORS)),
    )
    batch: int = Field(default=32, ge=1, description="fresh training examples per bandit pull")
    selection_budget: int = Field(
        default=2048, ge=0, description="target calls per round for choosing the next beam"
    )

    @field_validator("selector")
    @classmethod
    def _known_selector(cls, value: str) -> str:
        if value not in SELECTORS:
            valid = ", ".join(sorted(SELECTORS))
            raise ValueError(f"unknown selector {value!r}; choose one of: {valid}")
        return value

    def successors_per_parent(self) -> int:
        """The most new candidates one beam prompt can add to a selection."""
        proposals = self.n_gradients * self.gradients_per_error * self.steps_per_gradient
        return min(self.max_expansion_factor, proposals * (1 + self.mc_samples_per_step))

    def optimizer_calls_per_parent(self) -> int:
        """Gradient, edit and paraphrase requests for one beam prompt, at most."""
        reasons = self.n_gradients * self.gradients_per_error
        edits = reasons * self.steps_per_gradient
        return self.n_gradients + reasons + edits * self.mc_samples_per_step


PRESETS: dict[str, dict[str, Any]] = {
    # A few hundred target calls on ~50 training examples, about 30 optimizer calls.
    "small": {
        "rounds": 3,
        "beam_size": 2,
        "minibatch": 16,
        "n_gradients": 2,
        "errors_per_gradient": 4,
        "gradients_per_error": 1,
        "steps_per_gradient": 1,
        "mc_samples_per_step": 1,
        "max_expansion_factor": 4,
        "batch": 8,
        "selection_budget": 64,
    },
}


@dataclass(frozen=True)
class Failure:
    """An example a prompt got wrong, with what the target answered."""

    example: Example
    result: ExampleResult


@dataclass
class Evidence:
    """Every target answer seen during one search, per candidate and example.

    A prompt is scored at most once on an example, and a beam prompt's wrong outputs are at hand
    to show the optimizer even when they were produced by an earlier selection.
    """

    results: dict[str, dict[str, ExampleResult]] = field(default_factory=dict)

    def seen(self, cand: Candidate) -> Mapping[str, ExampleResult]:
        """The answers known for a candidate, by example id."""
        return self.results.get(cand.id, {})

    async def score(
        self, ctx: SearchContext, cand: Candidate, examples: Sequence[Example]
    ) -> list[ExampleResult]:
        """The candidate's results on `examples`, asking the target only about new ones."""
        known = self.results.setdefault(cand.id, {})
        todo = [e for e in examples if e.id not in known]
        if todo:
            for example, result in zip(todo, await ctx.score(cand, todo), strict=True):
                known[example.id] = result
        return [known[e.id] for e in examples]


@dataclass(frozen=True)
class _Ask:
    """One optimizer request to make: a meta-prompt, its values and how many samples."""

    meta_prompt: str
    n: int
    values: Mapping[str, str]


def one_line(text: str, limit: int = _FEEDBACK_CHARS) -> str:
    """Text on one line, cut to `limit` characters."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def format_errors(failures: Sequence[Failure], render: Any) -> str:
    """The wrong answers as shown to the optimizer."""
    blocks = []
    for i, f in enumerate(failures, 1):
        expected = " or ".join(repr(t) for t in f.example.targets)
        blocks.append(
            f"Example {i}\nInput: {str(render(f.example))[:_META_PROMPT_CHARS]}\n"
            f"Expected answer: {expected}\n"
            f"Model's answer: {f.result.output[:_META_PROMPT_CHARS]!r}"
        )
    return "\n\n".join(blocks)


def error_records(failures: Sequence[Failure], render: Any) -> list[dict[str, str]]:
    """The wrong answers as stored in a candidate's lineage."""
    return [
        {
            "id": f.example.id,
            "input": one_line(str(render(f.example))),
            "expected": f.example.target,
            "output": one_line(f.result.output),
        }
        for f in failures
    ]


def error_lines(records: Sequence[Mapping[str, str]]) -> list[str]:
    """One readable line per wrong answer, for reports."""
    return [f"{r['input']} -> expected {r['expected']!r}, got {r['output']!r}" for r in records]


def parse_reasons(ctx: SearchContext, raw: str, limit: int) -> list[str]:
    """The reasons in a gradient answer, at most `limit`; unusable items are recorded."""
    items = answer_items(raw)
    if not items:
        reason = _no_item_reason(raw)
        ctx.reject("gradient", reason, "no reason found in the reply", raw)
        return []
    reasons: list[str] = []
    for item in items:
        # The checks for instructions (refusals, loops, echoes) apply to reasons too.
        check = extract_instruction(item, max_chars=_REASON_MAX_CHARS, truncated=is_truncated(item))
        if not check.accepted:
            ctx.reject("gradient", check.reason or "rejected", check.message, item)
            continue
        reasons.append(item)
        if len(reasons) == limit:
            break
    return reasons


def _no_item_reason(raw: str) -> str:
    """Why an answer meant to hold items yielded none."""
    if is_truncated(raw):
        return "truncated"
    return "empty" if not raw.strip() else "no_instruction"


async def gather_in_order(ctx: SearchContext, coros: Sequence[Awaitable[T]]) -> list[T]:
    """Run coroutines concurrently; results keep the call order, and events recorded meanwhile
    are put in a fixed order so that a run's events do not depend on completion order. The
    first failure cancels the others."""
    with ctx.stable_event_order():
        tasks = [asyncio.ensure_future(c) for c in coros]
        try:
            return list(await asyncio.gather(*tasks))
        except BaseException:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise


class ProTeGi:
    """The ProTeGi strategy."""

    def __init__(self, params: ProTeGiParams) -> None:
        self.params = params
        make_selector(
            params.selector, batch=params.batch
        )  # fail on a bad selector before searching

    def plan(self, sizes: Mapping[str, int]) -> Plan:
        """The most calls ProTeGi makes with these parameters and split sizes."""
        p = self.params
        train = sizes.get("train", 0)
        minibatch = min(p.minibatch, train)
        target = optimizer = 0
        beam = 1
        for _ in range(p.rounds):
            target += beam * minibatch
            optimizer += beam * p.optimizer_calls_per_parent()
            pool = beam * (1 + p.successors_per_parent())
            if pool > p.beam_size:
                target += min(p.selection_budget, pool * train)
            beam = min(p.beam_size, pool)
        return Plan(target_calls=target, optimizer_calls=optimizer)

    def draw_minibatch(self, ctx: SearchContext) -> list[Example]:
        """This round's training minibatch, shared by every beam prompt."""
        train = list(ctx.train)
        return ctx.rng.sample(train, min(self.params.minibatch, len(train)))

    async def _ask_all(self, ctx: SearchContext, asks: Sequence[_Ask]) -> list[list[str]]:
        """Answers to each request, concurrently; requests past the optimizer call cap are
        dropped (and recorded) rather than sent to fail."""
        remaining = ctx.remaining_optimizer_calls()
        affordable: list[_Ask] = []
        for ask in asks:
            if remaining is not None:
                if remaining <= 0:
                    break
                ask = _Ask(ask.meta_prompt, min(ask.n, remaining), ask.values)
                remaining -= ask.n
            affordable.append(ask)
        asked, sent = sum(a.n for a in asks), sum(a.n for a in affordable)
        if sent < asked:
            ctx.event("optimizer_budget_short", asked=asked, sent=sent)
        answers = await gather_in_order(
            ctx, [ctx.ask(a.meta_prompt, a.n, **a.values) for a in affordable]
        )
        return answers + [[] for _ in range(len(asks) - len(affordable))]

    async def expand(
        self,
        ctx: SearchContext,
        parent: Candidate,
        results: Sequence[tuple[Example, ExampleResult]],
    ) -> list[Candidate]:
        """Successors of one beam prompt from its results on the round's minibatch."""
        p = self.params
        errors = [
            Failure(example, result)
            for example, result in results
            if result.error is None and result.score < 1.0 - 1e-9
        ]
        if not errors:
            ctx.event("no_errors", id=parent.id, minibatch=len(results))
            return []

        # Identical error groups become one request for several samples, so that they differ.
        groups: dict[tuple[int, ...], int] = {}
        for _ in range(p.n_gradients):
            picked = tuple(
                sorted(ctx.rng.sample(range(len(errors)), min(p.errors_per_gradient, len(errors))))
            )
            groups[picked] = groups.get(picked, 0) + 1
        shown = [[errors[i] for i in picked] for picked in groups]
        texts = [format_errors(g, ctx.render_input) for g in shown]
        answers = await self._ask_all(
            ctx,
            [
                _Ask(
                    "protegi/gradient",
                    n,
                    {
                        "prompt": parent.text,
                        "errors": text,
                        "num_reasons": str(p.gradients_per_error),
                    },
                )
                for text, n in zip(texts, groups.values(), strict=True)
            ],
        )
        gradients: list[tuple[int, str]] = []
        for g, raws in enumerate(answers):
            for raw in raws:
                gradients.extend((g, r) for r in parse_reasons(ctx, raw, p.gradients_per_error))

        edit_answers = await self._ask_all(
            ctx,
            [
                _Ask(
                    "protegi/edit",
                    1,
                    {
                        "prompt": parent.text,
                        "errors": texts[g],
                        "reason": reason,
                        "num_prompts": str(p.steps_per_gradient),
                    },
                )
                for g, reason in gradients
            ],
        )
        edited: list[Candidate] = []
        for (g, reason), raws in zip(gradients, edit_answers, strict=True):
            records = error_records(shown[g], ctx.render_input)
            for raw in raws:
                feedback = {
                    "parent": parent.id,
                    "errors": error_lines(records),
                    "error_examples": records,
                    "gradient": reason,
                    "edit": raw[:_RAW_EDIT_CHARS],
                }
                edited.extend(self._accept_edits(ctx, raw, parent, feedback))

        paraphrased: list[Candidate] = []
        if p.mc_samples_per_step:
            para_answers = await self._ask_all(
                ctx,
                [
                    _Ask("protegi/paraphrase", p.mc_samples_per_step, {"prompt": c.text})
                    for c in edited
                ],
            )
            for source, raws in zip(edited, para_answers, strict=True):
                for raw in raws:
                    cand = ctx.accept_proposal(
                        raw,
                        operator="paraphrase",
                        parents=[source.id],
                        feedback={"parent": source.id},
                    )
                    if cand is not None:
                        paraphrased.append(cand)

        successors = edited + paraphrased
        if len(successors) > p.max_expansion_factor:
            kept = set(ctx.rng.sample(range(len(successors)), p.max_expansion_factor))
            ctx.event(
                "expansion_capped",
                parent=parent.id,
                kept=[c.id for i, c in enumerate(successors) if i in kept],
                dropped=[c.id for i, c in enumerate(successors) if i not in kept],
            )
            successors = [c for i, c in enumerate(successors) if i in kept]
        ctx.event(
            "expanded",
            parent=parent.id,
            errors=len(errors),
            gradients=len(gradients),
            edits=len(edited),
            paraphrases=len(paraphrased),
            successors=[c.id for c in successors],
        )
        return successors

    def _accept_edits(
        self, ctx: SearchContext, raw: str, parent: Candidate, feedback: dict[str, Any]
    ) -> list[Candidate]:
        """The edited prompts in one edit answer, at most steps_per_gradient."""
        steps = self.params.steps_per_gradient
        if steps == 1:
            # One prompt asked for: a prompt that itself holds a list must not be split up.
            items = [raw]
        else:
            items = answer_items(raw)[:steps]
            if not items:
                reason = _no_item_reason(raw)
                ctx.reject("edit", reason, "no edited prompt found in the reply", raw)
        out = []
        for item in items:
            cand = ctx.accept_proposal(
                item, operator="edit", parents=[parent.id], feedback=feedback
            )
            if cand is not None:
                out.append(cand)
        return out

    def _selection_budget(self, ctx: SearchContext, rounds_after: int, minibatch: int) -> int:
        """This round's selection budget, leaving later rounds their minibatch scoring and an
        equal share of what is left."""
        p = self.params
        remaining = ctx.remaining_target_calls()
        if remaining is None:
            return p.selection_budget
        future = rounds_after * p.beam_size * minibatch
        return max(0, min(p.selection_budget, (remaining - future) // (rounds_after + 1)))

    async def select(
        self, ctx: SearchContext, pool: Sequence[Candidate], evidence: Evidence, budget: int
    ) -> list[Candidate]:
        """The next beam, best first, chosen by the bandit within `budget` target calls."""
        p = self.params
        streams: list[list[Example]] = []
        for cand in pool:
            seen = evidence.seen(cand)
            fresh = [e for e in ctx.train if e.id not in seen]
            ctx.rng.shuffle(fresh)
            streams.append(fresh)

        async def pull(arm: int, size: int) -> list[float]:
            batch, streams[arm] = streams[arm][:size], streams[arm][size:]
            if not batch:
                return []
            return [r.score for r in await evidence.score(ctx, pool[arm], batch)]

        selection = await make_selector(p.selector, batch=p.batch).select(
            len(pool), keep_count(p.beam_size, len(pool)), pull, budget, ctx.rng
        )
        ctx.event(
            "selection",
            budget=budget,
            spent=selection.spent,
            pulls={pool[i].id: n for i, n in enumerate(selection.pulls)},
        )
        # Rank on all the training evidence a candidate has (minibatch and earlier rounds too);
        # the sort is stable, so on a tie the older beam prompt stays ahead.
        ranked = sorted(
            pool,
            key=lambda c: (c.n("train") > 0, c.mean("train") or 0.0, c.n("train")),
            reverse=True,
        )
        return ranked[: p.beam_size]

    async def search(
        self, ctx: SearchContext, initial: Candidate
    ) -> AsyncGenerator[StepReport, None]:
        """Expand the beam and select the next one, round after round."""
        p = self.params
        if not ctx.train:
            raise UsageError("protegi needs training examples: give the task a data.train split")
        evidence = Evidence()
        beam = [initial]
        for round_no in range(1, p.rounds + 1):
            minibatch = self.draw_minibatch(ctx)
            ctx.event("minibatch", round=round_no, ids=[e.id for e in minibatch])
            scored = await gather_in_order(
                ctx, [evidence.score(ctx, cand, minibatch) for cand in beam]
            )
            successors: list[Candidate] = []
            for parent, results in zip(beam, scored, strict=True):
                successors += await self.expand(
                    ctx, parent, list(zip(minibatch, results, strict=True))
                )
            budget = self._selection_budget(ctx, p.rounds - round_no, len(minibatch))
            beam = await self.select(ctx, beam + successors, evidence, budget)
            yield StepReport(
                f"round-{round_no}",
                tuple(c.id for c in beam),
                beam[0].mean("train"),
                {"successors": len(successors), "selection_budget": budget},
            )
            if ctx.remaining_optimizer_calls() == 0 and round_no < p.rounds:
                ctx.event("search_stopped", reason="the optimizer call budget is spent")
                return


INFO = StrategyInfo(
    name="protegi",
    summary="ProTeGi: textual gradients from sampled errors, edited and paraphrased prompts, "
    "beam search with bandit selection (Pryzant et al., 2023)",
    params=ProTeGiParams,
    build=lambda params: ProTeGi(params),
    presets=PRESETS,
)
