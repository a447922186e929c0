"""The comparison seam: the metric comparator and the choice algebra."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from promptopt.llm.client import RunStopped
from promptopt.scoring.preference import (
    Choice,
    Comparator,
    HumanComparator,
    JudgeComparator,
    MetricComparator,
    RecordedComparator,
    pairwise_user_message,
    parse_verdict,
)
from promptopt.scoring.scorer import ExampleResult
from promptopt.task.example import Example

EXAMPLE = Example(id="e1", fields={"input": "2+2?"}, targets=("4",))


def result(score: float, error: str | None = None) -> ExampleResult:
    return ExampleResult(id="e1", output="x", score=score, error=error)


@pytest.mark.parametrize(
    ("a", "b", "want"),
    [
        (result(1.0), result(0.0), Choice.FIRST),
        (result(0.2), result(0.7), Choice.SECOND),
        (result(0.5), result(0.5), Choice.TIE),
        (result(0.0, "HTTP 500"), result(0.0), Choice.SECOND),
        (result(0.0), result(0.0, "timeout"), Choice.FIRST),
        (result(0.0, "HTTP 500"), result(0.0, "timeout"), Choice.TIE),
    ],
)
async def test_the_metric_prefers_the_higher_score_and_an_answer_over_an_error(
    a: ExampleResult, b: ExampleResult, want: Choice
) -> None:
    comparator = MetricComparator()
    assert isinstance(comparator, Comparator)
    pref = await comparator.compare(EXAMPLE, a, b)
    assert pref.choice is want and pref.source == "metric"
    # Swapping the answers swaps the choice.
    assert (await comparator.compare(EXAMPLE, b, a)).choice is want.flipped()


def test_choice_shares() -> None:
    assert [c.first_wins for c in (Choice.FIRST, Choice.TIE, Choice.SECOND)] == [1.0, 0.5, 0.0]
    assert Choice.TIE.flipped() is Choice.TIE


class ScriptedJudge:
    """A judge that records what it was asked and answers from a function of (A, B)."""

    def __init__(self, verdict: Callable[[str, str], str]) -> None:
        self.verdict = verdict
        self.asked: list[tuple[str, str]] = []

    async def __call__(self, system: str, user: str) -> str:
        a = user.split("## Answer A\n")[1].split("\n\n")[0]
        b = user.split("## Answer B\n")[1].split("\n\n")[0]
        self.asked.append((a, b))
        return f"Reasoning...\nBETTER: {self.verdict(a, b)}"


def answer(text: str) -> ExampleResult:
    return ExampleResult(id="e1", output=text, score=0.0)


async def test_the_judge_is_asked_both_orders_and_agreement_decides() -> None:
    judge = ScriptedJudge(lambda a, b: "A" if a == "4" else "B")
    comparator = JudgeComparator(judge, "Correct arithmetic wins.", "Add numbers.")
    pref = await comparator.compare(EXAMPLE, answer("5"), answer("4"))
    assert judge.asked == [("5", "4"), ("4", "5")]
    assert pref.choice is Choice.SECOND and pref.source == "judge"
    assert pref.detail == "shown first-second: B; shown second-first: A"


async def test_a_position_biased_judge_gives_ties() -> None:
    always_a = ScriptedJudge(lambda a, b: "A")
    pref = await JudgeComparator(always_a).compare(EXAMPLE, answer("5"), answer("4"))
    assert pref.choice is Choice.TIE


async def test_a_reply_without_a_verdict_is_a_tie_and_errors_decide_without_the_judge() -> None:
    async def mumbles(system: str, user: str) -> str:
        return "Both have merit."

    assert (
        await JudgeComparator(mumbles).compare(EXAMPLE, answer("5"), answer("4"))
    ).choice is Choice.TIE
    failed = ExampleResult(id="e1", output="", score=0.0, error="HTTP 500")
    never = ScriptedJudge(lambda a, b: "A")
    pref = await JudgeComparator(never).compare(EXAMPLE, failed, answer("4"))
    assert pref.choice is Choice.SECOND and never.asked == []


def test_the_judge_message_shows_rubric_task_input_reference_and_both_answers() -> None:
    msg = pairwise_user_message("Be right.", "Add numbers.", EXAMPLE, "five", "four")
    for part in ("Be right.", "Add numbers.", "2+2?", "## Reference answer\n4", "five", "four"):
        assert part in msg
    assert msg.index("## Answer A\nfive") < msg.index("## Answer B\nfour")
    assert parse_verdict("I think BETTER: b. Final: better = TIE") is Choice.TIE
    assert parse_verdict("no verdict") is None


async def test_recorded_answers_are_replayed_and_never_asked_twice(tmp_path: Path) -> None:
    asked: list[tuple[str, str]] = []
    keys = iter(["1", "s", "2"])

    async def person(example: Example, a: ExampleResult, b: ExampleResult) -> str:
        asked.append((a.output, b.output))
        return next(keys)

    path = tmp_path / "preferences.jsonl"
    first = RecordedComparator(HumanComparator(person), path)
    assert (await first.compare(EXAMPLE, answer("4"), answer("5"))).choice is Choice.FIRST
    skipped = await first.compare(EXAMPLE, answer("4"), answer("6"))
    assert skipped.skipped and skipped.choice is Choice.TIE
    # A later run reads the file: the same pair, in either order, is not asked again.
    again = RecordedComparator(HumanComparator(person), path)
    assert (await again.compare(EXAMPLE, answer("4"), answer("5"))).choice is Choice.FIRST
    assert (await again.compare(EXAMPLE, answer("5"), answer("4"))).choice is Choice.SECOND
    assert (await again.compare(EXAMPLE, answer("6"), answer("4"))).skipped
    assert (await again.compare(EXAMPLE, answer("7"), answer("4"))).choice is Choice.SECOND
    assert asked == [("4", "5"), ("4", "6"), ("7", "4")]
    assert again.replayed == 3
    assert len(path.read_text().splitlines()) == 3


async def test_a_torn_last_line_is_asked_again_and_q_stops_the_run(tmp_path: Path) -> None:
    path = tmp_path / "preferences.jsonl"
    path.write_text('{"key": "abc", "choice": "fir')

    async def quits(example: Example, a: ExampleResult, b: ExampleResult) -> str:
        return "q"

    recorded = RecordedComparator(HumanComparator(quits), path)
    assert recorded.answers == {}
    with pytest.raises(RunStopped):
        await recorded.compare(EXAMPLE, answer("4"), answer("5"))


async def test_identical_answers_tie_without_asking_the_judge_or_the_person() -> None:
    judge = ScriptedJudge(lambda a, b: "A")
    pref = await JudgeComparator(judge).compare(EXAMPLE, answer("4"), answer(" 4\n"))
    assert pref.choice is Choice.TIE and pref.detail == "identical answers"
    assert judge.asked == []

    async def person(example: Example, a: ExampleResult, b: ExampleResult) -> str:
        raise AssertionError("a person was asked to compare two identical answers")

    pref = await HumanComparator(person).compare(EXAMPLE, answer("4"), answer("4"))
    assert pref.choice is Choice.TIE and not pref.skipped


def test_the_judge_message_of_an_example_without_targets_has_no_reference() -> None:
    unlabelled = Example(id="u1", fields={"input": "a review"}, targets=())
    msg = pairwise_user_message("Be brief.", "", unlabelled, "short", "long answer")
    assert "Reference answer" not in msg
    assert "## Input\na review" in msg and "## Answer A\nshort" in msg
