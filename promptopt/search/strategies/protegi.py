"""ProTeGi / APO (Pryzant et al., 2023): textual gradients, beam search and bandit selection.

Each round draws one training minibatch, scores every beam prompt on it, asks the optimizer why
a prompt got sampled errors wrong (the "gradient"), asks for edited prompts that fix each reason
(the "step"), adds Monte-Carlo paraphrases of the edits, and then picks the next beam from the
successors and the old beam as a best-arm identification problem under a budget of target calls.
Only the instruction is edited; the input template and the data stay fixed.

Two things go beyond the paper. A child enters the selection only if it scores at least as well
as its parent on the examples that motivated it plus as many the parent got right (GEPA's cheap
acceptance test), and every selection scores all its arms on the same examples. The rounds,
beam, minibatch and successors are sized at the start so that, within the budget, every
selection can score every arm it is given (`ProTeGi.layout`).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping, Sequence
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
from promptopt.search.selection import (
    MIN_EVIDENCE,
    SELECTORS,
    ScoreFn,
    acceptance_minibatch,
    acceptance_tests,
    fit_layout,
    ladder,
    make_selector,
    min_evidence,
    select_paired,
)
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
    batch: int = Field(
        default=32, ge=1, description="training examples per bandit pull, the same for every arm"
    )
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


# How much each size counts when a plan is shrunk to fit (see `fit_layout`): a minibatch only
# has to hold enough errors to show the optimizer, so it gives way before rounds, beam or
# successors do.
_WEIGHTS = {"rounds": 1.0, "beam": 1.0, "successors": 1.0, "minibatch": 0.5}


@dataclass(frozen=True)
class Layout:
    """ProTeGi's parameters sized to a budget, and the worst case of what they spend."""

    rounds: int
    beam: int
    minibatch: int
    successors: int
    """Most new candidates one beam prompt adds to a selection."""
    gradients: int
    """Error groups (gradient requests) per beam prompt."""
    check: int
    """Most examples one acceptance test scores a child on."""
    per_arm: int
    """Examples every arm of a selection can be scored on at least."""
    selection_budget: int
    """Target calls planned for each selection (a round may get more if earlier ones spent
    less than their worst case)."""
    beams: tuple[int, ...]
    """The most beam prompts each round can expand."""
    fixed_per_parent: int
    """Minibatch and acceptance-test target calls per beam prompt, at most."""
    target_calls: int
    optimizer_calls: int
    fits: bool
    """Whether the budget covers this plan; when not even the smallest plan fits, the search
    runs it anyway and selection gets what is left."""

    def sizes(self) -> dict[str, int]:
        """The sizes in effect, as `fit_layout` weighs them."""
        return {
            "rounds": self.rounds,
            "beam": self.beam,
            "successors": self.successors,
            "minibatch": self.minibatch,
        }

    def to_json(self) -> dict[str, Any]:
        """As recorded in the "plan" event and shown by `run --dry-run --json`."""
        return {
            "rounds": self.rounds,
            "beam": self.beam,
            "minibatch": self.minibatch,
            "successors": self.successors,
            "gradients": self.gradients,
            "check": self.check,
            "per_arm": self.per_arm,
            "selection_budget": self.selection_budget,
            "target_calls": self.target_calls,
            "optimizer_calls": self.optimizer_calls,
            "fits": self.fits,
        }

    def describe(self) -> str:
        """One line for `run --dry-run`."""
        text = (
            f"protegi plan: {self.rounds} rounds, beam {self.beam}, minibatch {self.minibatch}, "
            f"{self.gradients} gradients and at most {self.successors} successors per beam "
            f"prompt, acceptance tests on {self.check} examples, {self.selection_budget} target "
            f"calls per selection (at least {self.per_arm} examples per candidate)"
        )
        if not self.fits:
            text += "; the budget is too small even for this plan, selection gets what is left"
        return text


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

    def scorer(self, ctx: SearchContext) -> ScoreFn:
        """A score function for the selection helpers that keeps the outputs here too."""

        async def score(cand: Candidate, examples: Sequence[Example]) -> list[float]:
            return [r.score for r in await self.score(ctx, cand, examples)]

        return score


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
        return self.plan_for_budget(sizes, None, None)

    def plan_for_budget(
        self, sizes: Mapping[str, int], target_calls: int | None, optimizer_calls: int | None
    ) -> Plan:
        """The most calls ProTeGi makes when sized to these search budgets (see `layout`)."""
        layout = self.layout(sizes.get("train", 0), target_calls, optimizer_calls)
        return Plan(
            target_calls=layout.target_calls,
            optimizer_calls=layout.optimizer_calls,
            layout=layout.to_json(),
            notes=(layout.describe(),),
        )

    def layout(self, train: int, target_calls: int | None, optimizer_calls: int | None) -> Layout:
        """The parameters sized so that every round's selection can score every arm.

        A round's worst case is its minibatch scoring, the acceptance tests of every edit and
        paraphrase it may ask for, and a selection giving each arm at least `per_arm` examples
        (one pull of `batch`, at most `MIN_EVIDENCE`). When the configured rounds, beam,
        successors and minibatch do not fit the target and optimizer budgets (or the
        configured selection_budget cannot score the pool they make), they are shrunk
        together (`fit_layout`); only when nothing fits is `per_arm` lowered, down to 1.
        Gradients are asked for no more edits than the successors a selection takes.

        Args:
            train: Training examples.
            target_calls: Target calls the search may make, or None when uncapped.
            optimizer_calls: Optimizer calls the search may make, or None when uncapped.
        """
        p = self.params
        minibatch = min(p.minibatch, train)
        if train == 0:
            return self._layout(train, p.rounds, p.beam_size, 1, 0, 1, target_calls, None)
        floor = min(minibatch, max(MIN_EVIDENCE, 2 * p.errors_per_gradient))
        options = {
            "rounds": ladder(p.rounds),
            "beam": ladder(p.beam_size),
            "successors": ladder(p.successors_per_parent()),
            "minibatch": ladder(minibatch, floor),
        }

        def sized(o: Mapping[str, int], per_arm: int) -> Layout:
            return self._layout(
                train,
                o["rounds"],
                o["beam"],
                o["successors"],
                o["minibatch"],
                per_arm,
                target_calls,
                optimizer_calls,
            )

        def assess(per_arm: int) -> Callable[[Mapping[str, int]], Mapping[str, int] | None]:
            def effect(o: Mapping[str, int]) -> Mapping[str, int] | None:
                layout = sized(o, per_arm)
                return layout.sizes() if layout.fits else None

            return effect

        for per_arm in ladder(min_evidence(p.batch, train)):
            chosen = fit_layout(options, assess(per_arm), _WEIGHTS)
            if chosen is not None:
                return sized(chosen, per_arm)
        return self._layout(train, 1, 1, 1, floor, 1, target_calls, optimizer_calls)

    def _layout(
        self,
        train: int,
        rounds: int,
        beam: int,
        successors: int,
        minibatch: int,
        per_arm: int,
        target: int | None,
        optimizer: int | None,
    ) -> Layout:
        """The worst case of one choice of sizes, and whether it fits."""
        p = self.params
        per_gradient = p.gradients_per_error * p.steps_per_gradient
        # No more edits than a selection takes: each costs an acceptance test and requests.
        gradients = max(1, min(p.n_gradients, successors // per_gradient))
        edits = gradients * per_gradient
        # Paraphrases are asked only of accepted edits, and only while the successors have room
        # (see `expand`): with a edits accepted, min(a * mc, successors - a) at most.
        paraphrases = max(
            min(a * p.mc_samples_per_step, successors - a)
            for a in range(min(edits, successors) + 1)
        )
        successors = min(successors, edits * (1 + p.mc_samples_per_step))
        check = min(2 * p.errors_per_gradient, minibatch)
        fixed = minibatch + (edits + paraphrases) * check
        asks = gradients + gradients * p.gradients_per_error + paraphrases
        beams: list[int] = []
        pools: list[int] = []
        size = 1
        for _ in range(rounds):
            beams.append(size)
            pools.append(size * (1 + successors))
            size = min(beam, pools[-1])
        fixed_total = sum(beams) * fixed
        selection = p.selection_budget
        if target is not None:
            selection = min(selection, max(0, (target - fixed_total) // rounds))
        need = max((n * per_arm for n in pools if n >= 2), default=0)
        optimizer_total = sum(beams) * asks
        fits = (
            selection >= need
            and (target is None or fixed_total <= target)
            and (optimizer is None or optimizer_total <= optimizer)
        )
        return Layout(
            rounds=rounds,
            # A beam larger than any round expands is not in effect.
            beam=max(beams),
            minibatch=minibatch,
            successors=successors,
            gradients=gradients,
            check=check,
            per_arm=per_arm,
            selection_budget=selection,
            beams=tuple(beams),
            fixed_per_parent=fixed,
            target_calls=fixed_total + sum(min(selection, n * train) for n in pools if n >= 2),
            optimizer_calls=optimizer_total,
            fits=fits,
        )

    def draw_minibatch(self, ctx: SearchContext, size: int | None = None) -> list[Example]:
        """This round's training minibatch, shared by every beam prompt."""
        train = list(ctx.train)
        return ctx.rng.sample(
            train, min(self.params.minibatch if size is None else size, len(train))
        )

    async def _ask_all(
        self, ctx: SearchContext, asks: Sequence[_Ask], room: int | None = None
    ) -> list[list[str]]:
        """Answers to each request, concurrently; requests past the optimizer call cap are
        dropped (and recorded) rather than sent to fail. With `room`, at most that many samples
        are asked in all, spread over the requests in turn, the first ones first."""
        if room is not None:
            asks = _spread(asks, room)
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
            ctx,
            [
                _no_answers() if a.n <= 0 else ctx.ask(a.meta_prompt, a.n, **a.values)
                for a in affordable
            ],
        )
        return answers + [[] for _ in range(len(asks) - len(affordable))]

    async def expand(
        self,
        ctx: SearchContext,
        parent: Candidate,
        results: Sequence[tuple[Example, ExampleResult]],
        *,
        max_successors: int | None = None,
        n_gradients: int | None = None,
        evidence: Evidence | None = None,
    ) -> list[Candidate]:
        """Successors of one beam prompt from its results on the round's minibatch.

        Every edit and paraphrase must pass the acceptance test against its parent on the
        errors it was written for plus as many examples the beam prompt got right; one that
        fails is recorded and left out. Paraphrases are asked only of edits that passed, and
        only while fewer than `max_successors` (by default the parameters' cap) have passed.
        """
        p = self.params
        cap = p.successors_per_parent() if max_successors is None else max_successors
        score = evidence.scorer(ctx) if evidence is not None else None
        errors = [
            Failure(example, result)
            for example, result in results
            if result.error is None and result.score < 1.0 - 1e-9
        ]
        passed = [
            example
            for example, result in results
            if result.error is None and result.score >= 1.0 - 1e-9
        ]
        if not errors:
            ctx.event("no_errors", id=parent.id, minibatch=len(results))
            return []

        wanted = p.n_gradients if n_gradients is None else n_gradients
        remaining = ctx.remaining_optimizer_calls()
        if remaining is not None and wanted * 2 > remaining:
            # A gradient is worth its call only if an edit can follow it: keep one optimizer
            # call of room for an edit per gradient sample.
            ctx.event("optimizer_budget_short", asked=wanted, sent=remaining // 2, id=parent.id)
            wanted = remaining // 2
            if wanted == 0:
                return []
        # Identical error groups become one request for several samples, so that they differ.
        groups: dict[tuple[int, ...], int] = {}
        for _ in range(wanted):
            picked = tuple(
                sorted(ctx.rng.sample(range(len(errors)), min(p.errors_per_gradient, len(errors))))
            )
            groups[picked] = groups.get(picked, 0) + 1
        shown = [[errors[i] for i in picked] for picked in groups]
        checks = [acceptance_minibatch([f.example for f in g], passed, ctx.rng) for g in shown]
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
        check_of: dict[str, list[Example]] = {}
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
                for edit in self._accept_edits(ctx, raw, parent, feedback):
                    edited.append(edit)
                    check_of[edit.id] = checks[g]
        made = len(edited)
        edited = await _passing(ctx, [(c, parent, check_of[c.id]) for c in edited], score)

        paraphrased: list[Candidate] = []
        if p.mc_samples_per_step:
            para_answers = await self._ask_all(
                ctx,
                [
                    _Ask("protegi/paraphrase", p.mc_samples_per_step, {"prompt": c.text})
                    for c in edited
                ],
                room=cap - len(edited),
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
                        check_of[cand.id] = check_of[source.id]
            made += len(paraphrased)
            by_id = {c.id: c for c in edited}
            paraphrased = await _passing(
                ctx,
                [(c, by_id[c.parents[0]], check_of[c.id]) for c in paraphrased],
                score,
            )

        successors = edited + paraphrased
        if len(successors) > cap:
            kept = set(ctx.rng.sample(range(len(successors)), cap))
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
            rejected=made - len(edited) - len(paraphrased),
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

    def _selection_budget(self, ctx: SearchContext, layout: Layout, round_no: int) -> int:
        """This round's selection budget: what is left once the later rounds' worst-case
        minibatch scoring and acceptance tests are set aside, shared equally with their
        selections. The layout makes that at least its planned selection budget."""
        p = self.params
        remaining = ctx.remaining_target_calls()
        if remaining is None:
            return p.selection_budget
        future = sum(layout.beams[round_no:]) * layout.fixed_per_parent
        rounds_after = layout.rounds - round_no
        return max(0, min(p.selection_budget, (remaining - future) // (rounds_after + 1)))

    async def rank(
        self,
        ctx: SearchContext,
        pool: Sequence[Candidate],
        evidence: Evidence,
        budget: int,
        minibatch: Sequence[Example] = (),
        beam: int | None = None,
    ) -> list[Candidate]:
        """The whole pool, best first, as the bandit ranks it within `budget` target calls.

        Every arm is scored on the same examples; the round's minibatch, on which the new
        candidates were written and tested, comes last.
        """
        p = self.params
        chosen = await select_paired(
            ctx,
            pool,
            p.beam_size if beam is None else beam,
            selector=make_selector(p.selector, batch=p.batch),
            budget=budget,
            last=minibatch,
            score=evidence.scorer(ctx),
        )
        return list(chosen.ranking)

    async def select(
        self,
        ctx: SearchContext,
        pool: Sequence[Candidate],
        evidence: Evidence,
        budget: int,
        minibatch: Sequence[Example] = (),
    ) -> list[Candidate]:
        """The next beam, best first, chosen by the bandit within `budget` target calls."""
        ranking = await self.rank(ctx, pool, evidence, budget, minibatch)
        return ranking[: self.params.beam_size]

    async def search(
        self, ctx: SearchContext, initial: Candidate
    ) -> AsyncGenerator[StepReport, None]:
        """Expand the beam and select the next one, round after round."""
        if not ctx.train:
            raise UsageError("protegi needs training examples: give the task a data.train split")
        layout = self.layout(
            len(ctx.train), ctx.remaining_target_calls(), ctx.remaining_optimizer_calls()
        )
        ctx.event("plan", strategy="protegi", **layout.to_json())
        evidence = Evidence()
        beam = [initial]
        for round_no in range(1, layout.rounds + 1):
            minibatch = self.draw_minibatch(ctx, layout.minibatch)
            ctx.event("minibatch", round=round_no, ids=[e.id for e in minibatch])
            scored = await gather_in_order(
                ctx, [evidence.score(ctx, cand, minibatch) for cand in beam]
            )
            successors: list[Candidate] = []
            for parent, results in zip(beam, scored, strict=True):
                successors += await self.expand(
                    ctx,
                    parent,
                    list(zip(minibatch, results, strict=True)),
                    max_successors=layout.successors,
                    n_gradients=layout.gradients,
                    evidence=evidence,
                )
            budget = self._selection_budget(ctx, layout, round_no)
            ranking = await self.rank(
                ctx, beam + successors, evidence, budget, minibatch, layout.beam
            )
            beam = ranking[: layout.beam]
            # The engine gets the selector's whole ranking, so that its dev gate can take more
            # finalists than the beam holds.
            yield StepReport(
                f"round-{round_no}",
                tuple(c.id for c in ranking),
                beam[0].mean("train"),
                {
                    "successors": len(successors),
                    "selection_budget": budget,
                    "beam": [c.id for c in beam],
                },
            )
            if ctx.remaining_optimizer_calls() == 0 and round_no < layout.rounds:
                ctx.event("search_stopped", reason="the optimizer call budget is spent")
                return


def _spread(asks: Sequence[_Ask], room: int) -> list[_Ask]:
    """The requests with at most `room` samples in all: one sample per request in turn, the
    first requests first, each up to what it asked for."""
    counts = [0] * len(asks)
    left = max(0, room)
    while left > 0 and any(c < a.n for c, a in zip(counts, asks, strict=True)):
        for i, ask in enumerate(asks):
            if left > 0 and counts[i] < ask.n:
                counts[i] += 1
                left -= 1
    return [_Ask(a.meta_prompt, n, a.values) for a, n in zip(asks, counts, strict=True)]


async def _no_answers() -> list[str]:
    return []


async def _passing(
    ctx: SearchContext,
    trials: Sequence[tuple[Candidate, Candidate, Sequence[Example]]],
    score: ScoreFn | None,
) -> list[Candidate]:
    """The children that pass the acceptance test against their parents, in order."""
    if not trials:
        return []
    verdicts = await acceptance_tests(ctx, trials, score=score)
    return [child for (child, _, _), v in zip(trials, verdicts, strict=True) if v.accepted]


INFO = StrategyInfo(
    name="protegi",
    summary="ProTeGi: textual gradients from sampled errors, edited and paraphrased prompts, "
    "beam search with bandit selection (Pryzant et al., 2023)",
    params=ProTeGiParams,
    build=lambda params: ProTeGi(params),
    presets=PRESETS,
)
