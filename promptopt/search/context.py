"""The strategy plug point: candidates, the search context a strategy works through, and the
protocol a strategy implements."""

from __future__ import annotations

import random
import re
from collections.abc import AsyncGenerator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from pydantic import BaseModel

from promptopt.llm.budget import BudgetLedger
from promptopt.llm.client import ModelClient, RequestFailed
from promptopt.run.records import CandidateRecord, CandidateScore
from promptopt.scoring.scorer import ExampleResult, Scorer
from promptopt.search.extract import extract_instruction
from promptopt.search.meta_prompts import MetaPromptSet
from promptopt.task.example import Example


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


def normalize_prompt(text: str) -> str:
    """The form under which two prompts count as duplicates."""
    return re.sub(r"\s+", " ", text).strip().casefold()


class SearchContext:
    """What a strategy sees: the data, the candidates, scoring and the optimizer model.

    Events are buffered and written by the engine at each checkpoint, so a step appears in the
    run folder whole or not at all.
    """

    def __init__(
        self,
        *,
        train: Sequence[Example],
        dev: Sequence[Example],
        scorer: Scorer,
        optimizer: Callable[[], ModelClient],
        ledger: BudgetLedger,
        meta_prompts: MetaPromptSet,
        rng: random.Random,
        render_input: Callable[[Example], str],
        task_description: str = "",
    ) -> None:
        self.train = tuple(train)
        self.dev = tuple(dev)
        self.scorer = scorer
        self._optimizer = optimizer
        self.ledger = ledger
        self.meta_prompts = meta_prompts
        self.rng = rng
        self.render_input = render_input
        self.task_description = task_description
        self.candidates: dict[str, Candidate] = {}
        self._by_text: dict[str, str] = {}
        self.step = 0
        self.pending_events: list[dict[str, Any]] = []
        self.changed: set[str] = set()

    def event(self, kind: str, **data: Any) -> None:
        """Record an event for events.jsonl."""
        self.pending_events.append({"step": self.step, "event": kind, **data})

    def add_candidate(
        self,
        text: str,
        *,
        parents: Sequence[str] = (),
        operator: str,
        feedback: dict[str, Any] | None = None,
    ) -> Candidate | None:
        """Register a new prompt; a duplicate of an existing one is recorded and returns None."""
        key = normalize_prompt(text)
        if key in self._by_text:
            self.event("duplicate", operator=operator, of=self._by_text[key], parents=list(parents))
            return None
        cand = Candidate(
            id=f"c{len(self.candidates):04d}",
            text=text.strip(),
            parents=tuple(parents),
            operator=operator,
            step=self.step,
            feedback=feedback,
        )
        self.candidates[cand.id] = cand
        self._by_text[key] = cand.id
        self.changed.add(cand.id)
        self.event("candidate", id=cand.id, operator=operator, parents=list(parents))
        return cand

    def reject(self, operator: str, reason: str, message: str, raw: str) -> None:
        """Record a proposal that was not usable, with the reason."""
        self.event("rejected", operator=operator, reason=reason, message=message, raw=raw[:500])

    async def score(
        self, cand: Candidate, examples: Sequence[Example], split: str
    ) -> list[ExampleResult]:
        """Score a candidate on examples, concurrently; the scores are kept on the candidate."""
        result = await self.scorer.evaluate(cand.text, examples, split=split)
        kept = cand.scores.setdefault(split, {})
        for example, res in zip(examples, result.examples, strict=True):
            kept[example.id] = res.score
        self.changed.add(cand.id)
        return list(result.examples)

    async def ask(self, meta_prompt: str, n: int = 1, **values: str) -> list[str]:
        """Ask the optimizer model `n` samples of a meta-prompt; a request that keeps failing is
        recorded and skipped."""
        messages = self.meta_prompts.get(meta_prompt).render(**values)
        client = self._optimizer()
        texts: list[str] = []
        for i in range(n):
            try:
                texts.append((await client.complete(messages, sample_index=i)).text)
            except RequestFailed as exc:
                self.event("optimizer_error", meta_prompt=meta_prompt, message=str(exc))
        return texts

    def accept_proposal(
        self,
        raw: str,
        *,
        operator: str,
        parents: Sequence[str] = (),
        feedback: dict[str, Any] | None = None,
    ) -> Candidate | None:
        """Extract the instruction from an optimizer's answer and register it, or record why
        it was rejected."""
        extraction = extract_instruction(raw)
        if not extraction.accepted:
            self.reject(operator, extraction.reason or "rejected", extraction.message, raw)
            return None
        return self.add_candidate(
            extraction.text, parents=parents, operator=operator, feedback=feedback
        )

    def remaining_target_calls(self) -> int | None:
        """Target calls the search may still make, or None when uncapped."""
        return self.ledger.remaining_calls("target")

    def remaining_optimizer_calls(self) -> int | None:
        """Optimizer calls the search may still make, or None when uncapped."""
        return self.ledger.remaining_calls("optimizer")


class Strategy(Protocol):
    """A search strategy. `search` yields after each step; the engine checkpoints there and
    may stop the search by closing the generator."""

    def plan(self, sizes: Mapping[str, int]) -> Plan:
        """The most calls this strategy makes for splits of these sizes."""
        ...

    def search(self, ctx: SearchContext, initial: Candidate) -> AsyncGenerator[StepReport, None]:
        """Run the search step by step."""
        ...


@dataclass(frozen=True)
class StrategyInfo:
    """A registry entry: how to build a strategy and what parameters it takes."""

    name: str
    summary: str
    params: type[BaseModel]
    build: Callable[[Any], Strategy]
    presets: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
