"""One view model behind every report format; the reporting package loads no model SDK."""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from importlib import resources
from pathlib import Path

import pytest
from rich.console import Console

from promptopt.reporting.diff import ExampleOutcome, Provenance, build_diff
from promptopt.reporting.html import diff_html, run_html
from promptopt.reporting.markdown import MAX_MD_FLIPS, diff_markdown, run_markdown
from promptopt.reporting.terminal import diff_renderable
from promptopt.reporting.view import DiffView, RunView, verdict_with_errors
from promptopt.run.folder import RunFolder
from tests.support import FIXTURES, REPO

ROOT = REPO
OLD_RUN = FIXTURES / "runs" / "v0-toy-sentiment"
SDKS = ("openai", "anthropic", "llama_cpp")

# A decimal figure as the reports write it: 0.500, +0.400, $0.0048, 0.001953, 0.2 s.
FIGURE = re.compile(r"[-+]?\$?\d+\.\d+")


class _Text(HTMLParser):
    """The text a browser shows, without the style sheet and the chart."""

    def __init__(self) -> None:
        super().__init__()
        self.parts: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("style", "svg"):
            self._skip += 1

    def handle_endtag(self, tag: str) -> None:
        if tag in ("style", "svg"):
            self._skip -= 1

    def handle_data(self, data: str) -> None:
        if not self._skip:
            self.parts.append(data)


def html_text(page: str) -> str:
    parser = _Text()
    parser.feed(page)
    parser.close()
    return " ".join(parser.parts)


def _run_with_lineage(tmp_path: Path) -> Path:
    """A copy of the old fixture run whose best prompt descends from the initial one."""
    run = tmp_path / "run"
    shutil.copytree(OLD_RUN, run)
    records = [json.loads(line) for line in (run / "candidates.jsonl").read_text().splitlines()]
    for record in records:
        if record["id"] == "c0000":
            record["scores"]["dev"] = {"mean": 0.55, "n": 20}
        if record["id"] == "c0001":
            record["parents"] = ["c0000"]
            record["operator"] = "edit"
            record["feedback"] = {"gradient": "too vague | <terse>", "errors": ["r1 -> x"]}
            record["scores"]["dev"] = {"mean": 0.95, "n": 20}
    (run / "candidates.jsonl").write_text("\n".join(json.dumps(r) for r in records) + "\n")
    return run


def test_markdown_and_html_of_a_run_show_the_same_figures(tmp_path: Path) -> None:
    view = RunView.from_folder(RunFolder.open(_run_with_lineage(tmp_path)))
    assert view.test_diff is not None and len(view.test_diff.flips) <= MAX_MD_FLIPS
    md, page = run_markdown(view), run_html(view)
    text = html_text(page)
    md_figures, html_figures = set(FIGURE.findall(md)), set(FIGURE.findall(text))
    assert md_figures == html_figures
    # Figures of every part: scores, the test comparison, lineage gain, trajectory, usage.
    assert {"0.550", "0.950", "+0.400", "0.001953", "$0.0048", "0.2"} <= md_figures
    for entry in view.lineage:
        assert f"{entry.id}" in md and entry.id in text
        for note in entry.notes:
            assert note.key in md and note.key in text
    for row in view.usage:
        for cell in (row.requests, row.cache_hits, row.input_tokens, row.output_tokens):
            assert f"| {cell} |" in md and f">{cell}</td>" in page
    for step in view.trajectory:
        assert f"| {step.step} |" in md and f">{step.step}</td>" in page
    assert view.test_diff.verdict_sentence in md and view.test_diff.verdict_sentence in text
    assert "&lt;terse&gt;" in page and "<terse>" not in page


def _diff_report(flips: int) -> DiffView:
    outcomes = [
        ExampleOutcome(f"e{i:03d}", f"input [b]{i}[/b]", ("yes",), "[/red]no", "yes", 0.0, 1.0)
        for i in range(flips)
    ] + [ExampleOutcome("same", "x", ("y",), "y", "y", 1.0, 1.0)]
    provenance = Provenance("t", "th", "dh", "test", 0, {}, "a", "b", "a.txt", "b.txt")
    return DiffView.of(build_diff(provenance, "Say [b]no[/b].", "Say yes.", outcomes))


def test_every_format_renders_the_same_diff_view() -> None:
    view = _diff_report(MAX_MD_FLIPS + 5)
    md, page = diff_markdown(view), diff_html(view)
    console = Console(record=True, width=200, file=io.StringIO())
    console.print(diff_renderable(view))
    terminal = console.export_text()
    for text in (md, html_text(page), terminal):
        assert view.verdict_sentence in text
        assert view.counts in text
        for row in view.scores:
            assert row.value in text and row.ci in text
        for usage in view.usage:
            assert usage.old in text and usage.delta in text
    # Markdown keeps a pull-request comment short; the HTML and the terminal list every flip.
    assert "… and 5 more" in md and md.count("| improvement 0.00 → 1.00 |") == MAX_MD_FLIPS
    assert page.count('<tr class="improvement">') == MAX_MD_FLIPS + 5
    assert terminal.count("improvement 0.00→1.00") == MAX_MD_FLIPS + 5
    # Brackets in prompts and outputs are text, not console markup.
    assert "[-[b]no[/b].-]{+yes.+}" in terminal and "[/red]no" in terminal


def test_limited_keeps_the_first_flips_and_counts_the_rest() -> None:
    view = _diff_report(4)
    assert view.limited(10) is view
    short = view.limited(3)
    assert short.flips == view.flips[:3] and short.flips_omitted == 1
    assert short.limited(2).flips_omitted == 2


def test_templates_are_package_data() -> None:
    templates = resources.files("promptopt.reporting").joinpath("templates")
    names = {entry.name for entry in templates.iterdir()}
    assert {"run.md.j2", "diff.md.j2", "run.html.j2", "diff.html.j2"} <= names


def _python(code: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


_NO_SDK = f"""
loaded = sorted(m for m in sys.modules if m.split(".")[0] in {SDKS!r})
assert not loaded, loaded
"""


def test_the_reporting_package_imports_no_model_sdk() -> None:
    code = (
        "import importlib, pkgutil, sys\n"
        "import promptopt.reporting as pkg\n"
        "names = [m.name for m in pkgutil.iter_modules(pkg.__path__, pkg.__name__ + '.')]\n"
        "assert 'promptopt.reporting.view' in names, names\n"
        "for name in names:\n"
        "    importlib.import_module(name)\n" + _NO_SDK
    )
    result = _python(code)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("fmt", ["md", "html"])
def test_promptopt_report_imports_no_model_sdk(tmp_path: Path, fmt: str) -> None:
    run = tmp_path / "run"
    shutil.copytree(OLD_RUN, run)
    code = (
        "import sys\n"
        "from typer.testing import CliRunner\n"
        "from promptopt.cli.main import app\n"
        f"result = CliRunner().invoke(app, ['report', {str(run)!r}, '--format', {fmt!r}])\n"
        "assert result.exit_code == 0, result.output\n"
        "assert 'Initial vs best on test' in result.stdout\n" + _NO_SDK
    )
    result = _python(code)
    assert result.returncode == 0, result.stderr


def test_flips_sort_example_ids_naturally() -> None:
    ids = ["test-39", "test-4", "test-100", "test-10"]
    outcomes = [ExampleOutcome(i, "x", ("yes",), "no", "yes", 0.0, 1.0) for i in ids]
    provenance = Provenance("t", "th", "dh", "test", 0, {}, "a", "b", "a.txt", "b.txt")
    report = build_diff(provenance, "Say no.", "Say yes.", outcomes)
    assert [o.id for o in report.flips] == ["test-4", "test-10", "test-39", "test-100"]


def test_the_terminal_view_caps_flips_and_says_how_many_more() -> None:
    view = _diff_report(50)
    console = Console(record=True, width=200, file=io.StringIO())
    console.print(diff_renderable(view, max_flips=20))
    terminal = console.export_text()
    assert terminal.count("improvement 0.00→1.00") == 20
    assert "… and 30 more" in terminal
    assert "e019" in terminal and "e020" not in terminal


def test_a_graded_diff_names_the_sign_test_in_every_format() -> None:
    # Partial credit on four examples: the bootstrap interval excludes 0, the sign test
    # (p = 0.125) does not agree, and the reports say which test held the verdict back.
    outcomes = [
        ExampleOutcome(f"e{i:03d}", "x", ("y",), "n", "y-ish", 0.0, 0.5) for i in range(4)
    ] + [ExampleOutcome(f"s{i:03d}", "x", ("y",), "n", "n", 0.0, 0.0) for i in range(96)]
    provenance = Provenance("t", "th", "dh", "test", 0, {}, "a", "b", "a.txt", "b.txt")
    report = build_diff(provenance, "Say no.", "Say yes.", outcomes)
    assert report.verdict == "no significant change"
    data = report.to_json()["metric"]
    assert data["mcnemar"] is None and data["binary"] is False
    assert data["sign_test"] == {"worse": 0, "better": 4, "p_value": 0.125}
    view = DiffView.of(report)
    assert "exact sign test p = 0.125 on 0 lower and 4 higher scores" in view.verdict_sentence
    assert view.changed_test is not None
    assert "Exact sign test on the changed examples" in view.changed_test
    console = Console(record=True, width=200, file=io.StringIO())
    console.print(diff_renderable(view))
    for text in (diff_markdown(view), html_text(diff_html(view)), console.export_text()):
        assert view.verdict_sentence in text


def test_a_significant_test_verdict_that_errors_could_have_made_says_so(tmp_path: Path) -> None:
    # The headline said "**improved**" though two test answers of the initial prompt had
    # failed and were scored 0 (the errors note sat elsewhere in the report).
    run = _run_with_lineage(tmp_path)
    summary = json.loads((run / "summary.json").read_text())
    summary["test_errors"] = 2
    (run / "summary.json").write_text(json.dumps(summary))
    view = RunView.from_folder(RunFolder.open(run))
    assert view.test_comparison is not None
    assert view.test_comparison.verdict.startswith("improved, but 2 test example(s) failed")
    assert "may have decided it" in run_markdown(view)
    assert verdict_with_errors("no significant change", 2) == "no significant change"
    assert verdict_with_errors("improved", 0) == "improved"


def test_a_graded_run_from_before_the_sign_test_is_reported_with_it(tmp_path: Path) -> None:
    # Its summary.json says "improved" on the bootstrap alone; the report's own comparison of
    # final_eval.json (4 of 20 examples up by 0.5: sign test p = 0.125) says otherwise, and
    # the headline now agrees with it, saying what the old record said.
    run = _run_with_lineage(tmp_path)
    final = json.loads((run / "final_eval.json").read_text())
    for i, (old, new) in enumerate(
        zip(final["initial"]["test"], final["best"]["test"], strict=True)
    ):
        old["score"], new["score"] = 0.0, (0.5 if i < 4 else 0.0)
    (run / "final_eval.json").write_text(json.dumps(final))
    summary = json.loads((run / "summary.json").read_text())
    summary["test_comparison"] = {"delta": 0.1, "ci95": [0.02, 0.2], "verdict": "improved"}
    (run / "summary.json").write_text(json.dumps(summary))
    view = RunView.from_folder(RunFolder.open(run))
    assert view.test_comparison is not None
    assert view.test_comparison.verdict == "no significant change"
    assert "summary.json, written before the sign test, says improved" in (
        view.test_comparison.sentence
    )
    assert view.test_diff is not None and view.test_diff.verdict == "no significant change"
