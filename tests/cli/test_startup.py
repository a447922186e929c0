"""The command line starts without loading what only some commands need."""

from __future__ import annotations

import subprocess
import sys

from tests.support import REPO

# Each costs from a tenth of a second to a second to import; none is needed to parse a
# command line, print --version or --help.
HEAVY = ("openai", "anthropic", "llama_cpp", "numpy", "jinja2", "httpx2", "genai_prices")


def loaded_after(code: str) -> list[str]:
    probe = f"import sys\n{code}\nprint(' '.join(m for m in {HEAVY!r} if m in sys.modules))"
    done = subprocess.run(
        [sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, check=True
    )
    return done.stdout.split()


def test_building_the_cli_loads_no_heavy_module() -> None:
    assert loaded_after("import promptopt.cli.main") == []


def test_version_and_help_load_no_heavy_module() -> None:
    for args in (["--version"], ["--help"], ["run", "--help"], ["history", "--help"]):
        code = (
            "from typer.testing import CliRunner\n"
            "from promptopt.cli.main import app\n"
            f"result = CliRunner().invoke(app, {args!r})\n"
            "assert result.exit_code == 0, result.output"
        )
        assert loaded_after(code) == [], args
