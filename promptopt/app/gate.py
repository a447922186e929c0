"""The CI gate of `promptopt run --write-if-better`: replace a prompt only when the new one is
proven better on held-out data."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from promptopt.errors import PromptoptError, UsageError
from promptopt.reporting.markdown import ci_summary_markdown
from promptopt.run.folder import BEST_DEMOS, RunFolder
from promptopt.run.records import SummaryRecord
from promptopt.util.files import write_atomic


@dataclass(frozen=True)
class GateDecision:
    """Whether a run's best prompt earned its place, and why."""

    passed: bool
    reason: str
    delta: float | None = None
    ci95: tuple[float, float] | None = None


def ci_gate(
    summary: SummaryRecord, min_improvement: float = 0.0, *, writes_demos: bool = False
) -> GateDecision:
    """Pass only when the held-out test comparison says "improved" and the lower end of the
    paired 95% interval of best - initial is above `min_improvement`. A task without a metric
    passes on its judged win rate instead (its interval's lower end above 0.5 plus
    `min_improvement`). A best prompt sent with few-shot demonstrations passes only when they
    are written too (`writes_demos`, `--demos-file`): a prompt file cannot hold them.

    Raises UsageError when the run has no test comparison (it ran out of budget before the
    final evaluation), and PromptoptError when requests or the metric failed on test examples:
    then nothing was proven either way, and "no significant gain" would be a false all-clear.
    """
    if summary.test_errors:
        raise PromptoptError(
            f"{summary.test_errors} example(s) of the final test evaluation failed and were "
            "scored 0, so errors, not the prompts, may have decided the comparison; see "
            f"{summary.run_dir}/final_eval.json, fix the endpoint or the metric, and run again"
        )
    comparison = summary.test_comparison
    if comparison is None and (summary.test_preference or summary.dev_preference):
        return _preference_gate(summary, min_improvement)
    if comparison is None:
        raise UsageError(
            "the run has no held-out test comparison (it stopped before the final evaluation); "
            "raise the budget"
        )
    delta = comparison.delta
    lo, hi = comparison.ci95
    if summary.best_demos and not writes_demos:
        # A prompt file holds the system prompt only: writing it without the demonstrations
        # would ship a prompt whose measured gain came from something left behind.
        reason = (
            f"the best prompt scores with {len(summary.best_demos)} few-shot demonstration(s) "
            "(best_demos.json) that a prompt file cannot hold; add --demos-file PATH to write "
            "them too, or set prompt.demos.k to 0 for CI mode"
        )
        return GateDecision(False, reason, delta, (lo, hi))
    same_demos = (summary.best_demos or []) == (summary.initial_demos or [])
    if summary.best_prompt == summary.initial_prompt and same_demos:
        reason = "the search found no prompt better than the baseline on dev"
        return GateDecision(False, reason, delta, (lo, hi))
    if comparison.verdict != "improved":
        reason = f"the test comparison says {comparison.verdict}"
        return GateDecision(False, reason, delta, (lo, hi))
    if not lo > min_improvement:
        reason = (
            f"the 95% CI lower bound {lo:+.3f} is not above --min-improvement {min_improvement}"
        )
        return GateDecision(False, reason, delta, (lo, hi))
    reason = f"improved by {delta:+.3f} (95% CI [{lo:+.3f}, {hi:+.3f}])"
    return GateDecision(True, reason, delta, (lo, hi))


def _preference_gate(summary: SummaryRecord, min_improvement: float) -> GateDecision:
    """The gate of a task without a metric: pass only when the judged win rate of best over
    initial on test says "improved" and its interval's lower end is above 0.5 by more than
    `min_improvement`."""
    judged = summary.test_preference
    if judged is None or summary.best_prompt == summary.initial_prompt:
        return GateDecision(False, "the judge preferred no prompt to the baseline on dev")
    lo, hi = judged.ci95
    margin = judged.win_rate - 0.5
    interval = (lo - 0.5, hi - 0.5)
    rate = f"win rate {judged.win_rate:.2f} (95% CI [{lo:.2f}, {hi:.2f}], sign test p = "
    rate += f"{judged.sign_p:.3g})"
    if judged.verdict != "improved":
        return GateDecision(False, f"the judged {rate} says {judged.verdict}", margin, interval)
    if not lo - 0.5 > min_improvement:
        reason = (
            f"the {rate}: its lower bound is not above 0.5 + --min-improvement {min_improvement}"
        )
        return GateDecision(False, reason, margin, interval)
    return GateDecision(True, f"preferred by the judge: {rate}", margin, interval)


def _write_demos(run_dir: Path, path: Path) -> str | None:
    """Copy the run's best_demos.json to `path`; returns what the file held before (None: it
    did not exist), so that a failure to write the prompt file next can put it back."""
    demos = RunFolder(run_dir).read_json(BEST_DEMOS)
    if demos is None:
        raise PromptoptError(f"{run_dir} has no {BEST_DEMOS}; nothing was written")
    try:
        before = path.read_text(encoding="utf-8") if path.exists() else None
        write_atomic(path, json.dumps(demos, indent=2, ensure_ascii=False) + "\n")
    except OSError as exc:
        raise PromptoptError(f"--demos-file: cannot write {path}: {exc.strerror}") from exc
    return before


def _undo(path: Path, before: str | None) -> None:
    """Put back what `path` held before (remove it if it did not exist), as far as possible:
    the error that led here is the one to report."""
    with contextlib.suppress(OSError):
        if before is None:
            path.unlink()
        else:
            write_atomic(path, before)


@dataclass(frozen=True)
class CiOutcome:
    """What CI mode did after a run: the gate's decision and the files it wrote."""

    decision: GateDecision
    written_to: Path | None
    summary_markdown: str
    demos_written_to: Path | None = None


def finish_ci(
    summary: SummaryRecord,
    *,
    write_if_better: Path | None,
    min_improvement: float,
    demos_file: Path | None = None,
    summary_md: Path | None,
    env: Mapping[str, str],
) -> CiOutcome:
    """Apply the gate to a finished run: write the best prompt to `write_if_better` only when
    it passed, and its few-shot demonstrations (as best_demos.json holds them) to `demos_file`
    when the run has any to write; write the Markdown summary to `summary_md` and append it to
    the file named by GITHUB_STEP_SUMMARY in `env`. Raises UsageError naming the option whose
    file cannot be written."""
    decision = ci_gate(summary, min_improvement, writes_demos=demos_file is not None)
    if not decision.passed and summary.dev_errors:
        # Finalists scored 0 on failed dev examples may have lost to the baseline for that.
        raise PromptoptError(
            f"{summary.dev_errors} example(s) of the final dev evaluation failed and were "
            f"scored 0, so errors may have decided that {decision.reason}; see "
            f"{summary.run_dir}/final_eval.json, fix the endpoint or the metric, and run again"
        )
    written: Path | None = None
    demos_written: Path | None = None
    if decision.passed and write_if_better is not None:
        restore: str | None = None
        if demos_file is not None and summary.best_demos is not None:
            restore = _write_demos(Path(summary.run_dir), demos_file)
            demos_written = demos_file
        try:
            write_atomic(write_if_better, summary.best_prompt + "\n")
        except OSError as exc:
            if demos_written is not None:
                # The pair stays as it was: new demonstrations beside the old prompt would
                # be a prompt nobody scored.
                _undo(demos_written, restore)
            raise PromptoptError(
                f"--write-if-better: cannot write {write_if_better}: {exc.strerror}"
            ) from exc
        written = write_if_better
    text = ci_summary_markdown(
        RunFolder(Path(summary.run_dir)), decision.passed, decision.reason, written, demos_written
    )
    step_summary = env.get("GITHUB_STEP_SUMMARY")
    try:
        if summary_md is not None:
            summary_md.write_text(text, encoding="utf-8")
        if step_summary:
            with Path(step_summary).open("a", encoding="utf-8") as handle:
                handle.write(text)
    except OSError as exc:
        raise PromptoptError(f"--summary-md: cannot write the summary: {exc.strerror}") from exc
    return CiOutcome(decision, written, text, demos_written)
