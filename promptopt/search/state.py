"""The engine's side of a search: what a strategy never sees.

The engine keeps the held-out data (dev for the final gate, test for the verdict), the events
and candidate changes of the step in progress until it checkpoints them, and the step counter.
It hands the strategy a `SearchContext` built on the same candidates and event log, which can
add to them but not read the buffers back, reorder them or reach the held-out data.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

from promptopt.llm.budget import BudgetLedger
from promptopt.llm.client import ModelClient
from promptopt.scoring.metrics import JudgeFn
from promptopt.scoring.preference import Comparator
from promptopt.scoring.scorer import ExampleResult, Scorer
from promptopt.search.context import (
    Candidate,
    CandidatePool,
    EventLog,
    SearchContext,
    TextEmbedder,
)
from promptopt.search.meta_prompts import MetaPromptSet
from promptopt.task.example import Example
from promptopt.task.prompt import PromptLayout

HeldOut = Literal["dev", "test"]


class SearchState:
    """One search as the engine keeps it: the candidates, the pending events and changes, the
    step counter, the held-out splits, and the strategy's narrow view of it all (`context`)."""

    def __init__(
        self,
        *,
        train: Sequence[Example],
        dev: Sequence[Example],
        test: Sequence[Example] = (),
        scorer: Scorer,
        optimizer: Callable[[], ModelClient],
        ledger: BudgetLedger,
        meta_prompts: MetaPromptSet,
        rng: random.Random,
        render_input: Callable[[Example], str],
        task_description: str = "",
        layout: PromptLayout | None = None,
        judge: JudgeFn | None = None,
        comparator: Comparator | None = None,
        embedder: Callable[[], TextEmbedder | None] | None = None,
    ) -> None:
        self._log = EventLog()
        self._pool = CandidatePool(self._log)
        self._scorer = scorer
        self.layout = layout or PromptLayout("")
        self._held_out: dict[HeldOut, tuple[Example, ...]] = {
            "dev": tuple(dev),
            "test": tuple(test),
        }
        self.context = SearchContext(
            train=train,
            scorer=scorer,
            optimizer=optimizer,
            ledger=ledger,
            meta_prompts=meta_prompts,
            rng=rng,
            render_input=render_input,
            task_description=task_description,
            pool=self._pool,
            log=self._log,
            layout=self.layout,
            judge=judge,
            comparator=comparator,
            embedder=embedder,
        )

    @property
    def dev(self) -> tuple[Example, ...]:
        """The dev examples, which choose the best prompt once the search is over."""
        return self._held_out["dev"]

    @property
    def test(self) -> tuple[Example, ...]:
        """The test examples, which judge the chosen prompt against the initial one."""
        return self._held_out["test"]

    @property
    def step(self) -> int:
        """The number of the step in progress; its events and new candidates carry it."""
        return self._log.step

    @step.setter
    def step(self, value: int) -> None:
        self._log.step = value

    @property
    def candidates(self) -> Mapping[str, Candidate]:
        """Every candidate by id (a read-only view)."""
        return self._pool.candidates

    @property
    def pending_events(self) -> tuple[dict[str, Any], ...]:
        """The events recorded since the last checkpoint, oldest first."""
        return self._log.pending

    def event(self, kind: str, **data: Any) -> None:
        """Record an engine event (the stop reason, the final gate) for events.jsonl."""
        self._log.record(kind, **data)

    def add_candidate(self, text: str, *, operator: str) -> Candidate | None:
        """Register a prompt the engine brings in itself (the task's initial prompt)."""
        return self._pool.add(text, operator=operator)

    @property
    def scored(self) -> bool:
        """Whether the task has a metric (False: the search compares answers instead)."""
        return self._scorer.scored

    def take_step(self) -> tuple[list[dict[str, Any]], list[Candidate]]:
        """The pending events and the changed candidates (by id), removed to be written."""
        return self._log.take(), self._pool.take_changed()

    def discard_step(self) -> None:
        """Drop the pending events and changes: an interrupted step is redone on resume and
        records them then."""
        self.take_step()

    async def prefetch_held_out(self, cands: Sequence[Candidate], split: HeldOut) -> None:
        """With batches on, fetch the answers of all of these candidates on dev or test in one
        batch, before they are scored one after the other; does nothing otherwise."""
        examples = self._held_out[split]
        await self._scorer.prefetch(
            [(self.layout.render(c.text), examples, self.layout.sent_demos(c.demos)) for c in cands]
        )

    async def score_held_out(self, cand: Candidate, split: HeldOut) -> list[ExampleResult]:
        """Score a candidate on all of dev or test; the scores are kept on the candidate (when
        the task has a metric: otherwise these are its answers only)."""
        examples = self._held_out[split]
        result = await self._scorer.evaluate(
            self.layout.render(cand.text),
            examples,
            split=split,
            demos=self.layout.sent_demos(cand.demos),
        )
        if self._scorer.scored:
            self._pool.record_scores(cand, split, examples, result.examples)
        return list(result.examples)
