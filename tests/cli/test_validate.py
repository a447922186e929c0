"""validate, run --dry-run and run refuse the same problems, before any model or folder."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from promptopt.cli.main import EXIT_USAGE, app
from tests.app.test_checks import write

runner = CliRunner()

CASES = [
    ({"strategy: ape": "strategy: apex"}, [], ":14: search.strategy: unknown strategy 'apex'"),
    ({"{num_demos: 3}": "{num_demo: 3}"}, [], ":15: search.params.num_demo: ape has no"),
    ({}, ["--strategy", "protegi"], ":15: search.params: --strategy protegi replaces"),
    (
        {"{type: label, labels: [yes, no]}": "{type: regex, pattern: '(('}"},
        [],
        ":9: metric.pattern: '((' is not a valid regex",
    ),
    (
        {"{type: label, labels: [yes, no]}": "{type: python, function: 'm.py:score'}"},
        [],
        ":9: metric.function: file",
    ),
    ({"target: scripted:s.py:f": "target: foo:bar"}, [], ":11: models.target: unknown model"),
    (
        {"  strategy: ape": "  strategy: ape\n  budget: {target_calls: 10}"},
        [],
        ":15: search.budget.target_calls: 10 target calls leave nothing",
    ),
]


def flat(text: str) -> str:
    return " ".join(text.split())


@pytest.mark.parametrize(("edits", "flags", "message"), CASES)
def test_validate_dry_run_and_run_refuse_alike(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    edits: dict[str, str],
    flags: list[str],
    message: str,
) -> None:
    monkeypatch.setenv("PROMPTOPT_CACHE_DIR", str(tmp_path / "cache"))
    path = write(tmp_path, **edits)
    runs = tmp_path / "runs"
    commands = [
        ["run", str(path), "--dry-run", *flags],
        ["run", str(path), "--out", str(runs), *flags],
    ]
    if not flags:
        commands.insert(0, ["validate", str(path)])
    for args in commands:
        result = runner.invoke(app, args)
        assert result.exit_code == EXIT_USAGE, (args, result.output)
        assert f"{path}{message}" in flat(result.output), (args, result.output)
        assert "1 problem(s) found" in result.output and "Traceback" not in result.output
    assert not runs.exists()


def test_validate_accepts_a_good_task(tmp_path: Path) -> None:
    result = runner.invoke(app, ["validate", str(write(tmp_path))])
    assert result.exit_code == 0 and "ok (dev 2, test 1)" in result.output


LAUGHS = 'a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]\n' + "".join(
    f"{name}: &{name} [{', '.join([f'*{prev}'] * 9)}]\n"
    for prev, name in zip("abcdefgh", "bcdefghi", strict=True)
)


@pytest.mark.parametrize(
    ("edits", "message"),
    [
        ({"name: t\n": "name: t\n" + LAUGHS}, ":7: invalid YAML: aliases repeat more than"),
        (
            {"name: t\n": "name: t\nx: " + "[" * 50_000 + "]" * 50_000 + "\n"},
            ":2: invalid YAML: lists and mappings nest more than 100 levels deep",
        ),
    ],
    ids=["alias-bomb", "deep-nesting"],
)
def test_hostile_yaml_is_one_located_sentence_everywhere(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, edits: dict[str, str], message: str
) -> None:
    monkeypatch.setenv("PROMPTOPT_CACHE_DIR", str(tmp_path / "cache"))
    path = write(tmp_path, **edits)
    for args in (["validate"], ["eval"], ["run", "--dry-run"]):
        result = runner.invoke(app, [args[0], str(path), *args[1:]])
        assert result.exit_code == EXIT_USAGE, (args, result.output)
        assert f"{path}{message}" in flat(result.output), (args, result.output)
        assert "Traceback" not in result.output
