"""`run --human`: a person answers preference questions at a real terminal (a pseudo-terminal
here), quits, and resumes without being asked the same pair twice."""

from __future__ import annotations

import json
import os
import pty
import re
import select
import subprocess
import sys
import time
from pathlib import Path

import yaml

from promptopt.cli.human import PROMPT
from tests.support.search import write_task

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = """
import hashlib
import json

from tests.support.search import target_answer


def target(request):
    # Each prompt's answers differ in a tag: two identical answers would tie unasked.
    tag = hashlib.sha256(request.messages[0]["content"].encode()).hexdigest()[:4]
    return f"{target_answer(request)} ({tag})"


def optimizer(request):
    blob = json.dumps([dict(m) for m in request.messages]) + str(request.sample_index)
    digest = hashlib.sha256(blob.encode()).hexdigest()
    if int(digest[:2], 16) % 3 == 0:
        return f"<START>Say positive or negative, the label only ({digest[2:8]}).<END>"
    return f"<START>Describe how the review feels ({digest[2:8]}).<END>"
"""


class Terminal:
    """`promptopt` in a pseudo-terminal: read what it shows, type answers."""

    def __init__(self, args: list[str], cwd: Path) -> None:
        master, slave = pty.openpty()
        env = {
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "COLUMNS": "120",
            "PROMPTOPT_CACHE_DIR": str(cwd / "cache"),
        }
        env.pop("CI", None)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "promptopt", *args],
            stdin=slave,
            stdout=slave,
            stderr=slave,
            cwd=cwd,
            env=env,
        )
        os.close(slave)
        self.master = master
        self.screen = ""

    def read_until(self, wanted: str, timeout: float = 120.0) -> None:
        """Read output until `wanted` appears after what was read before, or the end."""
        start = len(self.screen)
        deadline = time.monotonic() + timeout
        while wanted not in self.screen[start:]:
            if time.monotonic() > deadline:
                raise AssertionError(f"{wanted!r} never came; the screen:\n{self.screen[-2000:]}")
            ready, _, _ = select.select([self.master], [], [], 0.5)
            if ready:
                try:
                    chunk = os.read(self.master, 65536)
                except OSError:  # the child closed the terminal
                    chunk = b""
                if not chunk:
                    if self.proc.poll() is not None:
                        raise AssertionError(f"exited before {wanted!r}:\n{self.screen[-2000:]}")
                    continue
                self.screen += chunk.decode(errors="replace")

    def type(self, text: str) -> None:
        os.write(self.master, text.encode())

    def finish(self, timeout: float = 120.0) -> int:
        """Drain the output until the process exits; its exit code."""
        deadline = time.monotonic() + timeout
        while self.proc.poll() is None and time.monotonic() < deadline:
            ready, _, _ = select.select([self.master], [], [], 0.2)
            if ready:
                try:
                    self.screen += os.read(self.master, 65536).decode(errors="replace")
                except OSError:
                    break
        code = self.proc.wait(timeout=10)
        os.close(self.master)
        return code


def human_task(tmp: Path) -> Path:
    (tmp / "script.py").write_text(SCRIPT)
    path = write_task(tmp)
    spec = yaml.safe_load(path.read_text())
    spec["models"]["target"]["model"] = "scripted:script.py:target"
    spec["models"]["optimizer"]["model"] = "scripted:script.py:optimizer"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


PARAMS = ["comparisons=6", "induced=3", "rephrased=3", "train_steps=20", "hidden=8"]


def test_a_person_answers_quits_and_resumes_without_a_pair_asked_twice(tmp_path: Path) -> None:
    task = human_task(tmp_path)
    args = ["run", str(task), "--strategy", "apohf", "--human", "--out", "runs"]
    for p in PARAMS:
        args += ["--param", p]
    first = Terminal(args, tmp_path)
    shown: list[str] = []
    for key in ["1", "2", "=", "q"]:
        first.read_until(PROMPT)
        shown.append(first.screen)
        first.type(key + "\n")
    assert first.finish() == 130
    assert "resume with" in first.screen
    assert "input" in first.screen and "example r" in first.screen
    found = re.search(r"run folder: (\S+)", first.screen)
    assert found is not None
    folder = tmp_path / found.group(1)
    records = [json.loads(x) for x in (folder / "preferences.jsonl").read_text().splitlines()]
    assert [r["choice"] for r in records] == ["first", "second", "tie"]
    assert {r["source"] for r in records} == {"human"}

    second = Terminal(["run", "--resume", str(folder), "--human"], tmp_path)
    for key in ["s", "1", "2"]:
        second.read_until(PROMPT)
        second.type(key + "\n")
    code = second.finish()
    assert code in (0, 3), second.screen[-2000:]
    # Three questions were answered before the quit; the resumed run asked only the other
    # three (the one quit on among them), and each answer is in the run folder once.
    assert second.screen.count(PROMPT) == 3
    records = [json.loads(x) for x in (folder / "preferences.jsonl").read_text().splitlines()]
    assert len(records) == 6 == len({r["key"] for r in records})
    assert [r["skipped"] for r in records] == [False, False, False, True, False, False]
    events = [json.loads(x) for x in (folder / "events.jsonl").read_text().splitlines()]
    comparisons = [e for e in events if e["event"] == "comparison"]
    assert len(comparisons) == 6 and {c["source"] for c in comparisons} == {"human"}


def test_human_needs_a_terminal_and_a_preference_strategy(tmp_path: Path) -> None:
    task = human_task(tmp_path)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PROMPTOPT_CACHE_DIR": str(tmp_path / "c")}
    not_a_tty = subprocess.run(
        [sys.executable, "-m", "promptopt", "run", str(task), "--strategy", "apohf", "--human"],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
    )
    assert not_a_tty.returncode == 2
    assert "--human needs a terminal" in not_a_tty.stderr
    assert not (tmp_path / "runs").exists()
    wrong = subprocess.run(
        [sys.executable, "-m", "promptopt", "run", str(task), "--strategy", "opro", "--human"],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
    )
    assert wrong.returncode == 2 and "does not ask for preferences" in wrong.stderr
