"""Tests for promptopt.task: schema, data formats, splits, templates and every kind of problem."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from promptopt.errors import Problem, TaskFileError, UsageError
from promptopt.task.data import MAX_ROW_PROBLEMS_PER_FILE
from promptopt.task.loader import LoadedTask, load_task, validate_task
from promptopt.task.schema import TaskFile
from promptopt.util.template import TemplateFieldError, render_template, template_fields
from tests.support import FIXTURES, REPO

TASKS = FIXTURES / "tasks"
EXAMPLE_TASKS = ["trec", "sst2", "liar", "antonyms"]

BASE_HEADER = """\
name: demo
prompt: Answer the question.
"""


def rows(n: int, prefix: str = "q", **extra: Any) -> list[dict[str, Any]]:
    return [{"input": f"{prefix}{i}", "target": "A", **extra} for i in range(n)]


def write_jsonl(path: Path, items: list[Any]) -> Path:
    path.write_text("".join(json.dumps(item) + "\n" for item in items), encoding="utf-8")
    return path


def write_task(tmp_path: Path, body: str, name: str = "task.yaml") -> Path:
    path = tmp_path / name
    path.write_text(body, encoding="utf-8")
    return path


def three_split_task(tmp_path: Path, extra: str = "", metric: str = "type: exact") -> Path:
    """A valid task with train/dev/test JSONL files; `extra` lines are appended at top level."""
    write_jsonl(tmp_path / "train.jsonl", rows(3, "t"))
    write_jsonl(tmp_path / "dev.jsonl", rows(2, "d"))
    write_jsonl(tmp_path / "test.jsonl", rows(4, "x"))
    body = (
        BASE_HEADER
        + "data:\n  train: train.jsonl\n  dev: dev.jsonl\n  test: test.jsonl\n"
        + f"metric: {{{metric}}}\n"
        + extra
    )
    return write_task(tmp_path, body)


def only_problem(path: Path) -> Problem:
    problems = validate_task(path)
    assert len(problems) == 1, problems
    return problems[0]


# --- templates -----------------------------------------------------------------------------


def test_render_template_allows_spaces_and_renders_non_strings_as_json() -> None:
    text = render_template(
        "Q: {{ input }} / {{n}} / {{ meta }}", {"input": "hi", "n": 3, "meta": {"a": [1]}}
    )
    assert text == 'Q: hi / 3 / {"a": [1]}'


def test_render_template_names_the_missing_field() -> None:
    with pytest.raises(TemplateFieldError) as info:
        render_template("{{input}} {{context}}", {"input": "x"})
    assert info.value.field == "context"
    assert "context" in str(info.value)


def test_template_fields_in_order_without_repeats() -> None:
    assert template_fields("{{b}} {{ a }} {{b}}") == ("b", "a")


# --- the example tasks -----------------------------------------------------------------------


@pytest.mark.parametrize("name", EXAMPLE_TASKS)
def test_example_tasks_load_and_validate_clean(name: str) -> None:
    path = REPO / "tasks" / f"{name}.yaml"
    assert validate_task(path) == []
    task = load_task(path)
    assert {k: len(v) for k, v in task.splits.items()} == {"train": 50, "dev": 50, "test": 100}
    assert task.spec.search.strategy == "ape"
    assert task.spec.models.target is not None
    assert task.spec.models.target.model == "openai:gpt-4o-mini"
    assert task.render_input(task.split("dev")[0]) == task.split("dev")[0].fields["input"]


def test_example_label_tasks_use_the_dataset_labels() -> None:
    expected = {
        "trec": ["Description", "Entity", "Expression", "Human", "Location", "Number"],
        "sst2": ["negative", "positive"],
        "liar": ["No", "Yes"],  # quoted in the file, so YAML did not turn them into booleans
    }
    for name, labels in expected.items():
        metric = load_task(REPO / "tasks" / f"{name}.yaml").require_metric("test")
        assert (metric.type, metric.labels) == ("label", labels)


def test_antonyms_keeps_every_acceptable_target() -> None:
    task = load_task(REPO / "tasks" / "antonyms.yaml")
    metric = task.require_metric("test")
    assert metric.type == "exact" and metric.normalize
    for example in task.splits["test"]:
        assert set(example.fields["targets"]) <= set(example.targets)


# --- data formats ------------------------------------------------------------------------------


def test_jsonl_splits_ids_lines_and_hashes(tmp_path: Path) -> None:
    path = three_split_task(tmp_path)
    (tmp_path / "dev.jsonl").write_text(
        '{"input": "a", "target": "A", "id": "first"}\n\n{"input": "b", "target": "B"}\n'
    )
    task = load_task(path)
    dev = task.split("dev")
    assert [e.id for e in dev] == ["first", "dev-1"]
    assert [e.line for e in dev] == [1, 3]  # blank lines are skipped but still counted
    assert dev[1].fields == {"input": "b", "target": "B"}
    assert len(task.data_hash) == 64 and len(task.task_hash) == 64
    assert load_task(path).data_hash == task.data_hash
    (tmp_path / "test.jsonl").write_text('{"input": "changed", "target": "A"}\n')
    assert load_task(path).data_hash != task.data_hash
    assert load_task(path).task_hash == task.task_hash


def test_csv_file_split_by_counts_with_multiple_targets() -> None:
    task = load_task(TASKS / "csv_task.yaml")
    sizes = {name: len(examples) for name, examples in task.splits.items()}
    assert sizes == {"train": 2, "dev": 2, "test": 3}
    everything = {e.fields["country"]: e for examples in task.splits.values() for e in examples}
    assert len(everything) == 7  # the counts cover the file: every row lands in exactly one split
    assert everything["Netherlands, the"].targets == ("Amsterdam", "The Hague")
    assert everything["France"].targets == ("Paris",)
    assert "targets" not in everything["France"].fields  # a blank optional cell is "not given"
    # The template names the CSV column directly.
    first = task.split("train")[0]
    assert task.render_input(first) == f"Country: {first.fields['country']}"
    assert first.id == "train-0" and first.line is not None and first.line >= 2


def test_csv_targets_column_holds_a_json_list(tmp_path: Path) -> None:
    (tmp_path / "dev.csv").write_text('input,target,targets\nhot,cold,"[""cold"", ""chilly""]"\n')
    path = write_task(tmp_path, BASE_HEADER + "data: {dev: dev.csv}\nmetric: {type: exact}\n")
    example = load_task(path).split("dev")[0]
    assert example.targets == ("cold", "chilly")
    assert example.line == 2


def test_inline_rows_and_targets_without_a_target_field(tmp_path: Path) -> None:
    body = BASE_HEADER + (
        "data:\n"
        "  dev:\n"
        "    - {input: big, targets: [small, little]}\n"
        "    - {input: up, target: down, targets: [down, below]}\n"
        "    - {input: 3, target: 4}\n"
        "metric: {type: exact}\n"
    )
    task = load_task(write_task(tmp_path, body))
    dev = task.split("dev")
    assert [e.targets for e in dev] == [("small", "little"), ("down", "below"), ("4",)]
    assert [e.line for e in dev] == [5, 6, 7]
    assert task.render_input(dev[2]) == "3"


def test_input_field_is_available_as_input_in_the_default_template(tmp_path: Path) -> None:
    body = BASE_HEADER + (
        "data:\n  dev: [{question: why, answer: because}]\n"
        "  input_field: question\n  target_field: answer\nmetric: {type: exact}\n"
    )
    task = load_task(write_task(tmp_path, body))
    assert task.render_input(task.split("dev")[0]) == "why"


def _split_task(tmp_path: Path, split: str, seed: int = 0, n: int = 20) -> Path:
    write_jsonl(
        tmp_path / "all.jsonl", [{"input": f"q{i}", "target": "A", "id": f"r{i}"} for i in range(n)]
    )
    body = BASE_HEADER + (
        f"data:\n  file: all.jsonl\n  split: {split}\n  seed: {seed}\nmetric: {{type: exact}}\n"
    )
    return write_task(tmp_path, body)


def _ids(task: LoadedTask) -> dict[str, list[str]]:
    return {name: [e.id for e in examples] for name, examples in task.splits.items()}


def test_split_by_fractions_is_deterministic_disjoint_and_seeded(tmp_path: Path) -> None:
    path = _split_task(tmp_path, "{train: 0.5, dev: 0.25, test: 0.25}", seed=3)
    first = _ids(load_task(path))
    assert first == _ids(load_task(path))
    assert {k: len(v) for k, v in first.items()} == {"train": 10, "dev": 5, "test": 5}
    flat = [i for ids in first.values() for i in ids]
    assert len(set(flat)) == 20
    assert flat != [f"r{i}" for i in range(20)]  # shuffled
    other = _ids(load_task(_split_task(tmp_path, "{train: 0.5, dev: 0.25, test: 0.25}", seed=4)))
    assert other != first


def test_split_by_counts_may_leave_rows_out_and_skip_test(tmp_path: Path) -> None:
    task = load_task(_split_task(tmp_path, "{train: 3, dev: 4}"))
    assert {k: len(v) for k, v in task.splits.items()} == {"train": 3, "dev": 4}
    with pytest.raises(TaskFileError) as info:
        task.split("test")
    assert info.value.problems[0].field == "data.test"
    assert "split.test" in info.value.problems[0].message


def test_unknown_split_name_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(
        UsageError, match="unknown split 'validation': choose one of train, dev, test"
    ):
        load_task(three_split_task(tmp_path)).split("validation")


def test_missing_test_split_names_the_field(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "dev.jsonl", rows(2))
    task = load_task(
        write_task(tmp_path, BASE_HEADER + "data: {dev: dev.jsonl}\nmetric: {type: exact}\n")
    )
    with pytest.raises(
        TaskFileError, match=r"data\.test: the task has no test split; add data\.test"
    ):
        task.split("test")


def test_task_hash_follows_a_replaced_spec(tmp_path: Path) -> None:
    task = load_task(three_split_task(tmp_path))
    changed = replace(task, spec=task.spec.model_copy(update={"prompt": "Something else."}))
    assert changed.task_hash != task.task_hash


def test_defaults(tmp_path: Path) -> None:
    spec = load_task(three_split_task(tmp_path)).spec
    assert spec.input_template == "{{input}}"
    assert spec.search.strategy == "opro" and spec.search.seed == 0 and spec.search.params == {}
    assert spec.models.target is None and spec.prices == {}
    with pytest.raises(ValidationError, match="frozen"):
        spec.name = "other"


def test_models_accept_strings_and_prices(tmp_path: Path) -> None:
    extra = (
        "models: {target: 'ollama:llama3', judge: {model: 'openai:gpt-4o', temperature: 0}}\n"
        "prices: {'ollama:llama3': {input: 0, output: 0}}\n"
    )
    spec = load_task(three_split_task(tmp_path, extra)).spec
    assert spec.models.target is not None and spec.models.target.model == "ollama:llama3"
    assert spec.models.judge is not None and spec.models.judge.temperature == 0
    assert spec.prices["ollama:llama3"].input == 0


# --- problems: YAML and schema -----------------------------------------------------------


def test_yaml_syntax_error_has_its_line(tmp_path: Path) -> None:
    path = write_task(tmp_path, "name: x\nprompt: [unclosed\nmetric: {type: exact}\n")
    problem = only_problem(path)
    assert problem.file == str(path) and problem.line == 3
    assert problem.message.startswith("invalid YAML")


def test_task_file_must_be_a_mapping(tmp_path: Path) -> None:
    assert "mapping" in only_problem(write_task(tmp_path, "- a\n- b\n")).message
    assert "empty" in only_problem(write_task(tmp_path, "", "empty.yaml")).message


def test_missing_task_file(tmp_path: Path) -> None:
    problem = only_problem(tmp_path / "nope.yaml")
    assert "not found" in problem.message and str(tmp_path / "nope.yaml") in problem.message
    with pytest.raises(TaskFileError):
        load_task(tmp_path / "nope.yaml")


def test_schema_errors_have_dotted_fields_lines_and_readable_messages(tmp_path: Path) -> None:
    extra = (
        "models:\n"
        "  target: {model: 'openai:gpt-4o-mini', temperature: 3}\n"
        "  optimizer: gpt4\n"
        "search:\n"
        "  budget: {target_calls: 0}\n"
    )
    path = three_split_task(tmp_path, extra, metric="type: label")
    found = {p.field: p for p in validate_task(path)}
    assert set(found) == {
        "metric",
        "models.target.temperature",
        "models.optimizer",
        "search.budget.target_calls",
    }
    assert "needs the option 'labels'" in found["metric"].message
    assert found["metric"].line == 7
    temperature = found["models.target.temperature"]
    assert temperature.line == 9 and "less than or equal to 2 (got 3)" in temperature.message
    assert "provider:name" in found["models.optimizer"].message
    assert found["models.optimizer"].line == 10
    assert found["search.budget.target_calls"].line == 12
    assert all(p.file == str(path) for p in found.values())


def test_unknown_field_suggests_the_close_one(tmp_path: Path) -> None:
    path = three_split_task(tmp_path, "search: {strategy: ape, budgte: {cost_usd: 1}}\n")
    problem = only_problem(path)
    assert problem.field == "search.budgte" and problem.line == 8
    assert "unknown field 'budgte' (did you mean 'budget'?)" in problem.message
    assert "valid fields here: strategy, seed, budget, params" in problem.message


def test_required_fields_and_duplicate_keys(tmp_path: Path) -> None:
    path = write_task(tmp_path, "name: a\nname: b\nmetric: {type: exact}\n")
    found = {(p.field, p.line): p.message for p in validate_task(path)}
    assert found[("name", 2)].startswith("the key appears twice")
    assert found[("prompt", 1)] == "required field is missing"
    assert found[("data", 1)] == "required field is missing"


def test_data_layout_errors(tmp_path: Path) -> None:
    cases = {
        "data: {train: a.jsonl}": "no dev data",
        "data: {file: a.jsonl}": "'file' needs 'split'",
        "data: {file: a.jsonl, dev: b.jsonl, split: {dev: 1}}": "not both",
        "data: {dev: b.jsonl, split: {dev: 1}}": "only applies with 'file'",
        "data: {dev: 5}": "a path to a .jsonl or .csv file, or a list of mappings",
    }
    for line, expected in cases.items():
        path = write_task(tmp_path, BASE_HEADER + line + "\nmetric: {type: exact}\n")
        problem = only_problem(path)
        assert problem.field.startswith("data") and expected in problem.message, problem
        assert problem.line == 3


def test_bad_split_sizes(tmp_path: Path) -> None:
    path = _split_task(tmp_path, "{train: 0.7, dev: 0.5}")
    problem = only_problem(path)
    assert problem.field == "data.split" and "add up to 1.2" in problem.message
    path = _split_task(tmp_path, "{dev: 2.5}")
    problem = only_problem(path)
    assert problem.field == "data.split.dev" and "at most 1" in problem.message


def test_template_without_placeholder_or_showing_the_answer(tmp_path: Path) -> None:
    problem = only_problem(three_split_task(tmp_path, "input_template: 'just text'\n"))
    assert problem.field == "input_template" and problem.line == 8
    problem = only_problem(
        three_split_task(tmp_path, "input_template: '{{input}} -> {{ target }}'\n")
    )
    assert problem.field == "input_template" and "expected answer" in problem.message


# --- problems: data ----------------------------------------------------------------------------


def test_missing_data_file_names_field_and_resolved_path(tmp_path: Path) -> None:
    path = three_split_task(tmp_path)
    (tmp_path / "train.jsonl").unlink()
    problem = only_problem(path)
    assert problem.file == str(path) and problem.field == "data.train" and problem.line == 4
    assert str((tmp_path / "train.jsonl").resolve()) in problem.message


def test_unsupported_data_file(tmp_path: Path) -> None:
    (tmp_path / "dev.txt").write_text("x\n")
    path = write_task(tmp_path, BASE_HEADER + "data: {dev: dev.txt}\nmetric: {type: exact}\n")
    problem = only_problem(path)
    assert problem.field == "data.dev" and ".jsonl or .csv" in problem.message


def test_empty_data_file(tmp_path: Path) -> None:
    (tmp_path / "dev.jsonl").write_text("\n")
    path = write_task(tmp_path, BASE_HEADER + "data: {dev: dev.jsonl}\nmetric: {type: exact}\n")
    problem = only_problem(path)
    assert (problem.field, problem.message) == ("data.dev", "has no rows")


@pytest.mark.parametrize(
    ("line", "field", "message"),
    [
        ("{not json", "", "invalid JSON"),
        ("[1, 2]", "", "must be a JSON object, not list"),
        ('{"target": "A"}', "input", "no 'input' field"),
        ('{"input": "q"}', "target", "no 'target' field"),
        ('{"input": "q", "target": "  "}', "target", "the target is empty"),
        ('{"input": "q", "target": "A", "targets": "A"}', "targets", "non-empty list"),
        ('{"input": "q", "target": "A", "targets": ["B", ""]}', "targets", "empty target"),
        ('{"input": "q", "target": "A", "id": ""}', "id", "the id is empty"),
    ],
)
def test_bad_jsonl_row(tmp_path: Path, line: str, field: str, message: str) -> None:
    path = three_split_task(tmp_path)
    dev = tmp_path / "dev.jsonl"
    dev.write_text('{"input": "ok", "target": "A"}\n' + line + "\n")
    problem = only_problem(path)
    assert (problem.file, problem.field, problem.line) == (str(dev), field, 2)
    assert message in problem.message
    with pytest.raises(TaskFileError) as info:
        load_task(path)
    assert info.value.problems == [problem]


def test_every_problem_is_reported_not_just_the_first(tmp_path: Path) -> None:
    path = three_split_task(tmp_path, "models: {target: nope}\n")
    (tmp_path / "dev.jsonl").write_text('{"input": "a"}\n{"target": "B"}\n')
    (tmp_path / "test.jsonl").write_text("oops\n")
    problems = validate_task(path)
    assert [(Path(p.file).name, p.field, p.line) for p in problems] == [
        ("task.yaml", "models.target", 8),
        ("dev.jsonl", "target", 1),
        ("dev.jsonl", "input", 2),
        ("test.jsonl", "", 1),
    ]


def test_csv_problems(tmp_path: Path) -> None:
    (tmp_path / "dev.csv").write_text('input,target\n"two\nlines",A\nq,\nq,A,extra\n')
    path = write_task(tmp_path, BASE_HEADER + "data: {dev: dev.csv}\nmetric: {type: exact}\n")
    found = [(p.field, p.line, p.message) for p in validate_task(path)]
    # The quoted cell spans lines 2-3, so the rows after it start on lines 4 and 5.
    assert found == [
        ("", 5, "the row has more values than the header"),
        ("target", 4, "the target is empty"),
    ]


def test_csv_header_without_the_input_column(tmp_path: Path) -> None:
    (tmp_path / "dev.csv").write_text("question,target\nq,A\n")
    path = write_task(tmp_path, BASE_HEADER + "data: {dev: dev.csv}\nmetric: {type: exact}\n")
    problem = only_problem(path)
    assert (problem.file, problem.field, problem.line) == (str(tmp_path / "dev.csv"), "input", 1)
    assert "columns: question, target" in problem.message


def test_template_field_missing_in_a_row(tmp_path: Path) -> None:
    path = three_split_task(tmp_path, "input_template: '{{input}} ({{ topic }})'\n")
    for name in ("train", "test"):
        write_jsonl(tmp_path / f"{name}.jsonl", rows(2, name, topic="t"))
    (tmp_path / "dev.jsonl").write_text(
        '{"input": "a", "target": "A", "topic": "x"}\n{"input": "b", "target": "A"}\n'
    )
    problem = only_problem(path)
    assert (problem.file, problem.field, problem.line) == (str(tmp_path / "dev.jsonl"), "topic", 2)
    assert "{{topic}}" in problem.message


def test_template_field_missing_in_an_inline_row(tmp_path: Path) -> None:
    body = BASE_HEADER + (
        "input_template: '{{input}} {{ctx}}'\n"
        "data:\n  dev:\n    - {input: a, target: A, ctx: c}\n    - {input: b, target: A}\n"
        "metric: {type: exact}\n"
    )
    path = write_task(tmp_path, body)
    problem = only_problem(path)
    assert (problem.file, problem.field, problem.line) == (str(path), "data.dev[1].ctx", 7)


def test_duplicate_ids_across_splits(tmp_path: Path) -> None:
    path = three_split_task(tmp_path)
    write_jsonl(tmp_path / "train.jsonl", [{"input": "a", "target": "A", "id": "same"}])
    write_jsonl(
        tmp_path / "test.jsonl",
        [{"input": "b", "target": "A"}, {"input": "c", "target": "A", "id": "same"}],
    )
    problem = only_problem(path)
    assert (problem.file, problem.field, problem.line) == (str(tmp_path / "test.jsonl"), "id", 2)
    assert problem.message == f"duplicate id 'same' (first used at {tmp_path / 'train.jsonl'}:1)"


def test_split_too_small_for_requested_counts(tmp_path: Path) -> None:
    path = _split_task(tmp_path, "{train: 10, dev: 10, test: 5}", n=20)
    problem = only_problem(path)
    assert (problem.file, problem.field, problem.line) == (str(path), "data.split", 5)
    assert (
        "10 train + 10 dev + 5 test = 25 rows but the data file has 20 usable rows"
        in problem.message
    )


def test_fraction_that_rounds_to_zero_rows(tmp_path: Path) -> None:
    problem = only_problem(_split_task(tmp_path, "{train: 0.5, dev: 0.01}", n=20))
    assert problem.field == "data.split.dev" and "is 0 rows" in problem.message


def test_bad_rows_in_a_split_file_are_reported(tmp_path: Path) -> None:
    path = _split_task(tmp_path, "{dev: 3}")
    with (tmp_path / "all.jsonl").open("a") as handle:
        handle.write('{"input": "no target"}\n')
    problem = only_problem(path)
    assert (problem.file, problem.field, problem.line) == (
        str(tmp_path / "all.jsonl"),
        "target",
        21,
    )


def test_label_targets_must_be_among_the_labels(tmp_path: Path) -> None:
    path = three_split_task(tmp_path, metric="type: label, labels: [A, B]")
    write_jsonl(
        tmp_path / "dev.jsonl", [{"input": "a", "target": "A"}, {"input": "b", "target": "b"}]
    )
    problem = only_problem(path)
    assert (problem.file, problem.field, problem.line) == (str(tmp_path / "dev.jsonl"), "target", 2)
    assert problem.message == "target 'b' is not one of metric.labels (A, B) (did you mean 'B'?)"


def test_many_row_problems_are_summarised(tmp_path: Path) -> None:
    path = three_split_task(tmp_path)
    (tmp_path / "dev.jsonl").write_text('{"input": "q"}\n' * (MAX_ROW_PROBLEMS_PER_FILE + 5))
    problems = validate_task(path)
    assert len(problems) == MAX_ROW_PROBLEMS_PER_FILE + 1
    assert problems[-1].message == "5 more row problems like these not shown"


def test_the_schema_forbids_extra_fields_everywhere() -> None:
    def forbids(model: Any) -> bool:
        return bool(
            model.model_config.get("extra") == "forbid" and model.model_config.get("frozen")
        )

    seen: list[Any] = []

    def walk(model: Any) -> None:
        if model in seen:
            return
        seen.append(model)
        for info in model.model_fields.values():
            for arg in _classes(info.annotation):
                walk(arg)

    walk(TaskFile)
    assert len(seen) >= 8
    assert all(forbids(model) for model in seen)


def _classes(annotation: Any) -> list[Any]:
    from typing import get_args

    from pydantic import BaseModel

    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [c for arg in get_args(annotation) for c in _classes(arg)]


def test_yaml_of_example_tasks_is_commented() -> None:
    for name in EXAMPLE_TASKS:
        text = (REPO / "tasks" / f"{name}.yaml").read_text()
        assert text.startswith("#")
        assert yaml.safe_load(text)["name"] == name


def test_odd_inline_keys_and_paths_are_problems_not_crashes(tmp_path: Path) -> None:
    body = BASE_HEADER + (
        'data:\n  dev: [{input: a, target: A, 1: one}]\n  test: "bad\\0name.jsonl"\n'
        "metric: {type: exact}\n"
    )
    problem = only_problem(write_task(tmp_path, body))
    assert (problem.field, problem.line) == ("data.test", 5)
    assert "invalid path" in problem.message


@pytest.mark.parametrize(
    ("labels", "targets"),
    [
        ("[yes, no]", ["yes", "no"]),
        ("[on, off]", ["on", "off"]),
        ("[Yes, No]", ["Yes", "No"]),
        ("[1.0, 2.0]", ["1.0", "2.0"]),
        ("[1, 2, 3]", ["1", "2", "3"]),
    ],
)
def test_labels_and_targets_are_the_text_written(
    tmp_path: Path, labels: str, targets: list[str]
) -> None:
    data = "".join(f"    - {{input: q{i}, target: {t}}}\n" for i, t in enumerate(targets))
    body = (
        BASE_HEADER
        + f"input_template: 'Q: {{{{input}}}} (on)'\ndata:\n  dev:\n{data}"
        + f"metric: {{type: label, labels: {labels}}}\n"
    )
    task = load_task(write_task(tmp_path, body))
    assert task.require_metric("test").labels == targets
    assert [e.targets[0] for e in task.split("dev")] == targets


def test_a_boolean_label_says_to_quote_it(tmp_path: Path) -> None:
    body = (
        BASE_HEADER
        + "data:\n  dev:\n    - {input: q, target: 'true'}\n"
        + "metric: {type: label, labels: [true, 'false']}\n"
    )
    problem = only_problem(write_task(tmp_path, body))
    assert (
        problem.field.startswith("metric.labels") and 'quote the label: "true"' in problem.message
    )
    assert problem.line == 6


def test_the_label_free_example_task_loads_without_targets_and_passes_the_run_checks() -> None:
    from promptopt.app.checks import run_problems

    path = REPO / "tasks" / "review-gist.yaml"
    assert validate_task(path) == []
    task = load_task(path)
    assert task.spec.metric is None and task.spec.search.strategy == "apohf"
    assert {k: len(v) for k, v in task.splits.items()} == {"train": 20, "dev": 10, "test": 30}
    assert all(e.targets == () for split in task.splits.values() for e in split)
    assert run_problems(task) == []


# --- hostile input -------------------------------------------------------------------------


def test_an_alias_bomb_in_a_task_file_is_one_located_problem(tmp_path: Path) -> None:
    laughs = 'a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]\n' + "".join(
        f"{name}: &{name} [{', '.join([f'*{prev}'] * 9)}]\n"
        for prev, name in zip("abcdefgh", "bcdefghi", strict=True)
    )
    path = three_split_task(tmp_path, laughs)
    problem = only_problem(path)
    assert (problem.file, problem.field, problem.line) == (str(path), "", 13)
    assert problem.message.startswith("invalid YAML: aliases repeat more than")


def test_a_deeply_nested_task_file_is_one_located_problem(tmp_path: Path) -> None:
    path = three_split_task(tmp_path, "x: " + "[" * 50_000 + "]" * 50_000 + "\n")
    problem = only_problem(path)
    assert (problem.file, problem.line) == (str(path), 8)
    assert "nest more than 100 levels deep" in problem.message


@pytest.mark.parametrize("depth", [150, 50_000])
def test_a_deeply_nested_jsonl_row_is_a_row_problem(tmp_path: Path, depth: int) -> None:
    path = three_split_task(tmp_path)
    dev = tmp_path / "dev.jsonl"
    nested = "[" * depth + "]" * depth
    dev.write_text('{"input": "ok", "target": "A"}\n{"input": ' + nested + ', "target": "A"}\n')
    problem = only_problem(path)
    assert (problem.file, problem.field, problem.line) == (str(dev), "", 2)
    assert "nests lists and objects more than 100 levels deep" in problem.message


def test_a_deeply_nested_csv_targets_cell_stays_text(tmp_path: Path) -> None:
    nested = "[" * 50_000 + "]" * 50_000
    (tmp_path / "dev.csv").write_text(f"input,targets\nq,{nested}\n")
    path = write_task(tmp_path, BASE_HEADER + "data: {dev: dev.csv}\nmetric: {type: exact}\n")
    problem = only_problem(path)
    assert (problem.field, problem.line) == ("targets", 2)
    assert "must be a non-empty list" in problem.message


def test_model_fields_added_later_stay_out_of_the_task_hash_at_their_defaults() -> None:
    from promptopt.task.modelspec import LATER_FIELDS, ModelSpec

    plain = ModelSpec(model="openai:gpt-4o-mini", temperature=0)
    # The canonical form of a model written before these fields existed.
    assert plain.model_dump(mode="json") == {
        "model": "openai:gpt-4o-mini",
        "base_url": None,
        "api_key_env": None,
        "temperature": 0.0,
        "max_tokens": None,
        "params": {},
        "price": None,
        "timeout_s": 60.0,
    }
    assert set(LATER_FIELDS) <= set(ModelSpec.model_fields)
    set_ = ModelSpec(model="openai:gpt-4o-mini", batch=True, rpm=60, url_credentials=True)
    dumped = set_.model_dump(mode="json")
    assert (dumped["batch"], dumped["rpm"], dumped["url_credentials"]) == (True, 60, True)
