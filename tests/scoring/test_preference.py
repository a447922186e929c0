"""The comparison seam: the metric comparator and the choice algebra."""

from __future__ import annotations

import pytest

from promptopt.scoring.preference import Choice, Comparator, MetricComparator
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
