"""Every command's --help shows its options' help texts whole, defaults included."""

from __future__ import annotations

import re

import pytest
import typer.main
from typer.core import TyperOption
from typer.testing import CliRunner

from promptopt.cli.envvars import commands
from promptopt.cli.main import app

runner = CliRunner()
ROOT = typer.main.get_command(app)
LEAVES = [(path, cmd) for path, cmd in commands(ROOT) if not getattr(cmd, "commands", None)]


def flat(text: str) -> str:
    return " ".join(text.split())


@pytest.mark.parametrize(("path", "command"), LEAVES, ids=[" ".join(p) for p, _ in LEAVES])
def test_help_keeps_bracketed_text_and_defaults(path: tuple[str, ...], command: object) -> None:
    result = runner.invoke(app, [*path, "--help"])
    assert result.exit_code == 0, result.output
    shown = flat(result.output)
    for param in command.params:  # type: ignore[attr-defined]
        if not isinstance(param, TyperOption):
            continue
        for bracketed in re.findall(r"\[[^\]]*\]", flat(param.help or "")):
            assert bracketed in shown, (path, param.opts, bracketed)
        default = param.default
        if param.show_default and default is not None and not isinstance(default, bool):
            assert f"default: {default}" in shown, (path, param.opts, default)
        assert f"env var: {param.envvar}" in shown, (path, param.opts)


def test_every_command_with_an_optional_default_says_it() -> None:
    help_texts = [flat(runner.invoke(app, [*p, "--help"]).output) for p, _ in LEAVES]
    assert sum("[default: the task's]" in text for text in help_texts) >= 2


def test_an_error_message_keeps_its_brackets(capsys: pytest.CaptureFixture[str]) -> None:
    from promptopt.cli.common import fail

    with pytest.raises(typer.Exit):
        fail("install it: pip install 'promptopt-cli[local]' ([/docs] too)", 1)
    assert "'promptopt-cli[local]' ([/docs] too)" in capsys.readouterr().err
