"""Ctrl-C while the command line starts (importing, parsing, loading the task) is one line and
exit 130, never a KeyboardInterrupt traceback or a silent exit."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.app.test_checks import write
from tests.support import REPO

# Ctrl-C lands as a KeyboardInterrupt wherever the interpreter is; a finder that raises it when
# one module is first imported puts it at a chosen moment, every time.
PROBE = """
import sys

class Interrupt:
    def find_spec(self, name, path=None, target=None):
        if name == {module!r}:
            raise KeyboardInterrupt
        return None

sys.meta_path.insert(0, Interrupt())
sys.argv = ["promptopt", *{args!r}]
from promptopt.cli.entry import main
main()
"""


@pytest.mark.parametrize(
    "module",
    [
        "typer",  # importing the command line
        "promptopt.task.loader",  # the command loading the task
        "promptopt.app.run",  # the run command preparing
    ],
)
def test_ctrl_c_during_start_up_is_one_line_and_exit_130(tmp_path: Path, module: str) -> None:
    task = write(tmp_path)
    args = ["run", str(task), "--out", str(tmp_path / "runs")]
    done = subprocess.run(
        [sys.executable, "-c", PROBE.format(module=module, args=args)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 130, done.stderr
    assert done.stderr == "error: interrupted\n"
    assert not (tmp_path / "runs").exists()
