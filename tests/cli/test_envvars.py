"""Options read documented environment variables; --version reads none."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer.main
import yaml
from typer.core import TyperOption
from typer.testing import CliRunner

from promptopt.cli.envvars import SHARED_OPTIONS, commands, option_envvar
from promptopt.cli.main import EXIT_USAGE, app
from tests.support import REPO
from tests.support.search import write_task

runner = CliRunner()
ROOT = typer.main.get_command(app)


def every_option() -> list[tuple[tuple[str, ...], TyperOption]]:
    return [
        (path, param)
        for path, command in commands(ROOT)
        for param in command.params
        if isinstance(param, TyperOption)
    ]


def test_every_option_reads_promptopt_command_option() -> None:
    options = every_option()
    assert len(options) > 40
    for path, param in options:
        long_name = max((o for o in param.opts if o.startswith("--")), key=len)
        words = () if long_name in SHARED_OPTIONS else path
        expected = "_".join(("PROMPTOPT", *words, long_name[2:])).upper().replace("-", "_")
        assert param.envvar == expected == option_envvar(path, long_name), (path, param.opts)


def test_the_readme_names_the_rule_and_the_shared_options() -> None:
    readme = " ".join((REPO / "README.md").read_text().split())
    assert "PROMPTOPT_<COMMAND>_<OPTION>" in readme
    for name in SHARED_OPTIONS:
        assert option_envvar(("run",), name) in readme
    names = {param.envvar for _, param in every_option()}
    for example in ("PROMPTOPT_RUN_BUDGET", "PROMPTOPT_EVAL_JSON", "PROMPTOPT_RUN_BASELINE"):
        assert example in names and example in readme


def test_root_options_read_no_environment_variable() -> None:
    assert all(not getattr(p, "envvar", None) for p in ROOT.params)


@pytest.fixture
def task(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("PROMPTOPT_CACHE_DIR", str(tmp_path / "cache"))
    (tmp_path / "script.py").write_text("def target(request):\n    return 'positive'\n")
    path = write_task(tmp_path)
    spec = yaml.safe_load(path.read_text())
    spec["models"]["target"]["model"] = "scripted:script.py:target"
    spec["models"]["optimizer"]["model"] = "scripted:script.py:target"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


@pytest.mark.parametrize("value", ["1", "0.1.0", "true"])
def test_promptopt_version_in_the_environment_changes_nothing(
    task: Path, monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("PROMPTOPT_VERSION", value)
    result = runner.invoke(app, ["run", str(task), "--dry-run", "--json"])
    assert result.exit_code == 0, result.output
    assert "target_calls" in json.loads(result.stdout)
    assert runner.invoke(app, ["validate", str(task)]).exit_code == 0


def test_eval_json_comes_from_promptopt_eval_json(
    task: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PROMPTOPT_EVAL_JSON", "1")
    monkeypatch.setenv("PROMPTOPT_EVAL_LIMIT", "3")
    result = runner.invoke(app, ["eval", str(task)])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["n"] == 3


def test_ci_options_are_named_after_run(
    task: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    missing = tmp_path / "no-such-prompt.txt"
    monkeypatch.setenv("PROMPTOPT_RUN_BASELINE", str(missing))
    result = runner.invoke(app, ["run", str(task), "--dry-run"])
    assert result.exit_code == EXIT_USAGE
    assert str(missing) in " ".join(result.output.split())


@pytest.mark.parametrize(
    ("variable", "value"),
    [("PROMPTOPT_RUN_BUDGET", "abc"), ("PROMPTOPT_RUN_BUDGET", "0"), ("PROMPTOPT_SEED", "x")],
)
def test_a_bad_value_from_the_environment_names_the_variable(
    task: Path, monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    monkeypatch.setenv(variable, value)
    result = runner.invoke(app, ["run", str(task), "--dry-run"])
    assert result.exit_code == EXIT_USAGE
    assert f"environment variable {variable}" in result.output
    assert "'--budget'" not in result.output and "'--seed'" not in result.output


def test_a_bad_value_on_the_command_line_names_the_flag(task: Path) -> None:
    result = runner.invoke(app, ["run", str(task), "--dry-run", "--budget", "abc"])
    assert result.exit_code == EXIT_USAGE and "--budget" in result.output
