"""`.env` loading: ./.env by default, --env-file, never over a variable already set."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from promptopt.cli.envfile import load_env_file
from promptopt.cli.main import EXIT_USAGE, app
from tests.support.search import write_task

runner = CliRunner()


@pytest.fixture(autouse=True)
def environ(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The CLI writes os.environ itself: restore it after each test, and work in tmp_path."""
    saved = dict(os.environ)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PROMPTOPT_CACHE_DIR", str(tmp_path / "cache"))
    yield
    os.environ.clear()
    os.environ.update(saved)


@pytest.fixture
def task(tmp_path: Path) -> Path:
    (tmp_path / "script.py").write_text("def target(request):\n    return 'positive'\n")
    path = write_task(tmp_path)
    spec = yaml.safe_load(path.read_text())
    for role in ("target", "optimizer"):
        spec["models"][role]["model"] = "scripted:script.py:target"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def test_dot_env_in_the_current_folder_sets_option_variables(tmp_path: Path, task: Path) -> None:
    (tmp_path / ".env").write_text(
        "# settings\nPROMPTOPT_EVAL_JSON=1\nexport PROMPTOPT_EVAL_LIMIT=3\n"
    )
    result = runner.invoke(app, ["eval", str(task)])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["n"] == 3


def test_env_file_names_another_file(tmp_path: Path, task: Path) -> None:
    (tmp_path / "ci.env").write_text('PROMPTOPT_EVAL_LIMIT="2"\nPROMPTOPT_EVAL_JSON=true\n')
    (tmp_path / ".env").write_text("PROMPTOPT_EVAL_LIMIT=5\n")
    result = runner.invoke(app, ["--env-file", "ci.env", "eval", str(task)])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["n"] == 2


def test_a_variable_already_set_wins_over_the_file(
    tmp_path: Path, task: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PROMPTOPT_EVAL_LIMIT", "4")
    (tmp_path / ".env").write_text("PROMPTOPT_EVAL_LIMIT=1\nPROMPTOPT_EVAL_JSON=1\n")
    result = runner.invoke(app, ["eval", str(task)])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["n"] == 4
    assert os.environ["PROMPTOPT_EVAL_LIMIT"] == "4"


def test_a_missing_env_file_is_a_usage_error_naming_the_flag(task: Path) -> None:
    result = runner.invoke(app, ["--env-file", "nope.env", "validate", str(task)])
    assert result.exit_code == EXIT_USAGE
    assert "--env-file: nope.env does not exist" in " ".join(result.output.split())
    assert "Traceback" not in result.output


def test_a_folder_as_env_file_is_a_usage_error(tmp_path: Path, task: Path) -> None:
    (tmp_path / "envs").mkdir()
    result = runner.invoke(app, ["--env-file", "envs", "validate", str(task)])
    assert result.exit_code == EXIT_USAGE and "--env-file" in result.output


def test_a_bad_line_is_named_and_the_rest_is_read(tmp_path: Path, task: Path) -> None:
    (tmp_path / ".env").write_text(
        "PROMPTOPT_EVAL_JSON=1\nnot a statement\nPROMPTOPT_EVAL_LIMIT=2\n"
    )
    result = runner.invoke(app, ["eval", str(task)])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["n"] == 2
    assert ".env:2: not NAME=value" in result.stderr


def test_no_dot_env_reads_nothing(tmp_path: Path) -> None:
    environ: dict[str, str] = {}
    result = load_env_file(None, environ, cwd=tmp_path)
    assert result.path is None and environ == {}


def test_keys_are_loaded_but_never_named_with_their_values(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text(
        "OPENAI_API_KEY=sk-secret\nEMPTY=\nBARE\nURL=${HOST}/v1\nHOST=h\n"
    )
    environ = {"HOST": "localhost"}
    result = load_env_file(None, environ, cwd=tmp_path)
    assert environ["OPENAI_API_KEY"] == "sk-secret" and environ["EMPTY"] == ""
    assert "BARE" not in environ and environ["HOST"] == "localhost"
    assert set(result.loaded) == {"OPENAI_API_KEY", "EMPTY", "URL"}
