"""The Python API: the README's example runs (models swapped for scripted ones), and the
functions agree with the command line."""

from __future__ import annotations

import asyncio
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import promptopt
from promptopt.errors import TaskFileError, UsageError
from promptopt.task.example import Example
from tests.support import REPO

# Scripted stand-ins for the README's OpenAI models: the target gets the label right only when
# its instruction asks for the label alone; the optimizer proposes such an instruction.
SCRIPT = """
GOOD = ("good", "great", "best", "fun", "moving", "beautiful", "funny", "love", "charm")


def target(request):
    system = request.messages[0]["content"].lower()
    review = request.messages[-1]["content"].lower()
    if "label only" in system:
        return "positive" if any(w in review for w in GOOD) else "negative"
    return "Positive!"


def optimizer(request):
    return "<START>Say whether the review is positive or negative; answer with the label only.<END>"
"""


def readme_example() -> str:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    section = text.split("### Python API", 1)[1]
    match = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert match, "the README's Python API section has no python code block"
    return match.group(1)


def test_the_readme_example_runs(tmp_path: Path) -> None:
    code = readme_example()
    assert '"openai:gpt-4o-mini"' in code and '"openai:gpt-4o"' in code
    code = code.replace('"openai:gpt-4o-mini"', '"scripted:script.py:target"')
    code = code.replace('"openai:gpt-4o"', '"scripted:script.py:optimizer"')
    shutil.copytree(REPO / "tasks" / "data" / "sst2", tmp_path / "tasks" / "data" / "sst2")
    (tmp_path / "script.py").write_text(SCRIPT)
    (tmp_path / "example.py").write_text(code)
    env = {"PATH": "/usr/bin:/bin", "PROMPTOPT_CACHE_DIR": str(tmp_path / "cache")}
    done = subprocess.run(
        [sys.executable, "example.py"],
        cwd=tmp_path,
        env={**env, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    best, scores, held_out, diff = done.stdout.splitlines()
    assert "label only" in best
    initial, arrow, best_test, verdict = scores.split(" ", 3)
    assert arrow == "->" and float(best_test) > float(initial)
    assert verdict.startswith("improved (")
    assert float(held_out.split()[0]) == pytest.approx(float(best_test))
    assert diff.startswith("improved [")
    runs = list((tmp_path / "runs").iterdir())
    assert len(runs) == 1 and (runs[0] / "report.html").is_file()


def rows(n: int, offset: int) -> list[dict[str, str]]:
    return [
        {"input": f"item {offset + i}", "target": "even" if (offset + i) % 2 == 0 else "odd"}
        for i in range(n)
    ]


def test_make_task_checks_like_a_task_file() -> None:
    with pytest.raises(TaskFileError, match="dev"):
        promptopt.make_task(name="t", prompt="p", train=rows(4, 0), dev=[])


def test_make_task_with_a_metric_function_scores_with_it(tmp_path: Path) -> None:
    (tmp_path / "script.py").write_text("def target(request):\n    return 'even'\n")
    seen: list[str] = []

    def metric(output: str, example: Example) -> float:
        seen.append(output)
        return 1.0 if output == example.target else 0.0

    task = promptopt.make_task(
        name="parity",
        prompt="Say even or odd.",
        train=rows(4, 0),
        dev=rows(6, 10),
        metric=metric,
        target="scripted:script.py:target",
        optimizer="scripted:script.py:target",
        base_dir=tmp_path,
    )
    evaluation = promptopt.evaluate(task, split="dev", no_cache=True)
    assert evaluation.result.score == pytest.approx(0.5)
    assert seen == ["even"] * 6


def test_the_sync_functions_refuse_a_running_loop_and_point_to_async(tmp_path: Path) -> None:
    task = promptopt.make_task(
        name="t",
        prompt="p",
        train=rows(2, 0),
        dev=rows(2, 2),
        target="scripted:script.py:target",
        base_dir=tmp_path,
    )

    async def inside() -> None:
        promptopt.evaluate(task)

    with pytest.raises(UsageError, match="evaluate_async"):
        asyncio.run(inside())


def test_importing_promptopt_does_not_load_the_api_or_the_sdks() -> None:
    code = (
        "import sys, promptopt; promptopt.__version__; "
        "assert 'promptopt.app.api' not in sys.modules; "
        "assert 'openai' not in sys.modules and 'anthropic' not in sys.modules; "
        "promptopt.make_task; assert 'promptopt.app.api' in sys.modules; "
        "assert 'openai' not in sys.modules and 'anthropic' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO)


def test_make_task_refuses_values_that_are_not_plain_data_with_one_message() -> None:
    class Opaque:
        pass

    with pytest.raises(TaskFileError, match="not plain data"):
        promptopt.make_task(
            name="t", prompt="p", train=[{"input": Opaque(), "target": "a"}], dev=rows(2, 0)
        )


def test_compare_of_two_texts_needs_a_task() -> None:
    with pytest.raises(UsageError, match="task="):
        promptopt.compare("old", "new")


def test_the_lazy_api_is_listed() -> None:
    assert {"optimize", "evaluate", "compare", "make_task"} <= set(dir(promptopt))


DEMO_SCRIPT = """
def target(request):
    # Answers "odd" only when a demonstration showed it how: the turns before the input.
    shown = [m["content"] for m in request.messages[1:-1]]
    return "odd" if "odd" in shown else "even"
"""


def test_evaluate_and_compare_send_demonstrations_with_prompt_texts(tmp_path: Path) -> None:
    (tmp_path / "script.py").write_text(DEMO_SCRIPT)
    task = promptopt.make_task(
        name="parity",
        prompt="Say even or odd.",
        train=rows(4, 0),
        dev=rows(6, 10),
        target="scripted:script.py:target",
        optimizer="scripted:script.py:target",
        base_dir=tmp_path,
        metric={"type": "exact"},
    )
    demo = promptopt.Demo("r1", "number 1", "odd")
    plain = promptopt.evaluate(task, split="dev", no_cache=True)
    shown = promptopt.evaluate(task, split="dev", no_cache=True, demos=[demo])
    assert {r.output for r in plain.result.examples} == {"even"}
    assert {r.output for r in shown.result.examples} == {"odd"}
    # The same demonstrations from a run's best_demos.json.
    demos_file = tmp_path / "best_demos.json"
    demos_file.write_text('{"id": "c1", "demos": [{"id": "r1", "input": "x", "output": "odd"}]}')
    from_file = promptopt.evaluate(task, split="dev", no_cache=True, demos=demos_file)
    assert {r.output for r in from_file.result.examples} == {"odd"}
    report = promptopt.compare(
        "Say even or odd.",
        "Say even or odd.",
        task=task,
        split="dev",
        no_cache=True,
        new_demos=[demo],
    )
    old_outputs = {o.old_output for o in report.outcomes}
    new_outputs = {o.new_output for o in report.outcomes}
    assert old_outputs == {"even"} and new_outputs == {"odd"}


def test_optimize_makes_the_checks_validate_makes_before_calling_a_model(tmp_path: Path) -> None:
    # The metric function takes one argument: a run would find out only when scoring the first
    # answer, after the search had spent calls.
    (tmp_path / "script.py").write_text(
        "def reply(request):\n    raise AssertionError('a model was called')\n"
    )
    (tmp_path / "metric.py").write_text("def score(output):\n    return 1.0\n")
    task = promptopt.make_task(
        name="t",
        prompt="p",
        train=rows(4, 0),
        dev=rows(4, 10),
        metric={"type": "python", "function": "metric.py:score"},
        target="scripted:script.py:reply",
        optimizer="scripted:script.py:reply",
        base_dir=tmp_path,
    )
    with pytest.raises(TaskFileError) as raised:
        promptopt.optimize(task, strategy="apex", out=tmp_path / "runs", no_cache=True)
    message = str(raised.value)
    assert "unknown strategy 'apex'" in message and "did you mean 'ape'" in message
    assert "metric.function" in message and "(output, example)" in message
    assert not (tmp_path / "runs").exists()


PARITY_SCRIPT = """
def target(request):
    # Right on every number once a demonstration was shown before it; "even" otherwise.
    if len(request.messages) <= 2:
        return "even"
    number = int(request.messages[-1]["content"].split()[-1])
    return "odd" if number % 2 else "even"
"""


def test_a_run_result_carries_its_best_demos(tmp_path: Path) -> None:
    (tmp_path / "script.py").write_text(PARITY_SCRIPT)

    def parity(prompt: str | dict[str, Any]) -> promptopt.Task:
        return promptopt.make_task(
            name="parity",
            prompt=prompt,
            train=rows(20, 0),
            dev=rows(10, 100),
            test=rows(10, 200),
            target="scripted:script.py:target",
            optimizer="scripted:script.py:target",
            base_dir=tmp_path,
            metric={"type": "exact"},
        )

    with_demos = parity({"instruction": "Say even or odd.", "demos": {"k": 2}})
    result = promptopt.optimize(with_demos, strategy="demos", out=tmp_path / "runs", no_cache=True)
    assert result.best_test == 1.0
    assert [d.id for d in result.best_demos] == result.summary.best_demos
    assert len(result.best_demos) == 2 and all(d.input for d in result.best_demos)
    plain = parity("Say even or odd.")
    without = promptopt.optimize(plain, strategy="ape", out=tmp_path / "runs", no_cache=True)
    assert without.best_demos == ()
