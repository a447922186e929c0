"""The HTML reports render in a real browser (headless Chromium, no network)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from promptopt.reporting.write import write_run_reports
from promptopt.run.folder import REPORT_HTML, RunFolder
from tests.support.diff import NEW_PROMPT, OLD_PROMPT, REGRESSED_IDS, make_run, make_task, run_cli
from tests.support.history import make_repo

CHROMIUM = Path("/usr/bin/chromium")

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not CHROMIUM.exists(), reason="needs /usr/bin/chromium (apt-get install -y chromium)"
    ),
]


def chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    profile = tmp_path / "profile"
    profile.mkdir(exist_ok=True)
    return subprocess.run(
        [
            str(CHROMIUM),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={profile}",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_diff_html_renders_verdict_and_flips(tmp_path: Path) -> None:
    task = make_task(tmp_path / "task")
    (tmp_path / "old.txt").write_text(OLD_PROMPT)
    (tmp_path / "new.txt").write_text(NEW_PROMPT)
    page = tmp_path / "diff.html"
    result = run_cli(
        "diff",
        str(tmp_path / "old.txt"),
        str(tmp_path / "new.txt"),
        "--task",
        str(task),
        "--cache-dir",
        str(tmp_path / "cache"),
        "-o",
        str(page),
    )
    assert result.exit_code == 0, result.output
    dom = chromium(tmp_path, "--dump-dom", page.as_uri())
    assert dom.returncode == 0, dom.stderr
    # The DOM as the browser built it: the verdict and every flip, regressions first.
    assert 'id="verdict"' in dom.stdout and "Verdict: improved" in dom.stdout
    rows = dom.stdout.split('<tr class="')
    kinds = [row.split('"')[0] for row in rows[1:] if row.startswith(("regression", "improv"))]
    assert kinds == ["regression"] * 2 + ["improvement"] * 10
    assert all(f"<td>{i}</td>" in dom.stdout for i in REGRESSED_IDS)
    assert "<ins>" in dom.stdout and "<del>" in dom.stdout

    shot = tmp_path / "diff.png"
    png = chromium(tmp_path, f"--screenshot={shot}", "--window-size=1200,2000", page.as_uri())
    assert png.returncode == 0, png.stderr
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_run_report_html_renders_its_chart(tmp_path: Path) -> None:
    run = make_run(make_task(tmp_path / "task"), tmp_path / "runs", tmp_path / "cache")
    write_run_reports(RunFolder(run))
    dom = chromium(tmp_path, "--dump-dom", (run / REPORT_HTML).as_uri())
    assert dom.returncode == 0, dom.stderr
    assert "<svg" in dom.stdout and "<polyline" in dom.stdout
    assert "Verdict: improved" in dom.stdout and 'id="status">finished<' in dom.stdout


def test_history_html_renders_the_plot_and_the_regression(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    page = tmp_path / "history.html"
    result = run_cli(
        "history",
        str(repo.prompt),
        "--task",
        str(repo.task),
        "--cache-dir",
        str(tmp_path / "cache"),
        "-o",
        str(page),
    )
    assert result.exit_code == 0, result.output
    dom = chromium(tmp_path, "--dump-dom", page.as_uri())
    assert dom.returncode == 0, dom.stderr
    # The DOM as the browser built it: the chart with its CI band and one regression marked,
    # a row per revision, each step's word diff.
    assert '<svg class="history"' in dom.stdout and 'class="ci-band"' in dom.stdout
    assert dom.stdout.count('class="rev regressed"') == 1
    rows = dom.stdout.split('<tr class="')
    marks = [row.split('"')[0] for row in rows[1:] if 'id="rev-' in row.split(">")[0]]
    assert marks == ["first", "improved", "same", "regressed"]
    assert f'id="rev-{repo.commits[3][:8]}"' in dom.stdout
    assert "<ins>" in dom.stdout and "<del>" in dom.stdout

    shot = tmp_path / "history.png"
    png = chromium(tmp_path, f"--screenshot={shot}", "--window-size=1200,2000", page.as_uri())
    assert png.returncode == 0, png.stderr
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
