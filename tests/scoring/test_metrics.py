"""Tests for promptopt.scoring.metrics: every built-in metric, its edge cases, and the registry."""

from __future__ import annotations

import asyncio
import inspect
from typing import Any, get_args

import pytest

from promptopt.errors import PromptoptError, UsageError
from promptopt.scoring import metrics
from promptopt.scoring.metrics import (
    JUDGE_SYSTEM,
    METRICS,
    Metric,
    apply_metric,
    build_metric,
    first_number,
    normalize_answer,
    parse_json_output,
    parse_judge_score,
    predict_label,
    rouge_l,
    token_f1,
)
from promptopt.task.example import Example
from promptopt.task.metricspec import MetricSpec, MetricType
from tests.support import FIXTURES

METRIC_FILES = FIXTURES / "metrics"
SENTIMENT = ["Positive", "Negative", "Neutral"]


def ex(*targets: str, input: str = "some input", id: str = "ex1") -> Example:
    return Example(id=id, fields={"input": input}, targets=targets)


def sync_metric(metric_type: MetricType, **options: Any) -> Metric:
    metric = build_metric(MetricSpec(type=metric_type, **options), base_dir=METRIC_FILES)
    assert not inspect.iscoroutinefunction(metric)
    return metric  # type: ignore[return-value]


def score(metric_type: MetricType, output: str, example: Example, **options: Any) -> float:
    return sync_metric(metric_type, **options)(output, example)


# --- registry ----------------------------------------------------------------------------------


def test_registry_covers_every_metric_type() -> None:
    assert set(METRICS) == set(get_args(MetricType))


def test_unknown_type_lists_valid_names() -> None:
    spec = MetricSpec.model_construct(type="bleu")  # bypasses validation, as a plugin bug might
    with pytest.raises(UsageError, match=r"unknown metric 'bleu'.*exact.*label.*rouge_l"):
        build_metric(spec, base_dir=METRIC_FILES)


# --- label -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("output", "expected"),
    [
        ("Positive", "Positive"),
        ("positive", "Positive"),
        ("  **Negative**  ", "Negative"),
        ('"Neutral"', "Neutral"),
        ("Answer: Positive.", "Positive"),
        ("The sentiment of this review is clearly negative, not positive.", "Negative"),
        ("Positive.\nThe reviewer never says anything negative.", "Positive"),
        ("I cannot tell.", None),
        ("", None),
        ("positively glowing", None),  # a longer word is not a mention of the label
    ],
)
def test_predict_label(output: str, expected: str | None) -> None:
    assert predict_label(output, SENTIMENT) == expected


def test_predict_label_prefers_longer_label_at_same_position() -> None:
    labels = ["not", "not entailment", "entailment"]
    assert predict_label("Not entailment", labels) == "not entailment"
    assert predict_label("not", labels) == "not"
    assert predict_label("Entailment.", labels) == "entailment"


def test_predict_label_keeps_symbols_inside_labels() -> None:
    labels = ["C", "C++", "C#"]
    assert predict_label("C++.", labels) == "C++"
    assert predict_label("Written in C#", labels) == "C#"
    assert predict_label("plain C!", labels) == "C"
    assert score("label", "**C++**", ex("c++"), labels=labels) == 1.0


def test_predict_label_prefix_word_without_boundary() -> None:
    labels = ["Number", "Numbers"]
    assert predict_label("numbers", labels) == "Numbers"
    assert predict_label("Number: 4", labels) == "Number"


def test_label_metric_scores() -> None:
    assert score("label", "Answer: Positive.", ex("Positive"), labels=SENTIMENT) == 1.0
    assert score("label", "**negative**", ex("Negative"), labels=SENTIMENT) == 1.0
    assert score("label", "Negative", ex("Positive"), labels=SENTIMENT) == 0.0
    assert score("label", "no idea", ex("Positive"), labels=SENTIMENT) == 0.0


def test_label_metric_target_case_insensitive_and_multiple_targets() -> None:
    assert score("label", "Neutral", ex("neutral"), labels=SENTIMENT) == 1.0
    assert score("label", "Neutral", ex("Positive", "Neutral"), labels=SENTIMENT) == 1.0


def test_label_metric_rejects_blank_label() -> None:
    with pytest.raises(UsageError, match=r"metric\.labels"):
        sync_metric("label", labels=["Positive", "**"])


# --- exact -------------------------------------------------------------------------------------


def test_normalize_answer() -> None:
    assert normalize_answer("  The Answer is: Paris!\nBecause it is.") == "the answer is paris"
    assert normalize_answer("\n\n  Yes.  ") == "yes"
    assert normalize_answer("") == ""


def test_exact_normalized() -> None:
    assert score("exact", "Paris.", ex("paris")) == 1.0
    assert score("exact", "  PARIS\nIt is the capital.", ex("Paris")) == 1.0
    assert score("exact", "Paris, France", ex("Paris")) == 0.0
    assert score("exact", "Lyon", ex("Paris", "Lyon")) == 1.0


def test_exact_raw() -> None:
    assert score("exact", "Paris", ex("Paris"), normalize=False) == 1.0
    assert score("exact", "Paris.", ex("Paris"), normalize=False) == 0.0
    assert score("exact", "paris", ex("Paris"), normalize=False) == 0.0


# --- contains / icontains ----------------------------------------------------------------------


def test_contains_is_case_sensitive() -> None:
    assert score("contains", "The capital is Paris.", ex("Paris")) == 1.0
    assert score("contains", "the capital is paris.", ex("Paris")) == 0.0
    assert score("contains", "It is Lyon.", ex("Paris", "Lyon")) == 1.0


def test_icontains_ignores_case() -> None:
    assert score("icontains", "the capital is PARIS.", ex("Paris")) == 1.0
    assert score("icontains", "the capital is Rome.", ex("Paris")) == 0.0
    assert score("icontains", "STRASSE", ex("straße")) == 1.0  # casefold, not just lower


# --- regex -------------------------------------------------------------------------------------


def test_regex_searches_anywhere() -> None:
    assert score("regex", "Result: 42 apples", ex("x"), pattern=r"\d+ apples") == 1.0
    assert score("regex", "no fruit here", ex("x"), pattern=r"\d+ apples") == 0.0
    assert score("regex", "tail ABC", ex("x"), pattern=r"^ABC") == 0.0


def test_bad_regex_names_the_option() -> None:
    with pytest.raises(UsageError, match=r"metric\.pattern.*'\(unclosed'"):
        sync_metric("regex", pattern="(unclosed")


def test_regex_keeps_pythons_syntax() -> None:
    # Lookarounds, backreferences and named groups, which a linear-time engine would refuse.
    metric = sync_metric("regex", pattern=r"(?<=: )(?P<w>\w)(?P=w)(?!x)")
    assert metric("answer: ooh", ex("x")) == 1.0
    assert metric("answer: oh", ex("x")) == 0.0


def test_catastrophic_backtracking_is_an_error_naming_the_pattern(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(metrics, "REGEX_TIMEOUT_S", 0.05)
    metric = sync_metric("regex", pattern="(a|aa)+$")
    assert metric("a" * 40, ex("x")) == 1.0
    # Unbounded, this search takes about 2^28 steps: minutes.
    with pytest.raises(PromptoptError) as info:
        metric("a" * 40 + "b", ex("x", id="r7"))
    message = str(info.value)
    assert message.startswith("example r7: metric.pattern '(a|aa)+$' did not finish within 0.05 s")
    assert "simplify the pattern" in message and info.value.__cause__ is not None


# --- f1 / rouge_l ------------------------------------------------------------------------------


def test_token_f1_values() -> None:
    assert token_f1(["a", "b"], ["a", "b"]) == 1.0
    assert token_f1(["a", "b", "c", "d"], ["a", "b"]) == pytest.approx(2 / 3)
    assert token_f1(["x"], ["a"]) == 0.0
    assert token_f1([], []) == 1.0
    assert token_f1([], ["a"]) == 0.0
    # repeated tokens count only as often as they occur in the reference
    assert token_f1(["a", "a"], ["a"]) == pytest.approx(2 * 0.5 * 1 / 1.5)


def test_f1_metric_normalizes_and_takes_best_target() -> None:
    # "The" is an article and "." punctuation: both vanish under normalization
    assert score("f1", "The Eiffel Tower.", ex("eiffel tower")) == 1.0
    assert score("f1", "Eiffel Tower in Paris", ex("Louvre", "Eiffel Tower")) == pytest.approx(
        2 * 0.5 * 1 / 1.5
    )
    assert score("f1", "Eiffel Tower.", ex("eiffel tower"), normalize=False) == 0.0


def test_rouge_l_values() -> None:
    ref = ["the", "cat", "sat", "on", "the", "mat"]
    hyp = ["the", "cat", "was", "on", "the", "mat"]
    # LCS = the cat on the mat = 5 tokens, P = R = 5/6
    assert rouge_l(hyp, ref) == pytest.approx(5 / 6)
    assert rouge_l(ref, ref) == 1.0
    assert rouge_l(["x"], ref) == 0.0
    assert rouge_l([], []) == 1.0
    # order matters for ROUGE-L but not for bag-of-words F1
    assert rouge_l(["b", "a"], ["a", "b"]) == pytest.approx(0.5)
    assert token_f1(["b", "a"], ["a", "b"]) == 1.0


def test_rouge_l_metric() -> None:
    assert score("rouge_l", "The cat sat on the mat.", ex("the cat sat on the mat")) == 1.0
    assert score("rouge_l", "a dog", ex("the cat", "a dog barked")) == pytest.approx(0.8)


# --- numeric -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("42", 42.0),
        ("The answer is 1,234,567.", 1234567.0),
        ("Costs $1,000.50 total", 1000.5),
        ("-3.5 degrees", -3.5),
        ("+7", 7.0),
        ("about 6.02e23 atoms", 6.02e23),
        ("roughly .5", 0.5),
        ("1,2,3", 1.0),  # a list, not a thousands separator
        ("no digits", None),
    ],
)
def test_first_number(text: str, expected: float | None) -> None:
    assert first_number(text) == expected


def test_numeric_metric() -> None:
    assert score("numeric", "Total: 1,234 apples", ex("1234")) == 1.0
    assert score("numeric", "Total: 1,235 apples", ex("1234")) == 0.0
    assert score("numeric", "3.14159", ex("3.14"), tolerance=0.01) == 1.0
    assert score("numeric", "3.2", ex("3.14"), tolerance=0.01) == 0.0
    assert score("numeric", "I don't know", ex("3")) == 0.0
    assert score("numeric", "5", ex("4", "5")) == 1.0


def test_numeric_metric_non_numeric_target_names_example() -> None:
    with pytest.raises(PromptoptError, match=r"example q7.*numeric target"):
        score("numeric", "5", ex("five", id="q7"))


# --- json --------------------------------------------------------------------------------------


def test_parse_json_output_fenced() -> None:
    assert parse_json_output('{"a": 1}') == (True, {"a": 1})
    assert parse_json_output('Here it is:\n```json\n{"a": 1}\n```\nDone.') == (True, {"a": 1})
    assert parse_json_output("```\n[1, 2]\n```") == (True, [1, 2])
    assert parse_json_output("{not json}") == (False, None)


def test_json_validity_only() -> None:
    assert score("json", '{"name": "Ada"}', ex("-")) == 1.0
    assert score("json", '```json\n{"name": "Ada"}\n```', ex("-")) == 1.0
    assert score("json", "name: Ada", ex("-")) == 0.0


def test_json_fields_fraction() -> None:
    target = ex('{"name": "Ada", "year": 1815, "alive": false}')
    fields = ["name", "year", "alive"]
    good = '```json\n{"name": "Ada", "year": 1815, "alive": false, "extra": 1}\n```'
    assert score("json", good, target, fields=fields) == 1.0
    assert score("json", '{"name": "Ada", "year": 1816}', target, fields=fields) == pytest.approx(
        1 / 3
    )
    # JSON false is not the number 0
    assert score("json", '{"name": "Ada", "year": 1815, "alive": 0}', target, fields=fields) == (
        pytest.approx(2 / 3)
    )
    assert score("json", "[1, 2]", target, fields=fields) == 0.0


def test_json_fields_best_of_targets_and_bad_target() -> None:
    example = ex('{"k": 1}', '{"k": 2}')
    assert score("json", '{"k": 2}', example, fields=["k"]) == 1.0
    with pytest.raises(PromptoptError, match=r"example ex1.*JSON object"):
        score("json", '{"k": 2}', ex("not json"), fields=["k"])


# --- python ------------------------------------------------------------------------------------


def test_python_metric_value_outside_the_unit_interval_is_an_error_naming_it() -> None:
    metric = sync_metric("python", function="user_metric.py:length_ratio")
    assert metric("ab", ex("abcd")) == 0.5
    # Clamping 2.0 to 1.0 would hide the metric's bug behind a perfect score.
    with pytest.raises(PromptoptError, match=r"example e1: .*length_ratio returned 2\.0"):
        metric("abcdefgh", ex("abcd", id="e1"))


def test_python_metric_bool_result() -> None:
    metric = sync_metric("python", function="user_metric.py:same_first_word")
    assert metric("Paris is big", ex("Paris")) == 1.0
    assert metric("Lyon", ex("Paris")) == 0.0


@pytest.mark.parametrize(
    ("function", "message"),
    [
        ("missing.py:f", "not found"),
        ("user_metric.py:nope", "no function 'nope'"),
        ("user_metric.py:NOT_A_FUNCTION", "no function"),
        ("user_metric.py", "file.py:function"),
        ("broken_metric.py:f", "importing .* failed"),
    ],
)
def test_python_metric_bad_reference(function: str, message: str) -> None:
    with pytest.raises(UsageError, match=rf"metric\.function.*{message}"):
        sync_metric("python", function=function)


def test_python_metric_exception_names_example() -> None:
    metric = sync_metric("python", function="user_metric.py:explodes")
    with pytest.raises(PromptoptError, match=r"example e42.*boom") as info:
        metric("x", ex("y", id="e42"))
    assert not isinstance(info.value, UsageError)
    assert isinstance(info.value.__cause__, RuntimeError)


def test_python_metric_wrong_return_type() -> None:
    metric = sync_metric("python", function="user_metric.py:returns_text")
    with pytest.raises(PromptoptError, match="must return a number"):
        metric("x", ex("y"))


# --- judge -------------------------------------------------------------------------------------


class FakeJudge:
    """Records what it was sent and answers with a canned reply."""

    def __init__(self, reply: str) -> None:
        self.reply = reply
        self.calls: list[tuple[str, str]] = []

    async def __call__(self, system: str, user: str) -> str:
        self.calls.append((system, user))
        await asyncio.sleep(0)
        return self.reply


def run_judge(reply: str, output: str = "an answer") -> tuple[float, FakeJudge]:
    judge = FakeJudge(reply)
    metric = build_metric(
        MetricSpec(type="judge", rubric="Must mention the year."),
        base_dir=METRIC_FILES,
        judge=judge,
    )
    example = ex("Founded in 1815.", input="When was it founded?")
    return asyncio.run(apply_metric(metric, output, example)), judge


def test_judge_sends_rubric_input_reference_and_output() -> None:
    value, judge = run_judge("Mentions the year.\nSCORE: 8", output="It was 1815.")
    assert value == pytest.approx(0.8)
    [(system, user)] = judge.calls
    assert system == JUDGE_SYSTEM
    assert "SCORE: n" in system
    for part in (
        "Must mention the year.",
        "When was it founded?",
        "Founded in 1815.",
        "It was 1815.",
    ):
        assert part in user


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        ("SCORE: 10", 1.0),
        ("score: 3\n", 0.3),
        ("I'd say 7 out of 10... final SCORE: 6", 0.6),
        ("Reasoning mentions 2 points. Overall 9", 0.9),
        ("SCORE: 14", 1.0),
        ("SCORE: -2", 0.0),
        ("SCORE: 7.5", 0.75),
    ],
)
def test_parse_judge_score(reply: str, expected: float) -> None:
    assert parse_judge_score(reply) == pytest.approx(expected)


def test_judge_reply_without_number_is_an_error() -> None:
    assert parse_judge_score("Looks fine to me.") is None
    with pytest.raises(PromptoptError, match=r"example ex1.*no score"):
        run_judge("Looks fine to me.")


def test_judge_needs_a_judge_model() -> None:
    with pytest.raises(UsageError, match=r"models\.judge or models\.optimizer"):
        build_metric(MetricSpec(type="judge", rubric="r"), base_dir=METRIC_FILES)


def test_apply_metric_accepts_sync_metrics() -> None:
    metric = sync_metric("exact")
    assert asyncio.run(apply_metric(metric, "Paris", ex("paris"))) == 1.0
