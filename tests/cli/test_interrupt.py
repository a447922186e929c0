"""Ctrl-C on a real `promptopt run` process: it saves a resumable folder and exits 130."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import yaml

from tests.support import REPO
from tests.support.search import write_task

SCRIPT = """
import time
from tests.support.search import optimizer_answer, target_answer


def target(request):
    time.sleep(0.02)
    return target_answer(request)


def optimizer(request):
    return optimizer_answer(request)
"""


def test_sigint_saves_the_run_and_resume_finishes_it(tmp_path: Path) -> None:
    (tmp_path / "script.py").write_text(SCRIPT)
    task = write_task(tmp_path)
    spec = yaml.safe_load(task.read_text())
    spec["models"]["target"]["model"] = "scripted:script.py:target"
    spec["models"]["optimizer"]["model"] = "scripted:script.py:optimizer"
    task.write_text(yaml.safe_dump(spec))
    root = REPO
    env = {**os.environ, "PROMPTOPT_CACHE_DIR": str(tmp_path / "cache"), "PYTHONPATH": str(root)}
    cmd = [sys.executable, "-m", "promptopt", "run", str(task), "--out", str(tmp_path / "r")]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not list((tmp_path / "r").glob("*/events.jsonl")):
        time.sleep(0.05)
    time.sleep(0.3)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "--resume" in err and "Traceback" not in err
    (run_dir,) = (tmp_path / "r").iterdir()
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "interrupted"

    resumed = subprocess.run(
        [sys.executable, "-m", "promptopt", "run", "--resume", str(run_dir), "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert resumed.returncode == 0, resumed.stderr
    final = json.loads(resumed.stdout)
    assert final["status"] == "finished" and final["scores"]["best"]["test"] == 1.0
