"""History reports built from scores alone: one revision, ties, and text from commits escaped."""

from __future__ import annotations

from promptopt.reporting.diff import Commit
from promptopt.reporting.history import HistoryProvenance, build_history, score_revision
from promptopt.reporting.html import history_html
from promptopt.reporting.markdown import history_markdown
from tests.support.diff import external_references


def _commit(i: int, subject: str = "edit") -> Commit:
    return Commit(f"{i:040x}", "Ada <ada@example.com>", f"2026-01-0{i}T00:00:00+00:00", subject)


PROVENANCE = HistoryProvenance("t", "th", "dh", "test", 0, "p.txt", {}, "label")


def test_one_revision_has_no_step_and_no_gate() -> None:
    report = build_history(PROVENANCE, [score_revision(_commit(1), "p", [1, 0, 1], seed=0)])
    assert report.steps == () and report.gate is None and not report.newest_regressed
    data = report.to_json()
    assert data["best"]["hash"] == _commit(1).hash and data["steps"] == []
    assert "Only one revision: nothing to compare." in history_markdown(report)
    assert "Only one revision" in history_html(report)


def test_ties_pick_the_newest_and_commit_text_is_escaped() -> None:
    evil = "fix | <script>alert(1)</script> `x`"
    revisions = [
        score_revision(_commit(1), "a", [1, 1, 0, 0], seed=0),
        score_revision(_commit(2, evil), "b <b>", [0, 0, 1, 1], seed=0),
    ]
    report = build_history(PROVENANCE, revisions)
    assert report.best.commit.hash == _commit(2).hash
    assert report.steps[0].verdict == "no significant change"
    md = history_markdown(report)
    assert "fix \\| \\<script\\>" in md
    html = history_html(report)
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert external_references(html) == []


def test_a_graded_step_is_held_by_the_sign_test_and_says_so() -> None:
    # Four partial-credit gains in 100 examples: the interval alone called the step improved.
    revisions = [
        score_revision(_commit(1), "a", [0.0] * 100, seed=0),
        score_revision(_commit(2), "b", [0.5] * 4 + [0.0] * 96, seed=0),
    ]
    report = build_history(PROVENANCE, revisions)
    step = report.to_json()["steps"][0]
    assert step["mcnemar"] is None
    assert step["sign_test"] == {"worse": 0, "better": 4, "p_value": 0.125}
    assert step["verdict"] == "no significant change"
    md = history_markdown(report)
    assert "exact sign test p = 0.125 on 0 lower and 4 higher scores" in md
    assert "| p | verdict |" in md and "McNemar p" not in md
