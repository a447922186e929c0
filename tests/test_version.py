"""The distribution name: what users pip-install, used everywhere an install is suggested."""

from __future__ import annotations

import re
import tomllib

from promptopt.llm.local_models import INSTALL_COMMAND
from promptopt.version import DISTRIBUTION, __version__
from tests.support import REPO

INSTALL_TEXTS = [
    REPO / "README.md",
    *sorted((REPO / "examples" / "github-actions").glob("*.yml")),
    *sorted((REPO / "scripts").glob("*.sh")),
    REPO / ".ci" / "run",
]


def test_pyproject_names_the_distribution_and_keeps_the_command() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert project["name"] == DISTRIBUTION == "promptopt-cli"
    assert project["scripts"] == {"promptopt": "promptopt.cli.entry:main"}


def test_the_missing_extra_hint_installs_the_distribution() -> None:
    assert INSTALL_COMMAND == "pip install 'promptopt-cli[local]'"


def test_no_install_line_names_the_other_project() -> None:
    for path in INSTALL_TEXTS:
        text = path.read_text(encoding="utf-8")
        for line in text.splitlines():
            if line.lstrip().startswith("#") or "unrelated" in line:
                continue  # comments, and the warning not to install the other project
            assert not re.search(r"pip install\s+['\"]?promptopt(?![-\w])", line), (path, line)
        assert "'promptopt[" not in text, path


def test_workflows_pin_the_current_version() -> None:
    for path in sorted((REPO / "examples" / "github-actions").glob("*.yml")):
        assert f"pip install '{DISTRIBUTION}=={__version__}'" in path.read_text(), path
