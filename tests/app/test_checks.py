"""The checks a run makes before calling a model, shared by validate and run --dry-run."""

from __future__ import annotations

from pathlib import Path

import pytest

from promptopt.app.checks import RunOverrides, run_problems
from promptopt.errors import Problem
from promptopt.task.loader import load_task

TASK = """\
name: t
prompt: Classify.
data:
  dev:
    - {input: a, target: "yes"}
    - {input: b, target: "no"}
  test:
    - {input: c, target: "yes"}
metric: {type: label, labels: [yes, no]}
models:
  target: scripted:s.py:f
  optimizer: scripted:s.py:f
search:
  strategy: ape
  params: {num_demos: 3}
"""


def write(tmp_path: Path, text: str = TASK, **replace: str) -> Path:
    for old, new in replace.items():
        assert old in text
        text = text.replace(old, new)
    (tmp_path / "s.py").write_text("def f(request):\n    return 'yes'\n")
    path = tmp_path / "task.yaml"
    path.write_text(text)
    return path


def problems(path: Path, overrides: RunOverrides | None = None) -> list[Problem]:
    return run_problems(load_task(path), overrides)


def only(path: Path, overrides: RunOverrides | None = None) -> Problem:
    found = problems(path, overrides)
    assert len(found) == 1, found
    return found[0]


def test_a_valid_task_has_no_problem(tmp_path: Path) -> None:
    assert problems(write(tmp_path)) == []


def test_unknown_strategy_suggests_the_close_one(tmp_path: Path) -> None:
    found = only(write(tmp_path, **{"strategy: ape": "strategy: apex"}))
    assert (found.field, found.line) == ("search.strategy", 14)
    assert "unknown strategy 'apex'; did you mean 'ape'?" in found.message


def test_unknown_strategy_from_the_flag_names_the_flag(tmp_path: Path) -> None:
    found = only(write(tmp_path), RunOverrides(strategy="protgi"))
    assert found.field == "--strategy" and "did you mean 'protegi'?" in found.message


def test_bad_params_are_located_one_sentence_each(tmp_path: Path) -> None:
    path = write(tmp_path, **{"{num_demos: 3}": "{num_demo: 3, top_k: many}"})
    found = {p.field: p for p in problems(path)}
    assert sorted(found) == ["search.params.num_demo", "search.params.top_k"]
    assert {p.line for p in found.values()} == {15}
    typo = found["search.params.num_demo"].message
    assert "ape has no parameter 'num_demo'; did you mean 'num_demos'?" in typo
    assert "\n" not in typo and found["search.params.top_k"].message.startswith("ape: ")


def test_a_switched_strategy_with_the_tasks_params_is_one_sentence(tmp_path: Path) -> None:
    found = only(write(tmp_path), RunOverrides(strategy="protegi"))
    assert (found.field, found.line) == ("search.params", 15)
    assert "--strategy protegi replaces the task's strategy ape" in found.message
    assert "(num_demos)" in found.message


def test_a_bad_param_flag_names_the_flag(tmp_path: Path) -> None:
    found = only(write(tmp_path), RunOverrides(params={"bogus": 1}))
    assert found.field == "--param bogus" and found.line is None


def test_an_unknown_preset(tmp_path: Path) -> None:
    found = only(write(tmp_path, **{"{num_demos: 3}": "{preset: huge}"}))
    assert found.field == "search.params.preset" and "no preset 'huge'" in found.message


def test_a_bad_regex(tmp_path: Path) -> None:
    path = write(tmp_path, **{"{type: label, labels: [yes, no]}": "{type: regex, pattern: '(('}"})
    found = only(path)
    assert (found.field, found.line) == ("metric.pattern", 9)
    assert "is not a valid regex" in found.message


@pytest.mark.parametrize(
    ("code", "message"),
    [
        (None, "not found"),
        ("import no_such_module_here\n", "importing"),
        ("def other(o, e):\n    return 1\n", "has no function 'score'"),
        ("def score(output):\n    return 1\n", "score(output) must take two arguments"),
        ("def score(output, example, extra):\n    return 1\n", "must take two arguments"),
    ],
)
def test_python_metric_problems(tmp_path: Path, code: str | None, message: str) -> None:
    metric = "{type: python, function: 'm.py:score'}"
    path = write(tmp_path, **{"{type: label, labels: [yes, no]}": metric})
    if code is not None:
        (tmp_path / "m.py").write_text(code)
    found = only(path)
    assert (found.field, found.line) == ("metric.function", 9)
    assert message in found.message


def test_a_good_python_metric(tmp_path: Path) -> None:
    metric = "{type: python, function: 'm.py:score'}"
    path = write(tmp_path, **{"{type: label, labels: [yes, no]}": metric})
    (tmp_path / "m.py").write_text("def score(output, example, weight=1):\n    return 1\n")
    assert problems(path) == []


def test_unknown_provider(tmp_path: Path) -> None:
    path = write(tmp_path, **{"target: scripted:s.py:f": "target: openia:gpt-4o"})
    found = only(path)
    assert (found.field, found.line) == ("models.target", 11)
    assert "unknown model provider 'openia'" in found.message and "'openai'?" in found.message


def test_unknown_provider_from_a_flag(tmp_path: Path) -> None:
    path = write(tmp_path, **{"target: scripted:s.py:f": "target: foo:bar"})
    found = only(path, RunOverrides(models=frozenset({"target"})))
    assert found.field == "--target"


def test_a_scripted_model_without_its_function(tmp_path: Path) -> None:
    path = write(tmp_path, **{"optimizer: scripted:s.py:f": "optimizer: scripted:s.py:g"})
    found = only(path)
    assert (found.field, found.line) == ("models.optimizer", 12) and "'g'" in found.message


def test_an_unpriced_model_under_a_cost_cap(tmp_path: Path) -> None:
    path = write(tmp_path, **{"target: scripted:s.py:f": "target: openai:no-such-model-9"})
    assert problems(path) == []
    found = only(path, RunOverrides(max_cost=1.0))
    assert found.field == "models.target" and "price of openai:no-such-model-9" in found.message


def test_a_budget_too_small_for_the_final_evaluation(tmp_path: Path) -> None:
    path = write(tmp_path, **{"  strategy: ape": "  strategy: ape\n  budget: {target_calls: 10}"})
    found = only(path)
    assert (found.field, found.line) == ("search.budget.target_calls", 15)
    assert "needs 10" in found.message
    assert only(path, RunOverrides(target_calls=4)).field == "--budget"
    assert problems(path, RunOverrides(target_calls=11)) == []


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        **{
            "strategy: ape": "strategy: apex",
            "{type: label, labels: [yes, no]}": "{type: regex, pattern: '['}",
            "target: scripted:s.py:f": "target: foo:bar",
        },
    )
    assert [p.field for p in problems(path)] == [
        "search.strategy",
        "metric.pattern",
        "models.target",
    ]


def test_a_judge_metric_without_models_is_left_to_the_default_models(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        **{
            "{type: label, labels: [yes, no]}": "{type: judge, rubric: Is right.}",
            "models:\n  target: scripted:s.py:f\n  optimizer: scripted:s.py:f\n": "",
        },
    )
    assert problems(path) == []


LABEL_FREE = """\
name: t
prompt: Summarize the review.
data:
  train:
    - {input: a}
    - {input: b}
  dev:
    - {input: c}
  test:
    - {input: d}
models:
  target: scripted:s.py:f
  optimizer: scripted:s.py:f
search:
  strategy: apohf
  params: {feedback: judge, rubric: "Shorter and faithful wins."}
"""


def test_a_task_without_a_metric_loads_and_passes_with_a_judge_and_a_rubric(
    tmp_path: Path,
) -> None:
    task = load_task(write(tmp_path, LABEL_FREE))
    assert task.spec.metric is None
    assert [e.targets for e in task.split("dev")] == [()]
    assert run_problems(task) == []


def test_a_task_without_a_metric_needs_a_preference_search(tmp_path: Path) -> None:
    params = '  params: {feedback: judge, rubric: "Shorter and faithful wins."}\n'
    found = only(write(tmp_path, LABEL_FREE, **{"strategy: apohf": "strategy: opro", params: ""}))
    assert found.field == "metric"
    assert "the task has no metric, and opro needs scores" in found.message
    assert "search.strategy: apohf" in found.message and "--human" in found.message
    found = only(write(tmp_path, LABEL_FREE, **{params: ""}), RunOverrides(strategy="ape"))
    assert found.field == "metric" and "ape needs scores" in found.message


def test_a_task_without_a_metric_cannot_be_fed_by_the_metric(tmp_path: Path) -> None:
    path = write(tmp_path, LABEL_FREE, **{"feedback: judge": "feedback: metric"})
    found = only(path)
    assert (found.field, found.line) == ("search.params.feedback", 16)
    assert "is metric, but the task has no metric" in found.message


def test_a_judged_task_without_a_metric_needs_a_rubric_and_a_person_needs_none(
    tmp_path: Path,
) -> None:
    path = write(tmp_path, LABEL_FREE, **{', rubric: "Shorter and faithful wins."': ""})
    found = only(path)
    assert found.field == "search.params.rubric"
    assert "judged by its rubric alone" in found.message
    # run --human sets the feedback: a person needs no rubric.
    assert problems(path, RunOverrides(params={"feedback": "human"})) == []


def test_a_task_without_a_metric_cannot_search_demonstrations(tmp_path: Path) -> None:
    # They would be bootstrapped from scores that are all a placeholder 0, and labelled with
    # empty expected answers; the run would set half its budget aside for nothing.
    prompt = "prompt: Summarize the review.\n"
    mapping = "prompt:\n  instruction: Summarize the review.\n  demos: {k: 2}\n"
    text = LABEL_FREE.replace(prompt, mapping)
    assert mapping in text
    found = only(write(tmp_path, text))
    assert found.field == "prompt.demos"
    assert "needs a metric" in found.message and "remove prompt.demos" in found.message


def test_rows_of_a_task_with_a_metric_still_need_targets(tmp_path: Path) -> None:
    from promptopt.errors import TaskFileError

    text = LABEL_FREE.replace("models:", "metric: {type: exact}\nmodels:")
    with pytest.raises(TaskFileError, match="the row has no 'target' field"):
        load_task(write(tmp_path, text))


def with_embedding(tmp_path: Path, embedding: str) -> Path:
    """The task with `models.embedding: <embedding>` (on line 13)."""
    old = "optimizer: scripted:s.py:f\n"
    return write(tmp_path, **{old: f"{old}  embedding: {embedding}\n"})


@pytest.mark.parametrize(
    ("embedding", "message"),
    [
        ("anthropic:claude-haiku-4-5", "anthropic has no embeddings endpoint"),
        ("scripted:s.py:nope", "has no function 'nope'"),
        ("scripted:table.json", "scripted:FILE.py:FUNCTION"),
    ],
)
def test_an_embedding_model_that_cannot_embed(tmp_path: Path, embedding: str, message: str) -> None:
    path = with_embedding(tmp_path, embedding)
    found = only(path)
    assert (found.field, found.line) == ("models.embedding", 13)
    assert message in found.message


def test_an_unpriced_embedding_model_under_a_cost_cap(tmp_path: Path) -> None:
    embedding = "{model: openai:embed, base_url: 'https://embed.example.com/v1'}"
    path = with_embedding(tmp_path, embedding)
    found = only(path, RunOverrides(max_cost=1.0))
    assert found.field == "models.embedding" and "price of" in found.message


def test_a_good_embedding_model_is_no_problem(tmp_path: Path) -> None:
    path = with_embedding(tmp_path, "ollama:nomic")
    assert problems(path) == []


def test_a_cost_cap_the_final_evaluation_does_not_fit_is_a_located_problem(
    tmp_path: Path,
) -> None:
    priced = "target: {model: scripted:s.py:f, max_tokens: 100, price: {input: 500, output: 500}}"
    path = write(tmp_path, **{"target: scripted:s.py:f": priced})
    # Three dev and test calls at up to 100 output tokens each, at $500 per million.
    found = only(path, RunOverrides(max_cost=0.01))
    assert found.field == "--max-cost"
    assert "does not cover the final evaluation" in found.message
    assert problems(path, RunOverrides(max_cost=5.0)) == []
    capped = write(
        tmp_path,
        text=TASK.replace("  strategy: ape\n", "  budget: {cost_usd: 0.01}\n  strategy: ape\n"),
        **{"target: scripted:s.py:f": priced},
    )
    found = only(capped)
    assert (found.field, found.line) == ("search.budget.cost_usd", 14)


def test_a_judge_cap_the_final_judging_does_not_fit_is_a_located_problem(
    tmp_path: Path,
) -> None:
    text = LABEL_FREE.replace("  params:", "  budget: {judge_calls: 4}\n  params:")
    found = only(write(tmp_path, text))
    # Two calls for each of one dev and one test input: 4 leave the search nothing.
    assert (found.field, found.line) == ("search.budget.judge_calls", 16)
    assert "needs 4" in found.message
    assert problems(write(tmp_path, text.replace("judge_calls: 4", "judge_calls: 20"))) == []
