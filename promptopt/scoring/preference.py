"""The comparison seam: which of two answers to the same input is better.

Preference-based search (dueling bandits) never needs a score, only a choice between two
outputs. A `Comparator` makes that choice; where it comes from (the task's metric, a judge model,
a person at the terminal) is recorded with it, so a report can say who decided.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol, runtime_checkable

from promptopt.scoring.scorer import ExampleResult
from promptopt.task.example import Example


class Choice(StrEnum):
    """The outcome of one comparison."""

    FIRST = "first"
    SECOND = "second"
    TIE = "tie"

    def flipped(self) -> Choice:
        """The same outcome seen with the two answers swapped."""
        if self is Choice.FIRST:
            return Choice.SECOND
        if self is Choice.SECOND:
            return Choice.FIRST
        return Choice.TIE

    @property
    def first_wins(self) -> float:
        """The first answer's share of the win: 1, 0, or 0.5 for a tie (the Bradley-Terry
        target)."""
        return {Choice.FIRST: 1.0, Choice.SECOND: 0.0, Choice.TIE: 0.5}[self]


@dataclass(frozen=True)
class Preference:
    """A choice between two answers and who made it."""

    choice: Choice
    source: str
    """"metric", "judge" or "human"."""
    detail: str | None = None
    """Why, when the source says (a judge's two verdicts, a metric's two scores)."""


@runtime_checkable
class Comparator(Protocol):
    """Decides which of two answers to the same input is better."""

    source: str

    async def compare(
        self, example: Example, first: ExampleResult, second: ExampleResult
    ) -> Preference:
        """The preference between `first` and `second`, two answers to `example`."""
        ...


class MetricComparator:
    """Preferences from the task's metric, as the APOHF paper simulates feedback: the answer
    with the higher score wins, equal scores tie, and an answer that failed loses to one that
    did not."""

    source = "metric"

    async def compare(
        self, example: Example, first: ExampleResult, second: ExampleResult
    ) -> Preference:
        """The preference the two answers' metric scores imply."""
        a = None if first.error is not None else first.score
        b = None if second.error is not None else second.score
        if a is None and b is None:
            choice = Choice.TIE
        elif b is None or (a is not None and a > b):
            choice = Choice.FIRST
        elif a is None or b > a:
            choice = Choice.SECOND
        else:
            choice = Choice.TIE
        return Preference(choice, self.source, f"scores {_shown(a)} vs {_shown(b)}")


def _shown(score: float | None) -> str:
    return "error" if score is None else f"{score:.3g}"
