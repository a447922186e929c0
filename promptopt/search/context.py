"""The strategy plug point: candidates, the narrow search context a strategy works through, and
the protocol a strategy implements.

The engine's side of a search (dev and test, the pending events, checkpoints, the final gate)
is `promptopt.search.state`.
"""

from __future__ import annotations

import contextlib
import json
import random
import re
from collections.abc import AsyncGenerator, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Protocol, runtime_checkable

from pydantic import BaseModel

from promptopt.errors import BudgetExhausted, MissingDependencyError, ProviderError, UsageError
from promptopt.llm.budget import BudgetLedger
from promptopt.llm.client import ModelClient, RequestFailed
from promptopt.llm.messages import FINISH_LENGTH, Message
from promptopt.run.records import CandidateRecord, CandidateScore, DemoRecord
from promptopt.scoring.metrics import JudgeFn
from promptopt.scoring.preference import Comparator
from promptopt.scoring.scorer import ExampleResult, Scorer
from promptopt.search.extract import echo_pieces, extract_all, extract_instruction
from promptopt.search.meta_prompts import CONTEXT_PLACEHOLDERS, MetaPromptSet
from promptopt.task.example import Example
from promptopt.task.prompt import Demo, DemosSpec, PromptLayout

HISTORY_SIZE = 5
"""How many of the best instructions so far a meta-prompt's {{history}} shows."""
CONTEXT_EXAMPLES = 4
"""How many training examples a meta-prompt's {{examples}} shows."""
# Characters of an example's input, and of an instruction in the history, shown to the optimizer.
_CONTEXT_INPUT_CHARS = 400
_HISTORY_TEXT_CHARS = 1000


@dataclass
class Candidate:
    """A prompt the search produced, where it came from, and its scores so far."""

    id: str
    text: str
    parents: tuple[str, ...]
    operator: str
    step: int
    feedback: dict[str, Any] | None = None
    scores: dict[str, dict[str, float]] = field(default_factory=dict)
    demos: tuple[Demo, ...] = ()
    """Few-shot demonstrations sent with the text (user/assistant turns before the input)."""

    def mean(self, split: str) -> float | None:
        """Mean score over the examples of `split` evaluated so far, or None."""
        got = self.scores.get(split)
        return sum(got.values()) / len(got) if got else None

    def n(self, split: str) -> int:
        """How many examples of `split` the mean rests on."""
        return len(self.scores.get(split, {}))

    def to_record(self) -> CandidateRecord:
        """The candidates.jsonl record."""
        return CandidateRecord(
            id=self.id,
            text=self.text,
            parents=list(self.parents),
            operator=self.operator,
            step=self.step,
            feedback=self.feedback,
            scores={
                split: CandidateScore(mean=self.mean(split), n=self.n(split))
                for split in self.scores
            },
            demos=[DemoRecord.model_validate(d.to_json()) for d in self.demos]
            if self.demos
            else None,
        )


@dataclass(frozen=True)
class StepReport:
    """What a strategy tells the engine after each step."""

    name: str
    ranking: tuple[str, ...]
    best_score: float | None = None
    detail: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Plan:
    """The most calls a strategy can make with its parameters, before any budget cap."""

    target_calls: int
    optimizer_calls: int
    layout: Mapping[str, Any] = field(default_factory=dict)
    """The sizes the strategy settled on (rounds, beam, ...), for `run --dry-run`."""
    notes: tuple[str, ...] = ()
    """Lines `run --dry-run` shows about the plan."""
    judge_calls: int = 0
    """Calls to the judge model (a preference search's pairwise judge)."""


class Answer(str):
    """An optimizer's answer as `SearchContext.ask` returns it: the text itself, with why
    generation ended and the meta-prompt it answers.

    It is a str so that strategies handle answers as text, as they always have; passing the
    answer itself to `accept_proposal` lets it reject an answer cut at the token limit and one
    that echoes its meta-prompt. Slicing or editing it gives a plain str, which carries neither.
    """

    finish_reason: str | None
    meta_prompt: str

    def __new__(
        cls, text: str, *, finish_reason: str | None = None, meta_prompt: str = ""
    ) -> Answer:
        """The answer `text`, with its finish reason and the name of its meta-prompt."""
        answer = super().__new__(cls, text)
        answer.finish_reason = finish_reason
        answer.meta_prompt = meta_prompt
        return answer

    @property
    def truncated(self) -> bool:
        """True when the answer was cut off at the optimizer's token limit."""
        return self.finish_reason == FINISH_LENGTH


def is_truncated(raw: str) -> bool:
    """Whether an answer from `SearchContext.ask` was cut off at the token limit (False for
    text that is not an `Answer`, whose ending is unknown)."""
    return isinstance(raw, Answer) and raw.truncated


def answer_items(raw: str) -> list[str]:
    """The delimited items of an optimizer answer (`extract_all`), for answers that hold
    several (reasons, edited prompts).

    Each item is an `Answer` of the same meta-prompt, so `accept_proposal` still filters echoes
    of it. When the answer was cut at the token limit, the item the cut ran into is marked as
    cut (the others were closed before it), so that it is rejected and counted as "truncated".
    """
    meta_prompt = raw.meta_prompt if isinstance(raw, Answer) else ""
    items = extract_all(raw)
    whole = len(extract_all(raw, truncated=True)) if is_truncated(raw) else len(items)
    return [
        Answer(item, finish_reason=FINISH_LENGTH if i >= whole else None, meta_prompt=meta_prompt)
        for i, item in enumerate(items)
    ]


def normalize_prompt(text: str) -> str:
    """The form under which two prompts count as duplicates."""
    return re.sub(r"\s+", " ", text).strip().casefold()


class TextEmbedder(Protocol):
    """The run's embedding model as a strategy reaches it (the engine hands it in)."""

    @property
    def model_id(self) -> str:
        """The "provider:name" of the embedding model."""
        ...

    async def embed(self, texts: Sequence[str]) -> list[tuple[float, ...]]:
        """One vector per text, in order (cached, budgeted and retried by the runtime)."""
        ...


class EmbeddingUnavailable(Exception):
    """No embedding model can embed for this search; the message says why."""


@dataclass(frozen=True)
class Embedded:
    """Vectors from the run's embedding model, and which model made them."""

    model: str
    vectors: list[tuple[float, ...]]


class EventLog:
    """The events of the step in progress, each stamped with the step's number.

    The engine drains the log at each checkpoint, so a step appears in events.jsonl whole or not
    at all; a strategy only ever appends to it, through `SearchContext.event`.
    """

    def __init__(self) -> None:
        self.step = 0
        self._pending: list[dict[str, Any]] = []

    def record(self, kind: str, **data: Any) -> None:
        """Append an event of the current step."""
        self._pending.append({"step": self.step, "event": kind, **data})

    @contextlib.contextmanager
    def stable_order(self) -> Iterator[None]:
        """Within the block, events are put in a fixed order when it ends (even by an exception).

        Concurrent tasks record events in completion order, which varies between runs; sorting
        what the block added by content makes a run's events depend on its seed only.
        """
        mark = len(self._pending)
        try:
            yield
        finally:
            self._pending[mark:] = sorted(self._pending[mark:], key=_event_key)

    @property
    def pending(self) -> tuple[dict[str, Any], ...]:
        """The events not yet written, oldest first."""
        return tuple(self._pending)

    def take(self) -> list[dict[str, Any]]:
        """Remove and return the events not yet written."""
        taken, self._pending = self._pending, []
        return taken


def _event_key(event: Mapping[str, Any]) -> str:
    return json.dumps(event, sort_keys=True, default=str)


class CandidatePool:
    """Every candidate of a search, deduplicated by normalized text, and which of them changed
    since the engine last wrote candidates.jsonl."""

    def __init__(self, log: EventLog) -> None:
        self._log = log
        self._candidates: dict[str, Candidate] = {}
        self._by_text: dict[str, str] = {}
        self._changed: set[str] = set()

    @property
    def candidates(self) -> Mapping[str, Candidate]:
        """The candidates by id, in the order they were added (a read-only view)."""
        return MappingProxyType(self._candidates)

    def add(
        self,
        text: str,
        *,
        parents: Sequence[str] = (),
        operator: str,
        feedback: dict[str, Any] | None = None,
        demos: Sequence[Demo] = (),
    ) -> Candidate | None:
        """Register a new prompt; a duplicate of an existing one is recorded and returns None.
        The same text with other demonstrations (or other answers in them) is another prompt."""
        key = normalize_prompt(text)
        if demos:
            # By answer too: an example with the target's answer and with the expected one
            # are two demonstrations.
            key += "\x00demos:" + "\x00".join(f"{d.id}\x01{d.output}" for d in demos)
        if key in self._by_text:
            self._log.record(
                "duplicate", operator=operator, of=self._by_text[key], parents=list(parents)
            )
            return None
        cand = Candidate(
            id=f"c{len(self._candidates):04d}",
            text=text.strip(),
            parents=tuple(parents),
            operator=operator,
            step=self._log.step,
            feedback=feedback,
            demos=tuple(demos),
        )
        self._candidates[cand.id] = cand
        self._by_text[key] = cand.id
        self._changed.add(cand.id)
        self._log.record("candidate", id=cand.id, operator=operator, parents=list(parents))
        return cand

    def record_scores(
        self,
        cand: Candidate,
        split: str,
        examples: Sequence[Example],
        results: Sequence[ExampleResult],
    ) -> None:
        """Keep a candidate's per-example scores on `split`."""
        kept = cand.scores.setdefault(split, {})
        for example, res in zip(examples, results, strict=True):
            kept[example.id] = res.score
        self._changed.add(cand.id)

    def take_changed(self) -> list[Candidate]:
        """Remove and return the candidates changed since the last call, by id."""
        changed, self._changed = self._changed, set()
        return [self._candidates[c] for c in sorted(changed)]


class SearchContext:
    """What a strategy sees: the training data, the candidates, scoring on training data, the
    optimizer model, the rng, the budget left, and an event log it can only append to.

    Dev and test data, the pending events and the checkpoint bookkeeping stay with the engine
    (`promptopt.search.state.SearchState`): dev is the final gate, and a strategy that could
    score on it would overfit the data that is meant to judge it.
    """

    def __init__(
        self,
        *,
        train: Sequence[Example],
        scorer: Scorer,
        optimizer: Callable[[], ModelClient],
        ledger: BudgetLedger,
        meta_prompts: MetaPromptSet,
        rng: random.Random,
        render_input: Callable[[Example], str],
        task_description: str,
        pool: CandidatePool,
        log: EventLog,
        layout: PromptLayout | None = None,
        judge: JudgeFn | None = None,
        comparator: Comparator | None = None,
        embedder: Callable[[], TextEmbedder | None] | None = None,
    ) -> None:
        self._train = tuple(train)
        self._embedder = embedder
        self._train_by_id = {e.id: e for e in self._train}
        self._scorer = scorer
        self._optimizer = optimizer
        self._ledger = ledger
        self._render_input = render_input
        self._pool = pool
        self._log = log
        self._layout = layout or PromptLayout("")
        self._examples_text: str | None = None
        self._optimizer_budget_spent = False
        self.meta_prompts = meta_prompts
        self.rng = rng
        self.task_description = task_description
        self.judge = judge
        """The judge model's channel, for strategies that ask for preferences (None: no judge
        model is configured)."""
        self.comparator = comparator
        """A comparator the run was given (a person at the terminal), for strategies that ask
        for preferences; None when there is none."""

    @property
    def optimizer_budget_spent(self) -> bool:
        """Whether a request to the optimizer found its call budget spent: `ask` then answers
        with what was paid for, and the engine reports the search as stopped by the budget."""
        return self._optimizer_budget_spent

    @property
    def train(self) -> tuple[Example, ...]:
        """The training examples, the only data a strategy may score on."""
        return self._train

    @property
    def step(self) -> int:
        """The number of the step in progress; its events and new candidates carry it."""
        return self._log.step

    @property
    def candidates(self) -> Mapping[str, Candidate]:
        """Every candidate so far by id, with its scores (a read-only view)."""
        return self._pool.candidates

    def render_input(self, example: Example) -> str:
        """An example's input as the target model sees it."""
        return self._render_input(example)

    def event(self, kind: str, **data: Any) -> None:
        """Record an event for events.jsonl."""
        self._log.record(kind, **data)

    def stable_event_order(self) -> contextlib.AbstractContextManager[None]:
        """A block whose events are put in a fixed order when it ends, for concurrent work whose
        completion order would otherwise decide the order of events.jsonl."""
        return self._log.stable_order()

    def add_candidate(
        self,
        text: str,
        *,
        parents: Sequence[str] = (),
        operator: str,
        feedback: dict[str, Any] | None = None,
    ) -> Candidate | None:
        """Register a new prompt; a duplicate of an existing one is recorded and returns None.

        With a label metric, a prompt that no longer names every label the initial prompt
        names is rejected ("drops_labels") and returns None: the target could not be expected
        to answer with the missing ones.
        """
        missing = self._layout.missing_labels(text)
        if missing:
            self.reject(
                operator,
                "drops_labels",
                f"the prompt no longer names the label(s) {', '.join(missing)}, which the "
                "initial prompt names",
                text,
            )
            return None
        return self._pool.add(text, parents=parents, operator=operator, feedback=feedback)

    @property
    def labels(self) -> tuple[str, ...]:
        """A label metric's labels (empty for other metrics)."""
        return self._layout.labels

    @property
    def demos_spec(self) -> DemosSpec | None:
        """The task's `prompt.demos` when it asks for demonstrations (k > 0), else None."""
        return self._layout.demos

    def add_demo_candidate(
        self,
        base: Candidate,
        demos: Sequence[Demo],
        *,
        operator: str,
        feedback: dict[str, Any] | None = None,
    ) -> Candidate | None:
        """Register `base`'s text with few-shot demonstrations as a new candidate (its parent
        is `base`); the same demonstrations again return None.

        Raises:
            ValueError: a demonstration is not a training example (nothing is added then).
        """
        for demo in demos:
            if demo.id not in self._train_by_id:
                raise ValueError(f"demonstrations come from training examples; {demo.id!r} is not")
        return self._pool.add(
            base.text, parents=[base.id], operator=operator, feedback=feedback, demos=demos
        )

    def reject(self, operator: str, reason: str, message: str, raw: str) -> None:
        """Record a proposal that was not usable, with the reason."""
        self.event("rejected", operator=operator, reason=reason, message=message, raw=raw[:500])

    async def score(self, cand: Candidate, examples: Sequence[Example]) -> list[ExampleResult]:
        """Score a candidate on training examples, concurrently; the scores are kept on the
        candidate under "train".

        Raises:
            ValueError: an example is not one of `train` (nothing is scored then).
        """
        for example in examples:
            if self._train_by_id.get(example.id) != example:
                raise ValueError(
                    f"a strategy scores on training examples only; {example.id!r} is not one"
                )
        result = await self._scorer.evaluate(
            self._layout.render(cand.text),
            examples,
            split="train",
            demos=self._layout.sent_demos(cand.demos),
        )
        if self._scorer.scored:
            self._pool.record_scores(cand, "train", examples, result.examples)
        return list(result.examples)

    async def ask(
        self,
        meta_prompt: str,
        n: int = 1,
        sampling: Mapping[str, Any] | None = None,
        /,
        **values: str,
    ) -> list[str]:
        """Ask the optimizer model `n` samples of a meta-prompt, concurrently, answers in sample
        order; a request that keeps failing is recorded and skipped. `sampling` (such as
        `{"temperature": 1.0}`) replaces the optimizer's own parameters for these requests; the
        arguments before `values` are positional so that no placeholder name is taken. Each
        answer is an `Answer`: hand it to `accept_proposal` as it is.

        Once the optimizer call budget is spent, the samples that were sent are still returned
        (none when nothing could be sent), not thrown away with a BudgetExhausted: the strategy
        goes on to score the proposals it paid for with the target calls it has left."""
        messages = self._meta_messages(meta_prompt, values)
        client = self._optimizer()
        with self.stable_event_order():
            # Every sample runs to its end before a failure (a spent budget, say) is raised, so
            # no answer that was paid for is left unwaited. Where the optimizer honours `n`,
            # the samples are one request, which pays for the meta-prompt once.
            outcomes = await client.complete_samples(messages, n, overrides=sampling)
            answers: list[str | BaseException] = []
            for outcome in outcomes:
                if isinstance(outcome, RequestFailed):
                    self.event("optimizer_error", meta_prompt=meta_prompt, message=str(outcome))
                elif isinstance(outcome, BaseException):
                    answers.append(outcome)
                else:
                    answers.append(
                        Answer(
                            outcome.text,
                            finish_reason=outcome.finish_reason,
                            meta_prompt=meta_prompt,
                        )
                    )
        for answer in answers:
            if (
                isinstance(answer, BudgetExhausted)
                and self._ledger.remaining_calls("optimizer") == 0
            ):
                if not self._optimizer_budget_spent:
                    self._optimizer_budget_spent = True
                    self.event("optimizer_budget_spent", message=str(answer))
            elif isinstance(answer, BaseException):
                raise answer
        return [a for a in answers if isinstance(a, str)]

    def accept_proposal(
        self,
        raw: str,
        *,
        operator: str,
        parents: Sequence[str] = (),
        feedback: dict[str, Any] | None = None,
    ) -> Candidate | None:
        """Extract the instruction from an optimizer's answer and register it, or record why
        it was rejected.

        Every proposal goes through the same checks here: an answer cut at the token limit is
        rejected as "truncated" unless its instruction was closed before the cut (re-asking with
        a larger limit would spend optimizer calls no plan counted, and a small model that runs
        out of tokens is usually rambling); template tags and chatter are stripped; and an
        answer that repeats its meta-prompt's wording (`MetaPrompt.literal_lines`) is rejected
        as "degenerate".
        """
        extraction = extract_instruction(
            raw, echo_of=self._echo_lines(raw, parents), truncated=is_truncated(raw)
        )
        if not extraction.accepted:
            self.reject(operator, extraction.reason or "rejected", extraction.message, raw)
            return None
        return self.add_candidate(
            extraction.text, parents=parents, operator=operator, feedback=feedback
        )

    def _echo_lines(self, raw: str, parents: Sequence[str]) -> list[str]:
        """The fixed wording an answer must not repeat: its meta-prompt's, or every
        meta-prompt's when the answer does not say which it answers; wording a parent prompt
        already holds is left out."""
        name = raw.meta_prompt if isinstance(raw, Answer) else ""
        names = [name] if name in self.meta_prompts else self.meta_prompts.names()
        lines = [line for n in names for line in self.meta_prompts.get(n).literal_lines()]
        candidates = self._pool.candidates
        return echo_pieces(lines, keep=[candidates[p].text for p in parents if p in candidates])

    async def embed(self, texts: Sequence[str]) -> Embedded:
        """The run's embedding model's vectors of `texts`, in order.

        Raises:
            EmbeddingUnavailable: there is no embedding model, it cannot embed (no embeddings
                endpoint, a missing key, an unpriced model under a cost cap) or it keeps
                failing; the message says which. A spent budget or a stop request is raised
                as it is.
        """
        try:
            embedder = self._embedder() if self._embedder is not None else None
            if embedder is None:
                raise EmbeddingUnavailable(
                    "no embedding model: set models.embedding, or use an optimizer on an "
                    "endpoint with embeddings (OpenAI, an OpenAI-compatible server, local:)"
                )
            return Embedded(embedder.model_id, await embedder.embed(texts))
        except (UsageError, ProviderError, MissingDependencyError, RequestFailed) as exc:
            raise EmbeddingUnavailable(str(exc)) from exc

    def remaining_target_calls(self) -> int | None:
        """Target calls the search may still make, or None when uncapped."""
        return self._ledger.remaining_calls("target")

    def remaining_optimizer_calls(self) -> int | None:
        """Optimizer calls the search may still make, or None when uncapped."""
        return self._ledger.remaining_calls("optimizer")

    def remaining_judge_calls(self) -> int | None:
        """Judge calls the search may still make, or None when uncapped."""
        return self._ledger.remaining_calls("judge")

    def task_context(self) -> dict[str, str]:
        """What every meta-prompt may show the optimizer about the task, as text by placeholder
        name: `task_description`, `labels`, `output_format` (the fixed format appended after
        every instruction) and `examples` (a few training examples, never dev or test).

        An item the task does not have is a short sentence saying so, so that a template reads
        well either way.
        """
        labels = self._layout.labels
        return {
            "task_description": self.task_description.strip()
            or "(no description given; infer the task from the examples)",
            "labels": ", ".join(labels) if labels else "(no fixed set of labels)",
            "output_format": self._layout.output_format
            or "(none added separately: the instruction itself says how to write the answer)",
            "examples": self._context_examples(),
        }

    def scored_history(self, n: int = HISTORY_SIZE) -> str:
        """The best `n` candidates scored on training data so far, with their mean training
        scores, in ascending order (the best last), as the optimizer is shown them."""
        # Demonstration sets repeat their instruction's text: the optimizer is shown instructions.
        scored = [c for c in self._pool.candidates.values() if c.n("train") and not c.demos]
        best = sorted(scored, key=lambda c: (c.mean("train") or 0.0, c.n("train")), reverse=True)
        if not best or n <= 0:
            return "(no instruction has been scored yet)"
        blocks = []
        for cand in reversed(best[:n]):
            text = cand.text
            if len(text) > _HISTORY_TEXT_CHARS:
                text = text[: _HISTORY_TEXT_CHARS - 1] + "…"
            blocks.append(
                f"Score {cand.mean('train') or 0.0:.2f} "
                f"(mean over {cand.n('train')} training examples):\n{text}"
            )
        return "\n\n".join(blocks)

    def _context_examples(self) -> str:
        """A few training examples, one per distinct answer first, in training order; the same
        ones for the whole search, and drawn without the search's rng so that adding them
        changed no run's random choices."""
        if self._examples_text is None:
            picked: list[int] = []
            answers: set[str] = set()
            for i, example in enumerate(self._train):
                if len(picked) < CONTEXT_EXAMPLES and example.target not in answers:
                    picked.append(i)
                    answers.add(example.target)
            for i in range(len(self._train)):
                if len(picked) < CONTEXT_EXAMPLES and i not in picked:
                    picked.append(i)
            blocks = []
            for example in (self._train[i] for i in sorted(picked)):
                shown = " ".join(self._render_input(example).split())
                if len(shown) > _CONTEXT_INPUT_CHARS:
                    shown = shown[: _CONTEXT_INPUT_CHARS - 1] + "…"
                # A task without expected answers shows its inputs only: an empty "correct
                # answer" reads as one that is empty.
                answer = f"\nCorrect answer: {example.target}" if example.targets else ""
                blocks.append(f"Example input: {shown}{answer}")
            self._examples_text = "\n\n".join(blocks) or "(no training examples)"
        return self._examples_text

    def _meta_messages(self, name: str, values: Mapping[str, str]) -> tuple[Message, ...]:
        """A meta-prompt rendered with the strategy's values and, for the context placeholders
        it declares (and only those), the task context and the scored history."""
        template = self.meta_prompts.get(name)
        wanted = template.placeholders & CONTEXT_PLACEHOLDERS
        context: dict[str, str] = {}
        if wanted - {"history"}:
            context.update(self.task_context())
        if "history" in wanted:
            context["history"] = self.scored_history()
        return template.render_in_context(context, **values)


class Strategy(Protocol):
    """A search strategy. `search` yields after each step; the engine checkpoints there and
    may stop the search by closing the generator."""

    def plan(self, sizes: Mapping[str, int]) -> Plan:
        """The most calls this strategy makes for splits of these sizes."""
        ...

    def search(self, ctx: SearchContext, initial: Candidate) -> AsyncGenerator[StepReport, None]:
        """Run the search step by step, through `ctx` only; what is not on it (dev data, the
        engine's buffers) is not the strategy's to use."""
        ...


@runtime_checkable
class BudgetedPlanner(Protocol):
    """A strategy that sizes its plan to the search's budgets (rounds, beam, proposals), so
    that `run --dry-run` shows the plan the search will follow."""

    def plan_for_budget(
        self, sizes: Mapping[str, int], target_calls: int | None, optimizer_calls: int | None
    ) -> Plan:
        """The most calls the strategy makes for splits of these sizes when the search may
        make at most these target and optimizer calls (None: uncapped)."""
        ...


@runtime_checkable
class RunFitted(Protocol):
    """A strategy whose plan depends on more of the run than its budgets (the `demos` strategy:
    the task's `prompt.demos`, and whether dollars are capped); the run hands it over before
    planning or searching, so that `run --dry-run` and the search agree."""

    def for_run(self, demos: DemosSpec | None, cost_capped: bool) -> Strategy:
        """The strategy for a run of a task with these demonstration settings (`demos`, the
        task's `prompt.demos`), under a dollar cap or not (`cost_capped`)."""
        ...


@dataclass(frozen=True)
class StrategyInfo:
    """A registry entry: how to build a strategy and what parameters it takes."""

    name: str
    summary: str
    params: type[BaseModel]
    build: Callable[[Any], Strategy]
    presets: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
