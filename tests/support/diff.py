"""A task, scripted models and finished run folders for diff, report and CI-mode tests.

On the test split (tests.support.search.rows(20, 200): positive reviews at even positions):
- OLD_PROMPT makes the target always say "positive": 10 of 20 right;
- NEW_PROMPT ("careful") makes it right everywhere except the two reviews with "great":
  against OLD that is 2 regressions (r200, r210) and 10 improvements (every negative review);
- BEST_PROMPT ("label only") makes it right everywhere.
"""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import yaml
from typer.testing import CliRunner

from promptopt.cli.main import app
from tests.support.search import write_task

OLD_PROMPT = "Classify the review."
NEW_PROMPT = "Classify the review carefully as positive or negative."
BEST_PROMPT = "Classify the review. Answer with the label only."
REGRESSED_IDS = ("r200", "r210")

SCRIPT = """
from pathlib import Path

from promptopt.errors import FatalProviderError
from tests.support.search import WORDS_GOOD, optimizer_answer, target_answer


def target(request):
    system = request.messages[0]["content"].lower()
    review = request.messages[-1]["content"]
    if "carefully" in system:
        if "great" in review:
            return "negative"
        return "positive" if any(w in review for w in WORDS_GOOD) else "negative"
    return target_answer(request)


def counted(request):
    # One line per call in calls.log next to this script: tests count what was sent.
    with open(Path(__file__).with_name("calls.log"), "a") as log:
        print("call", file=log)
    return target(request)


def optimizer(request):
    return optimizer_answer(request)


def unauthorized(request):
    raise FatalProviderError("401 Unauthorized: set OPENAI_API_KEY to a valid key")
"""


def make_task(folder: Path, *, target: str = "target") -> Path:
    """A toy sentiment task whose models are this module's scripts; priced so costs show."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "script.py").write_text(SCRIPT)
    path = write_task(folder)
    spec: dict[str, Any] = yaml.safe_load(path.read_text())
    spec["prompt"] = OLD_PROMPT
    spec["models"]["target"]["model"] = f"scripted:script.py:{target}"
    spec["models"]["target"]["price"] = {"input": 1.0, "output": 2.0}
    spec["models"]["optimizer"]["model"] = "scripted:script.py:optimizer"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def run_cli(*args: str, env: dict[str, str] | None = None) -> Any:
    """Invoke the CLI in-process."""
    return CliRunner().invoke(app, list(args), env=env)


def make_run(task: Path, out: Path, cache: Path, *extra: str) -> Path:
    """A finished run folder of `task`."""
    result = run_cli(
        "run", str(task), "--out", str(out), "--cache-dir", str(cache), "--json", *extra
    )
    assert result.exit_code == 0, result.output
    return Path(json.loads(result.stdout)["run_dir"])


_URL_ATTRS = {"src", "href", "xlink:href", "action", "poster", "data", "srcset", "background"}
_REMOTE = re.compile(r"^\s*(?:[a-z][a-z0-9+.-]*:)?//", re.I)
_CSS_REMOTE = re.compile(r"@import|url\(\s*['\"]?\s*(?:[a-z][a-z0-9+.-]*:)?//", re.I)


class _References(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.found: list[str] = []
        self._in_style = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("script", "link", "iframe", "object", "embed", "img", "video", "audio"):
            self.found.append(f"<{tag}>")
        self._in_style = tag == "style"
        for name, value in attrs:
            if value is None:
                continue
            if name in _URL_ATTRS and _REMOTE.search(value):
                self.found.append(f"{name}={value}")
            if name == "style" and _CSS_REMOTE.search(value):
                self.found.append(f"style={value}")

    def handle_endtag(self, tag: str) -> None:
        self._in_style = False

    def handle_data(self, data: str) -> None:
        if self._in_style and _CSS_REMOTE.search(data):
            self.found.append("style sheet: " + data[:80])


def external_references(html: str) -> list[str]:
    """Everything in an HTML page that would load something from elsewhere or run code: remote
    src/href attributes, @import or url(//...) in CSS, scripts, frames, images, links."""
    parser = _References()
    parser.feed(html)
    parser.close()
    return parser.found
