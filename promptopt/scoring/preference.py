"""The comparison seam: which of two answers to the same input is better.

Preference-based search (dueling bandits) never needs a score, only a choice between two
outputs. A `Comparator` makes that choice; where it comes from (the task's metric, a judge model,
a person at the terminal) is recorded with it, so a report can say who decided.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Protocol, runtime_checkable

from promptopt.llm.client import RunStopped
from promptopt.scoring.metrics import JudgeFn
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
    skipped: bool = False
    """The person skipped the pair: no preference was given (the choice is a tie)."""

    def to_json(self) -> dict[str, object]:
        """The record kept in the run folder."""
        return {
            "choice": str(self.choice),
            "source": self.source,
            "detail": self.detail,
            "skipped": self.skipped,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, object]) -> Preference:
        """A preference from its record."""
        detail = data.get("detail")
        return cls(
            Choice(str(data["choice"])),
            str(data["source"]),
            None if detail is None else str(detail),
            bool(data.get("skipped", False)),
        )


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


def same_answer(first: ExampleResult, second: ExampleResult) -> bool:
    """Whether two answers are the same text (up to surrounding whitespace): a tie that needs
    no judge and no person."""
    return first.output.strip() == second.output.strip()


def _shown(score: float | None) -> str:
    return "error" if score is None else f"{score:.3g}"


PAIRWISE_JUDGE_SYSTEM = (
    "You compare two answers to the same input and decide which one is better by the rubric. "
    "Judge the content, not the length or the order in which the answers are shown."
)
DEFAULT_RUBRIC = "The better answer does the task correctly, completely and in the form asked."
_VERDICT = re.compile(r"better\s*[:=]\s*(a|b|tie)\b", re.IGNORECASE)


def pairwise_user_message(
    rubric: str, task_description: str, example: Example, a: str, b: str
) -> str:
    """The user message a pairwise judge receives: answers shown as A and B."""
    reference = f"## Reference answer\n{example.target}\n\n" if example.target else ""
    task = f"## Task\n{task_description}\n\n" if task_description else ""
    return (
        f"{task}## Rubric\n{rubric}\n\n"
        f"## Input\n{example.fields.get('input', '')}\n\n"
        f"{reference}"
        f"## Answer A\n{a}\n\n"
        f"## Answer B\n{b}\n\n"
        "End with one line: 'BETTER: A', 'BETTER: B' or 'BETTER: TIE'."
    )


def parse_verdict(reply: str) -> Choice | None:
    """The judge's verdict (A is the first answer shown), the last one given; None when the
    reply has none."""
    found = _VERDICT.findall(reply)
    if not found:
        return None
    return {"a": Choice.FIRST, "b": Choice.SECOND, "tie": Choice.TIE}[found[-1].lower()]


class JudgeComparator:
    """Preferences from a judge model, asked twice with the answers in both orders to cancel
    its position bias: the verdicts must agree, and a disagreement (or a reply without a
    verdict) is a tie. The two requests go through the judge's client, so they are cached and
    budgeted like every other call."""

    source = "judge"

    def __init__(self, judge: JudgeFn, rubric: str = DEFAULT_RUBRIC, task: str = "") -> None:
        """A comparator that sends its questions through `judge`."""
        self._judge = judge
        self.rubric = rubric
        self.task = task

    async def compare(
        self, example: Example, first: ExampleResult, second: ExampleResult
    ) -> Preference:
        """Ask first-then-second and second-then-first; keep the verdict only if both agree.
        Two identical answers tie without a question."""
        if first.error is not None or second.error is not None:
            return await MetricComparator().compare(example, first, second)
        if same_answer(first, second):
            return Preference(Choice.TIE, self.source, "identical answers")
        forward, backward = await asyncio.gather(
            self._judge(
                PAIRWISE_JUDGE_SYSTEM,
                pairwise_user_message(self.rubric, self.task, example, first.output, second.output),
            ),
            self._judge(
                PAIRWISE_JUDGE_SYSTEM,
                pairwise_user_message(self.rubric, self.task, example, second.output, first.output),
            ),
        )
        one, two = parse_verdict(forward), parse_verdict(backward)
        swapped = None if two is None else two.flipped()
        choice = one if one is not None and one == swapped else Choice.TIE
        detail = f"shown first-second: {_said(one)}; shown second-first: {_said(two)}"
        return Preference(choice, self.source, detail)


def _said(choice: Choice | None) -> str:
    return {None: "no verdict", Choice.FIRST: "A", Choice.SECOND: "B", Choice.TIE: "tie"}[choice]


HumanAsk = Callable[[Example, ExampleResult, ExampleResult], Awaitable[str]]
"""Shows a person the input and the two answers and returns the key they pressed: "1" (the
first is better), "2", "=" (a tie), "s" (skip) or "q" (save and quit)."""

HUMAN_KEYS = {"1": Choice.FIRST, "2": Choice.SECOND, "=": Choice.TIE}


class HumanComparator:
    """Preferences from a person at the terminal; the terminal itself is the `ask` callback
    (the command line draws it), so this class never prints."""

    source = "human"

    def __init__(self, ask: HumanAsk) -> None:
        """A comparator that asks through `ask`."""
        self._ask = ask

    async def compare(
        self, example: Example, first: ExampleResult, second: ExampleResult
    ) -> Preference:
        """The person's answer; "q" stops the run (resumable), "s" is a skip. Two identical
        answers tie without a question."""
        if first.error is None and second.error is None and same_answer(first, second):
            return Preference(Choice.TIE, self.source, "identical answers")
        key = (await self._ask(example, first, second)).strip().lower()
        if key == "q":
            raise RunStopped("stopped at the person's request")
        if key == "s":
            return Preference(Choice.TIE, self.source, "skipped", skipped=True)
        if key not in HUMAN_KEYS:
            raise ValueError(f"unknown answer {key!r}: expected 1, 2, =, s or q")
        return Preference(HUMAN_KEYS[key], self.source)


def pair_key(example: Example, first: ExampleResult, second: ExampleResult) -> str:
    """What identifies a question: the input and the two answers, in the order shown."""
    blob = json.dumps([example.id, first.output, second.output], ensure_ascii=False)
    return hashlib.sha256(blob.encode()).hexdigest()


class RecordedComparator:
    """A comparator whose every answer is appended to a JSONL file before it is used, and
    replayed from it when the same question comes again (a resumed run), so a person never
    answers the same pair twice. A pair asked in the other order replays the flipped answer."""

    def __init__(self, inner: Comparator, path: Path) -> None:
        """Wrap `inner`, keeping its answers in `path` (read now if it exists)."""
        self.inner = inner
        self.source = inner.source
        self.path = path
        self.answers: dict[str, Preference] = {}
        self.replayed = 0
        if path.exists():
            for line in path.read_text(encoding="utf-8").splitlines():
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                    self.answers[str(record["key"])] = Preference.from_json(record)
                except (ValueError, KeyError, TypeError):
                    # A line cut by a kill mid-write: that answer is asked again.
                    continue

    async def compare(
        self, example: Example, first: ExampleResult, second: ExampleResult
    ) -> Preference:
        """The recorded answer if there is one, else the inner comparator's, recorded."""
        key = pair_key(example, first, second)
        if key in self.answers:
            self.replayed += 1
            return self.answers[key]
        swapped = self.answers.get(pair_key(example, second, first))
        if swapped is not None:
            self.replayed += 1
            return Preference(
                swapped.choice.flipped(), swapped.source, swapped.detail, swapped.skipped
            )
        pref = await self.inner.compare(example, first, second)
        record = {"key": key, "example": example.id, **pref.to_json()}
        with self.path.open("a", encoding="utf-8") as fh:
            fh.write(json.dumps(record, ensure_ascii=False) + "\n")
            fh.flush()
        self.answers[key] = pref
        return pref
