from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from promptopt.app.compare import comparability_problems, prepare_diff, read_prompt_file
from promptopt.app.gate import ci_gate, finish_ci
from promptopt.errors import PromptoptError, UsageError
from promptopt.reporting.diff import ExampleOutcome, Provenance, build_diff, word_diff
from promptopt.reporting.html import diff_html
from promptopt.reporting.markdown import diff_markdown
from promptopt.run.records import SummaryRecord
from promptopt.task.loader import load_task
from tests.support.diff import (
    BEST_PROMPT,
    NEW_PROMPT,
    OLD_PROMPT,
    REGRESSED_IDS,
    external_references,
    make_run,
    make_task,
    run_cli,
)

SECTIONS = ("Verdict", "Provenance", "Prompt changes", "Score", "Flips", "Tokens, cost and latency")


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("diff")
    task = make_task(root / "task")
    for name, text in (("old", OLD_PROMPT), ("new", NEW_PROMPT), ("best", BEST_PROMPT)):
        (root / f"{name}.txt").write_text(text + "\n")
    return {"root": root, "task": task, "cache": root / "cache"}


def diff(env: dict[str, Path], old: str, new: str, *args: str) -> object:
    return run_cli(
        "diff",
        str(env["root"] / f"{old}.txt"),
        str(env["root"] / f"{new}.txt"),
        "--task",
        str(env["task"]),
        "--cache-dir",
        str(env["cache"]),
        *args,
    )


def test_word_diff_rebuilds_both_prompts_and_marks_changes() -> None:
    old, new = "Classify the review.\nBe brief.", "Classify the film review.\nBe  very brief!"
    segments = word_diff(old, new)
    assert "".join(s.text for s in segments if s.op != "insert") == old
    assert "".join(s.text for s in segments if s.op != "delete") == new
    inserted = " ".join(s.text for s in segments if s.op == "insert")
    deleted = " ".join(s.text for s in segments if s.op == "delete")
    assert "film" in inserted and "very" in inserted and "brief!" in inserted
    assert "brief." in deleted and "Classify" not in deleted + inserted
    assert word_diff("same words", "same words") == word_diff("same words", "same words")
    assert [s.op for s in word_diff("same words", "same words")] == ["equal"]


def _provenance() -> Provenance:
    return Provenance("t", "th", "dh", "test", 0, {}, "a", "b", "a.txt", "b.txt")


def test_identical_prompts_say_no_significant_change() -> None:
    outcomes = [
        ExampleOutcome(f"e{i}", "x", ("y",), "y", "y", float(i % 2), float(i % 2))
        for i in range(30)
    ]
    report = build_diff(_provenance(), "p", "p", outcomes)
    assert report.verdict == "no significant change"
    assert report.flips == [] and report.counts()["unchanged"] == 30
    assert "no significant change" in diff_markdown(report)


def test_identical_prompt_files_via_cli(env: dict[str, Path]) -> None:
    result = diff(env, "old", "old", "--format", "json")
    assert result.exit_code == 0, result.output  # type: ignore[attr-defined]
    data = json.loads(result.stdout)  # type: ignore[attr-defined]
    assert data["verdict"] == "no significant change"
    assert data["flips"] == [] and data["metric"]["delta"] == 0


def test_json_schema_flips_and_statistics(env: dict[str, Path]) -> None:
    result = diff(env, "old", "new", "--format", "json")
    assert result.exit_code == 0, result.output  # type: ignore[attr-defined]
    data = json.loads(result.stdout)  # type: ignore[attr-defined]
    assert set(data) >= {"schema", "provenance", "prompts", "metric", "verdict", "counts"}
    assert set(data) >= {"flips", "usage"}
    assert data["schema"] == "promptopt.diff/1"
    prov = data["provenance"]
    assert set(prov) >= {"task", "task_hash", "data_hash", "split", "n", "seed", "models"}
    assert set(prov) >= {"promptopt_version", "old", "new", "mismatches"}
    assert prov["split"] == "test" and prov["n"] == 20
    assert prov["models"]["target"]["reported"] == ["script.py:target"]
    assert len(prov["task_hash"]) == 64 and len(prov["data_hash"]) == 64
    assert data["prompts"]["old"] == OLD_PROMPT and data["prompts"]["new"] == NEW_PROMPT
    ops = {s["op"] for s in data["prompts"]["word_diff"]}
    assert ops == {"equal", "insert", "delete"}
    metric = data["metric"]
    assert metric["old"] == 0.5 and metric["new"] == 0.9
    assert metric["delta"] == pytest.approx(0.4)
    assert metric["delta_ci95"][0] > 0
    # 2 regressions and 10 improvements: p = 2 * (1 + 12 + 66) / 2**12
    assert metric["mcnemar"] == {"b": 2, "c": 10, "p_value": pytest.approx(158 / 4096)}
    assert metric["sign_test"] is None  # 0/1 scores: McNemar's test is the sign test
    assert data["verdict"] == "improved"
    assert data["counts"] == {"regressions": 2, "improvements": 10, "unchanged": 8}
    flips = data["flips"]
    assert [f["id"] for f in flips[:2]] == list(REGRESSED_IDS)
    assert {f["kind"] for f in flips[:2]} == {"regression"}
    assert {f["kind"] for f in flips[2:]} == {"improvement"}
    first = flips[0]
    assert set(first) >= {"input", "expected", "old_output", "new_output"}
    assert first["input"] == "review 200: a great film" and first["expected"] == ["positive"]
    assert first["old_output"] == "positive" and first["new_output"] == "negative"
    usage = data["usage"]
    # The new prompt is longer: more input tokens at $1 per million; cached answers still count.
    assert usage["new"]["input_tokens"] - usage["old"]["input_tokens"] == 20 * 5
    assert usage["delta"]["input_tokens"] == 100
    assert usage["delta"]["cost_usd"] == pytest.approx(100 / 1e6)
    assert set(usage["old"]) >= {"output_tokens", "mean_latency_s", "requests", "cache_hits"}


def test_every_section_in_every_format(env: dict[str, Path], tmp_path: Path) -> None:
    terminal = diff(env, "old", "new")
    assert terminal.exit_code == 0, terminal.output  # type: ignore[attr-defined]
    outputs = {"terminal": terminal.stdout}  # type: ignore[attr-defined]
    for fmt in ("md", "html"):
        out = tmp_path / f"report.{fmt}"
        result = diff(env, "old", "new", "-o", str(out))  # format from the suffix
        assert result.exit_code == 0, result.output  # type: ignore[attr-defined]
        outputs[fmt] = out.read_text()
    for fmt, text in outputs.items():
        for section in SECTIONS:
            assert section in text, (fmt, section)
        assert "improved" in text and "r200" in text and "r219" in text, fmt
        assert text.index("r200") < text.index("r201"), fmt  # regressions first
        assert "bd5a550d" in text or "task hash" in text
    assert "[-review.-]{+review carefully as positive or negative.+}" in outputs["terminal"]
    assert "{+review carefully as positive or negative.+}" in outputs["md"]
    assert "<ins>review carefully as positive or negative.</ins>" in outputs["html"]
    assert "<del>review.</del>" in outputs["html"]
    assert external_references(outputs["html"]) == []


def test_html_escapes_model_output() -> None:
    outcomes = [
        ExampleOutcome("e1", "<b>in</b>", ("ok",), "ok", '<img src="https://x.io/a.png">', 1, 0),
        ExampleOutcome("e2", "in", ("ok",), "no", "ok", 0, 1),
    ]
    report = build_diff(_provenance(), "<script>a</script>", "url(http://x)", outcomes)
    page = diff_html(report)
    assert "<img" not in page and "<script>" not in page and "&lt;img" in page
    assert external_references(page) == []
    md = diff_markdown(report)
    assert re.search(r"(?<!\\)<img", md) is None and "\\<img" in md


def test_fail_on_regression_exit_code(env: dict[str, Path]) -> None:
    result = diff(env, "best", "old", "--format", "md", "--fail-on-regression")
    assert result.exit_code == 4, result.output  # type: ignore[attr-defined]
    assert "regressed" in result.stdout  # type: ignore[attr-defined]
    assert diff(env, "best", "old", "--format", "md").exit_code == 0  # type: ignore[attr-defined]
    improved = diff(env, "old", "best", "--format", "md", "--fail-on-regression")
    assert improved.exit_code == 0  # type: ignore[attr-defined]


def test_prompt_files_need_a_task(env: dict[str, Path]) -> None:
    result = run_cli("diff", str(env["root"] / "old.txt"), str(env["root"] / "new.txt"))
    assert result.exit_code == 2
    assert "--task" in result.output


def test_read_prompt_file_drops_final_newlines(tmp_path: Path) -> None:
    path = tmp_path / "p.txt"
    path.write_text("line one\nline two\n\n")
    assert read_prompt_file(path) == "line one\nline two"
    path.write_text("\n")
    with pytest.raises(UsageError, match="empty"):
        read_prompt_file(path)


@pytest.fixture(scope="module")
def runs(env: dict[str, Path]) -> dict[str, Path]:
    root = env["root"]
    a = make_run(env["task"], root / "runs", env["cache"])
    b = make_run(env["task"], root / "runs", env["cache"], "--baseline", str(root / "new.txt"))
    # Another task: the same prompt and models, but different test data.
    other = make_task(root / "other")
    text = other.read_text().replace("review 2", "critique 2")
    other.write_text(text)
    c = make_run(other, root / "runs", env["cache"])
    return {"a": a, "b": b, "c": c}


def test_two_run_folders_compare_their_best_prompts(
    env: dict[str, Path], runs: dict[str, Path]
) -> None:
    result = run_cli(
        "diff", str(runs["a"]), str(runs["b"]), "--cache-dir", str(env["cache"]), "--format", "json"
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    a_best = json.loads((runs["a"] / "summary.json").read_text())["best_prompt"]
    b_best = json.loads((runs["b"] / "summary.json").read_text())["best_prompt"]
    assert data["prompts"] == {**data["prompts"], "old": a_best, "new": b_best}
    assert data["provenance"]["old"]["label"].endswith(")")  # "<run> best (cNNNN)"
    assert data["provenance"]["mismatches"] == []


def test_one_run_folder_compares_initial_with_best(
    env: dict[str, Path], runs: dict[str, Path]
) -> None:
    result = run_cli("diff", str(runs["a"]), "--cache-dir", str(env["cache"]), "--format", "json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["prompts"]["old"] == OLD_PROMPT
    assert data["verdict"] == "improved"
    assert data["counts"]["improvements"] == 10 and data["counts"]["regressions"] == 0
    # Scored again through the cache: the same statistics the run's final evaluation gave.
    summary = json.loads((runs["a"] / "summary.json").read_text())
    assert data["metric"]["delta"] == summary["test_comparison"]["delta"]
    assert data["metric"]["delta_ci95"] == summary["test_comparison"]["ci95"]


def test_refuses_runs_of_different_data_unless_forced(
    env: dict[str, Path], runs: dict[str, Path]
) -> None:
    args = ["diff", str(runs["a"]), str(runs["c"]), "--cache-dir", str(env["cache"])]
    refused = run_cli(*args)
    assert refused.exit_code == 2
    text = " ".join(refused.output.split())
    assert "cannot be compared" in text and "--force" in text and "data" in text
    forced = run_cli(*args, "--force", "--format", "json")
    assert forced.exit_code == 0, forced.output
    assert any("data" in m for m in json.loads(forced.stdout)["provenance"]["mismatches"])


def test_refuses_another_target_model(env: dict[str, Path], runs: dict[str, Path]) -> None:
    plan = prepare_diff(runs["a"], runs["b"])
    assert plan.mismatches == ()
    task = load_task(env["task"])
    other = task.spec.models.target.model_copy(update={"model": "scripted:script.py:other"})  # type: ignore[union-attr]
    spec = task.spec.model_copy(
        update={"models": task.spec.models.model_copy(update={"target": other})}
    )
    from dataclasses import replace

    problems = comparability_problems(replace(task, spec=spec), [plan.old])
    assert len(problems) == 1 and "target model" in problems[0]


def test_ci_gate_rules() -> None:
    def summary(**fields: Any) -> SummaryRecord:
        return SummaryRecord.model_validate(
            {"run_dir": "r", "task": "t", "strategy": "ape", "seed": 0, **fields}
        )

    base = {
        "initial_prompt": "a",
        "best_prompt": "b",
        "test_comparison": {"delta": 0.3, "ci95": [0.1, 0.5], "verdict": "improved"},
    }
    assert ci_gate(summary(**base)).passed
    assert not ci_gate(summary(**base), 0.2).passed
    assert not ci_gate(summary(**{**base, "best_prompt": "a"})).passed
    same = {**base, "test_comparison": {"delta": 0.3, "ci95": [0.1, 0.5], "verdict": "x"}}
    assert not ci_gate(summary(**same)).passed
    with pytest.raises(UsageError, match="final evaluation"):
        ci_gate(summary(initial_prompt="a", best_prompt="b"))
    # A gain that needs demonstrations is not written to a prompt file, which cannot hold them.
    with_demos = ci_gate(summary(**base, best_demos=["t1", "t2"]))
    assert not with_demos.passed and "demonstration" in with_demos.reason
    assert "--demos-file" in with_demos.reason
    # Unless they are written too (--demos-file): then the same text with other
    # demonstrations is a new prompt, and the same text with the same ones is not.
    assert ci_gate(summary(**base, best_demos=["t1", "t2"]), writes_demos=True).passed
    same_text = {**base, "best_prompt": "a", "best_demos": ["t1"]}
    assert ci_gate(summary(**same_text, initial_demos=["t2"]), writes_demos=True).passed
    kept = ci_gate(summary(**same_text, initial_demos=["t1"]), writes_demos=True)
    assert not kept.passed and "no prompt better" in kept.reason


@pytest.mark.parametrize("existed", [True, False])
def test_a_failed_prompt_write_puts_the_demos_file_back(tmp_path: Path, existed: bool) -> None:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    new = {"id": "c1", "demos": [{"id": "t1", "input": "x", "output": "y"}]}
    (run_dir / "best_demos.json").write_text(json.dumps(new))
    summary = SummaryRecord.model_validate(
        {
            "run_dir": str(run_dir),
            "task": "t",
            "strategy": "demos",
            "seed": 0,
            "initial_prompt": "a",
            "best_prompt": "a",
            "best_demos": ["t1"],
            "test_comparison": {"delta": 0.3, "ci95": [0.1, 0.5], "verdict": "improved"},
        }
    )
    demos = tmp_path / "prompt.demos.json"
    if existed:
        demos.write_text('{"id": "c0", "demos": []}\n')
    unwritable = tmp_path / "prompt.txt"
    unwritable.mkdir()  # the prompt file cannot be written over a folder
    with pytest.raises(PromptoptError, match="--write-if-better: cannot write"):
        finish_ci(
            summary,
            write_if_better=unwritable,
            min_improvement=0.0,
            demos_file=demos,
            summary_md=None,
            env={},
        )
    # The old pair stays: new demonstrations beside the old prompt were never scored.
    if existed:
        assert demos.read_text() == '{"id": "c0", "demos": []}\n'
    else:
        assert not demos.exists()


def test_ci_gate_of_a_task_without_a_metric_uses_the_judged_win_rate() -> None:
    def summary(**fields: Any) -> SummaryRecord:
        return SummaryRecord.model_validate(
            {"run_dir": "r", "task": "t", "strategy": "apohf", "seed": 0, **fields}
        )

    judged = {
        "source": "judge",
        "n": 30,
        "wins": 20,
        "losses": 4,
        "ties": 6,
        "win_rate": 0.77,
        "ci95": [0.65, 0.88],
        "sign_p": 0.001,
        "verdict": "improved",
    }
    dev = {**judged, "n": 10, "wins": 6, "losses": 1, "ties": 3}
    base = {"initial_prompt": "a", "best_prompt": "b", "dev_preference": dev}
    passed = ci_gate(summary(**base, test_preference=judged))
    assert passed.passed and "win rate 0.77" in passed.reason
    assert passed.ci95 == pytest.approx((0.15, 0.38))
    # --min-improvement is the margin the interval must clear above 0.5.
    assert not ci_gate(summary(**base, test_preference=judged), 0.2).passed
    unsure = {**judged, "verdict": "no significant change", "ci95": [0.45, 0.7]}
    refused = ci_gate(summary(**base, test_preference=unsure))
    assert not refused.passed and "no significant change" in refused.reason
    # The judge kept the initial prompt on dev: nothing to write, and not an error.
    kept = ci_gate(summary(initial_prompt="a", best_prompt="a", dev_preference=dev))
    assert not kept.passed and "preferred no prompt" in kept.reason


def test_external_reference_check_can_fail() -> None:
    assert external_references('<img src="x.png">') == ["<img>"]
    assert external_references('<a href="https://example.com">x</a>') != []
    assert external_references("<style>@import 'x.css';</style>") != []
    assert external_references('<p style="background:url(//e.com/a.png)">x</p>') != []
    assert external_references("<p>url(http://x) is only text here</p>") == []
