"""Metrics: score one model output against one example, in [0, 1].

A metric is a plain callable `(output, example) -> float`; the LLM judge is the one async metric.
`build_metric` turns a task file's `metric:` section into such a callable, looking the type up in
the `METRICS` registry.
"""

from __future__ import annotations

import inspect
import json
import math
import re
import string
import unicodedata
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import regex

from promptopt.errors import PromptoptError, UsageError
from promptopt.task.example import Example
from promptopt.task.metricspec import MetricSpec
from promptopt.util.user_code import load_function

JudgeFn = Callable[[str, str], Awaitable[str]]
"""Sends (system, user) messages to the judge model and returns its reply text."""


class Metric(Protocol):
    """Scores an output against an example; 1.0 is fully correct, 0.0 fully wrong."""

    def __call__(self, output: str, example: Example, /) -> float:
        """The score of `output` for `example`, in [0, 1]."""
        ...


class AsyncMetric(Protocol):
    """A metric that must call a model (the judge) to score."""

    def __call__(self, output: str, example: Example, /) -> Awaitable[float]:
        """The score of `output` for `example`, in [0, 1], once the judge has answered."""
        ...


MetricBuilder = Callable[[MetricSpec, Path, JudgeFn | None], Metric | AsyncMetric]


async def apply_metric(metric: Metric | AsyncMetric, output: str, example: Example) -> float:
    """Score with either kind of metric, awaiting the result when the metric is async."""
    result = metric(output, example)
    if inspect.isawaitable(result):
        return float(await result)
    return float(result)


# ---------------------------------------------------------------------------------------------
# Text normalization


def _strip_punctuation(text: str) -> str:
    # Unicode category P* covers curly quotes and dashes that string.punctuation misses.
    return "".join(
        ch
        for ch in text
        if not (unicodedata.category(ch).startswith("P") or ch in string.punctuation)
    )


def normalize_answer(text: str) -> str:
    r"""Lowercase, keep the first non-empty line, drop punctuation, collapse whitespace.

    The comparison the `exact` metric makes, in the manner of instruction-induction scorers:
    "The answer is: Paris.\nBecause..." becomes "the answer is paris".
    """
    lines = [line for line in text.strip().splitlines() if line.strip()]
    first = lines[0] if lines else ""
    return " ".join(_strip_punctuation(first.lower()).split())


_LABEL_DECORATION = re.compile(r"[*`\"'\u2018\u2019\u201c\u201d]")
# Only sentence punctuation: stripping every symbol would turn a label like "C++" into "C".
_EDGE_JUNK = string.whitespace + ".,:;!?"


def _normalize_label_text(text: str) -> str:
    # Markdown emphasis and quotes around a label ("**Positive**", "'Human'") carry no meaning.
    cleaned = _LABEL_DECORATION.sub("", text.lower())
    return " ".join(cleaned.split()).strip(_EDGE_JUNK)


def predict_label(output: str, labels: Sequence[str]) -> str | None:
    """The allowed label an output names, or None when it names none.

    Both sides are lowercased and stripped of quotes, markdown emphasis and edge punctuation.
    The prediction is the label mentioned earliest as a whole word (so an output that starts
    with a label predicts that label); when two labels start at the same place, the longer one
    wins, so "not entailment" beats "not" and "Human being" beats "Human".
    """
    text = _normalize_label_text(output)
    best: tuple[int, int, str] | None = None
    for label in labels:
        needle = _normalize_label_text(label)
        if not needle:
            continue
        match = re.search(rf"(?<!\w){re.escape(needle)}(?!\w)", text)
        if match is None:
            continue
        key = (match.start(), -len(needle), label)
        if best is None or key[:2] < best[:2]:
            best = key
    return None if best is None else best[2]


def _f1_tokens(text: str, normalize: bool) -> list[str]:
    if not normalize:
        return text.split()
    words = _strip_punctuation(text.lower()).split()
    return [w for w in words if w not in {"a", "an", "the"}]


def _rouge_tokens(text: str, normalize: bool) -> list[str]:
    if not normalize:
        return text.split()
    return _strip_punctuation(text.lower()).split()


def token_f1(prediction: Sequence[str], reference: Sequence[str]) -> float:
    """SQuAD-style bag-of-tokens F1; two empty sequences agree fully."""
    if not prediction or not reference:
        return float(list(prediction) == list(reference))
    remaining: dict[str, int] = {}
    for tok in reference:
        remaining[tok] = remaining.get(tok, 0) + 1
    common = 0
    for tok in prediction:
        if remaining.get(tok, 0) > 0:
            remaining[tok] -= 1
            common += 1
    if common == 0:
        return 0.0
    precision = common / len(prediction)
    recall = common / len(reference)
    return 2 * precision * recall / (precision + recall)


def _lcs_length(a: Sequence[str], b: Sequence[str]) -> int:
    # One rolling row keeps memory linear for long outputs.
    prev = [0] * (len(b) + 1)
    for tok_a in a:
        cur = [0]
        for j, tok_b in enumerate(b, start=1):
            cur.append(prev[j - 1] + 1 if tok_a == tok_b else max(prev[j], cur[j - 1]))
        prev = cur
    return prev[-1]


def rouge_l(prediction: Sequence[str], reference: Sequence[str]) -> float:
    """ROUGE-L F-measure (beta = 1) from the longest common subsequence of two token lists."""
    if not prediction or not reference:
        return float(list(prediction) == list(reference))
    lcs = _lcs_length(prediction, reference)
    if lcs == 0:
        return 0.0
    precision = lcs / len(prediction)
    recall = lcs / len(reference)
    return 2 * precision * recall / (precision + recall)


_NUMBER = re.compile(
    r"[-+]?(?:\d{1,3}(?:,\d{3})+(?!\d)|\d+)(?:\.\d+)?(?:[eE][-+]?\d+)?"
    r"|[-+]?\.\d+(?:[eE][-+]?\d+)?"
)


def first_number(text: str) -> float | None:
    """The first number written in `text` ("-1,234.5", "3e-2", ".5"), or None."""
    match = _NUMBER.search(text)
    if match is None:
        return None
    return float(match.group().replace(",", ""))


_FENCE = re.compile(r"```[ \t]*(?:json)?[ \t]*\n(.*?)```", re.DOTALL | re.IGNORECASE)
_MISSING = object()


def parse_json_output(output: str) -> tuple[bool, Any]:
    """(True, value) when the output is JSON, bare or in a ``` fenced block; else (False, None)."""
    candidates = [output.strip(), *(m.group(1).strip() for m in _FENCE.finditer(output))]
    for candidate in candidates:
        try:
            return True, json.loads(candidate)
        except ValueError:
            continue
    return False, None


def _json_equal(a: Any, b: Any) -> bool:
    # Python's == treats True as 1; JSON does not.
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_json_equal(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_json_equal(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, int | float) and isinstance(b, int | float):
        return a == b
    return type(a) is type(b) and bool(a == b)


def _best(scores: Iterable[float]) -> float:
    return max(scores, default=0.0)


def _clamp(value: float) -> float:
    return min(1.0, max(0.0, value))


# ---------------------------------------------------------------------------------------------
# Builders: each validates its options once and returns the per-example scorer.


def _build_label(spec: MetricSpec, base_dir: Path, judge: JudgeFn | None) -> Metric:
    labels = list(spec.labels or [])
    if not labels or any(not _normalize_label_text(label) for label in labels):
        raise UsageError("metric.labels: give a non-empty list of non-empty labels")

    def score(output: str, example: Example) -> float:
        predicted = predict_label(output, labels)
        if predicted is None:
            return 0.0
        wanted = _normalize_label_text(predicted)
        return float(any(_normalize_label_text(t) == wanted for t in example.targets))

    return score


def _build_exact(spec: MetricSpec, base_dir: Path, judge: JudgeFn | None) -> Metric:
    def score(output: str, example: Example) -> float:
        if spec.normalize:
            got = normalize_answer(output)
            return float(any(normalize_answer(t) == got for t in example.targets))
        return float(output in example.targets)

    return score


def _build_contains(spec: MetricSpec, base_dir: Path, judge: JudgeFn | None) -> Metric:
    def score(output: str, example: Example) -> float:
        return float(any(t in output for t in example.targets))

    return score


def _build_icontains(spec: MetricSpec, base_dir: Path, judge: JudgeFn | None) -> Metric:
    def score(output: str, example: Example) -> float:
        folded = output.casefold()
        return float(any(t.casefold() in folded for t in example.targets))

    return score


REGEX_TIMEOUT_S = 1.0
"""How long the regex metric may search one output; a sane pattern needs microseconds."""


def _build_regex(spec: MetricSpec, base_dir: Path, judge: JudgeFn | None) -> Metric:
    # The `regex` module, not `re`: it reads the same syntax but can stop a search after a
    # timeout, so a pattern that backtracks catastrophically (`(a|aa)+$`) costs a second per
    # output instead of hours. Linear-time engines (RE2) would refuse lookarounds and
    # backreferences that users' `re` patterns already rely on.
    try:
        pattern = regex.compile(spec.pattern or "")
    except (regex.error, ValueError, OverflowError) as exc:
        raise UsageError(f"metric.pattern: {spec.pattern!r} is not a valid regex: {exc}") from exc

    def score(output: str, example: Example) -> float:
        try:
            return float(pattern.search(output, timeout=REGEX_TIMEOUT_S) is not None)
        except TimeoutError as exc:
            raise PromptoptError(
                f"example {example.id}: metric.pattern {spec.pattern!r} did not finish within "
                f"{REGEX_TIMEOUT_S:g} s on the output (it backtracks catastrophically); "
                "simplify the pattern, for example remove nested repeats such as (a+)+"
            ) from exc

    return score


def _build_f1(spec: MetricSpec, base_dir: Path, judge: JudgeFn | None) -> Metric:
    def score(output: str, example: Example) -> float:
        got = _f1_tokens(output, spec.normalize)
        return _best(token_f1(got, _f1_tokens(t, spec.normalize)) for t in example.targets)

    return score


def _build_rouge_l(spec: MetricSpec, base_dir: Path, judge: JudgeFn | None) -> Metric:
    def score(output: str, example: Example) -> float:
        got = _rouge_tokens(output, spec.normalize)
        return _best(rouge_l(got, _rouge_tokens(t, spec.normalize)) for t in example.targets)

    return score


def _build_numeric(spec: MetricSpec, base_dir: Path, judge: JudgeFn | None) -> Metric:
    tolerance = spec.tolerance

    def score(output: str, example: Example) -> float:
        wanted = [n for n in (first_number(t) for t in example.targets) if n is not None]
        if not wanted:
            raise PromptoptError(
                f"example {example.id}: metric numeric needs a numeric target, "
                f"got {example.targets!r}; fix the data or choose another metric type"
            )
        got = first_number(output)
        if got is None:
            return 0.0
        return float(
            any(abs(got - w) <= tolerance or math.isclose(got, w, rel_tol=1e-9) for w in wanted)
        )

    return score


def _build_json(spec: MetricSpec, base_dir: Path, judge: JudgeFn | None) -> Metric:
    fields = list(spec.fields or [])

    def score(output: str, example: Example) -> float:
        ok, value = parse_json_output(output)
        if not ok:
            return 0.0
        if not fields:
            return 1.0
        if not isinstance(value, dict):
            return 0.0
        return _best(
            _field_agreement(value, _target_json(t, example), fields) for t in example.targets
        )

    return score


def _target_json(target: str, example: Example) -> Mapping[str, Any]:
    ok, value = parse_json_output(target)
    if not ok or not isinstance(value, dict):
        raise PromptoptError(
            f"example {example.id}: metric json with fields needs each target to be a JSON "
            f"object, got {target!r}"
        )
    return value


def _field_agreement(got: Mapping[str, Any], want: Mapping[str, Any], fields: list[str]) -> float:
    equal = 0
    for name in fields:
        a, b = got.get(name, _MISSING), want.get(name, _MISSING)
        if a is _MISSING or b is _MISSING:
            equal += a is b
        else:
            equal += _json_equal(a, b)
    return equal / len(fields)


def _load_user_function(reference: str, base_dir: Path) -> Callable[..., Any]:
    file_part, sep, func_name = reference.rpartition(":")
    if not sep or not file_part or not func_name:
        raise UsageError(f"metric.function: {reference!r} must look like 'file.py:function'")
    return load_function((base_dir / file_part).resolve(), func_name, what="metric.function")


def _build_python(spec: MetricSpec, base_dir: Path, judge: JudgeFn | None) -> Metric:
    reference = spec.function or ""
    return checked_metric(_load_user_function(reference, base_dir), reference)


def checked_metric(func: Callable[..., Any], reference: str) -> Metric:
    """A user's metric function, whose exceptions, non-numbers and numbers outside [0, 1]
    become errors that name it and the example."""

    def score(output: str, example: Example) -> float:
        try:
            value = func(output, example)
        except Exception as exc:
            raise PromptoptError(
                f"example {example.id}: metric.function {reference} raised {exc!r}"
            ) from exc
        if not isinstance(value, bool | int | float) or math.isnan(value):
            raise PromptoptError(
                f"example {example.id}: metric.function {reference} must return a number or a "
                f"bool, got {value!r}"
            )
        if not 0.0 <= value <= 1.0:
            raise PromptoptError(
                f"example {example.id}: metric.function {reference} returned {value!r}, "
                "outside [0, 1]"
            )
        return float(value)

    return score


JUDGE_SYSTEM = (
    "You grade answers against a rubric. Read the rubric, the input, the reference answer and "
    "the answer to grade. Judge only how well the answer meets the rubric; the reference shows "
    "one good answer, not the only one. Explain briefly, then end with a final line of the form "
    "'SCORE: n', where n is an integer from 0 (fails the rubric) to 10 (fully meets it)."
)

_SCORE_LINE = re.compile(r"score\s*[:=]\s*(-?\d+(?:\.\d+)?)", re.IGNORECASE)
_ANY_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")


def judge_user_message(rubric: str, output: str, example: Example) -> str:
    """The user message the judge receives for one output."""
    task_input = example.fields.get("input", "")
    return (
        f"## Rubric\n{rubric}\n\n"
        f"## Input\n{task_input}\n\n"
        f"## Reference answer\n{example.target}\n\n"
        f"## Answer to grade\n{output}\n\n"
        "End with the line 'SCORE: n' (0-10)."
    )


def parse_judge_score(reply: str) -> float | None:
    """The judge's 0-10 grade as a fraction in [0, 1], or None if the reply has no number.

    Prefers the last 'SCORE: n'; otherwise takes the last number in the reply.
    """
    marked = _SCORE_LINE.findall(reply)
    numbers = marked or _ANY_NUMBER.findall(reply)
    if not numbers:
        return None
    return _clamp(float(numbers[-1]) / 10)


def _build_judge(spec: MetricSpec, base_dir: Path, judge: JudgeFn | None) -> AsyncMetric:
    if judge is None:
        raise UsageError("metric judge needs models.judge or models.optimizer")
    rubric = spec.rubric or ""
    send = judge

    async def score(output: str, example: Example) -> float:
        reply = await send(JUDGE_SYSTEM, judge_user_message(rubric, output, example))
        value = parse_judge_score(reply)
        if value is None:
            raise PromptoptError(
                f"example {example.id}: the judge's reply has no score: {reply[-200:]!r}"
            )
        return value

    return score


METRICS: dict[str, MetricBuilder] = {
    "label": _build_label,
    "exact": _build_exact,
    "contains": _build_contains,
    "icontains": _build_icontains,
    "regex": _build_regex,
    "f1": _build_f1,
    "rouge_l": _build_rouge_l,
    "numeric": _build_numeric,
    "json": _build_json,
    "python": _build_python,
    "judge": _build_judge,
}


def build_metric(
    spec: MetricSpec, *, base_dir: Path, judge: JudgeFn | None = None
) -> Metric | AsyncMetric:
    """The scorer for a task's `metric:` section.

    `base_dir` is the task file's folder (python metrics are found relative to it); `judge` is
    required only by the judge metric. Raises UsageError for an unknown type or a bad option.
    """
    builder = METRICS.get(spec.type)
    if builder is None:
        valid = ", ".join(sorted(METRICS))
        raise UsageError(f"metric.type: unknown metric {spec.type!r}; valid types: {valid}")
    return builder(spec, base_dir, judge)
