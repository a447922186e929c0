"""Shell completion: `promptopt completion SHELL` prints a script that completes commands and
options through `_PROMPTOPT_COMPLETE`."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from promptopt.cli.main import EXIT_USAGE, app
from tests.support import REPO

runner = CliRunner()


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_completion_prints_a_script_for_the_shell(shell: str) -> None:
    result = runner.invoke(app, ["completion", shell])
    assert result.exit_code == 0, result.output
    assert f"_PROMPTOPT_COMPLETE=complete_{shell}" in result.stdout
    assert result.stdout.endswith("\n")


def test_an_unknown_shell_is_a_usage_error() -> None:
    result = runner.invoke(app, ["completion", "tcsh"])
    assert result.exit_code == EXIT_USAGE
    assert "'tcsh' is not one of 'bash', 'zsh', 'fish'" in result.output


def complete(words: str, cword: int) -> list[str]:
    result = runner.invoke(
        app,
        [],
        env={"_PROMPTOPT_COMPLETE": "complete_bash", "COMP_WORDS": words, "COMP_CWORD": str(cword)},
        prog_name="promptopt",
    )
    assert result.exit_code == 0, result.output
    return result.stdout.split()


def test_completion_answers_commands_subcommands_and_options() -> None:
    assert complete("promptopt ru", 1) == ["run"]
    assert set(complete("promptopt cache ", 2)) == {"stats", "clear"}
    assert "--budget" in complete("promptopt run --bu", 2)
    assert "--split" in complete("promptopt eval --sp", 2)


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_the_bash_script_completes_in_bash(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    wrapper = bin_dir / "promptopt"
    wrapper.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m promptopt "$@"\n')
    wrapper.chmod(0o755)
    script = (
        'eval "$(promptopt completion bash)"\n'
        "COMP_WORDS=(promptopt run --max-st); COMP_CWORD=2\n"
        "_promptopt_completion promptopt\n"
        'printf "%s\\n" "${COMPREPLY[@]}"\n'
    )
    env = {
        **os.environ,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "PYTHONPATH": str(REPO),
    }
    done = subprocess.run(
        ["bash", "--norc", "-c", script], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["--max-steps"]
