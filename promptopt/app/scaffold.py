"""`promptopt init`: a small task that works as written, to copy and edit into one's own.

It is a two-label classification with its data beside it, a metric, and a budget small enough
for the embedded local models on a laptop; it names no models, so a run uses the default ones
(an API key's provider, else the local models) until the user sets them.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from promptopt.errors import UsageError
from promptopt.task.reference import json_schema_text
from promptopt.util.files import write_atomic

TASK_FILE = "task.yaml"
SCHEMA_FILE = "task-file.schema.json"

TASK_YAML = f"""\
# yaml-language-server: $schema={SCHEMA_FILE}
# A task written by `promptopt init`: edit the prompt, the data and the metric into your own.
# Every field is described in docs/task-file.md of promptopt (and, in an editor with the YAML
# language server, by the schema named on the first line).
#
#   promptopt validate task.yaml          # check it, calling no model
#   promptopt run task.yaml --dry-run     # the most calls and dollars a run can spend
#   promptopt run task.yaml               # optimize the prompt; writes runs/<name>-<time>/
name: review-sentiment
description: Say whether a short product review is positive or negative.

# The system message the search starts from and improves.
prompt: Read the review and classify it.

# Each line of these files is one example: the `input` the model sees and its `target` answer.
data:
  train: data/train.jsonl   # the search learns from these
  dev: data/dev.jsonl       # the best prompt is chosen on these
  test: data/test.jsonl     # held out: initial and best prompt are compared on these at the end

# The answer must be one of the labels (case and surrounding words are forgiven).
metric:
  type: label
  labels: [positive, negative]

# No models named: with OPENAI_API_KEY or ANTHROPIC_API_KEY set, that provider's default models
# answer and write prompts; without, promptopt's embedded local models do (pip install
# 'promptopt-cli[local]'). Name them to choose:
# models:
#   target: {{model: openai:gpt-4o-mini, temperature: 0}}
#   optimizer: {{model: openai:gpt-4o}}

search:
  strategy: ape
  seed: 0
  # Small, so that a first run takes minutes: raise these for a real task.
  params: {{num_subsamples: 2, proposals_per_subsample: 2, num_demos: 4, selection_budget: 32,
           batch: 4, top_k: 2, resample_rounds: 1, variations: 1}}
  budget: {{target_calls: 160, optimizer_calls: 12}}
"""

_TRAIN = [
    ("Arrived quickly and works exactly as described.", "positive"),
    ("The handle snapped off after two days.", "negative"),
    ("Comfortable, warm and well made. I bought a second one.", "positive"),
    ("Smells of plastic and the colour is nothing like the photo.", "negative"),
    ("Battery lasts all week; very happy with it.", "positive"),
    ("Customer service never answered my emails.", "negative"),
    ("Simple to set up, even for my grandmother.", "positive"),
    ("It stopped charging within a month.", "negative"),
    ("Great value for the price, would recommend.", "positive"),
    ("Too small, badly stitched, and returning it was a hassle.", "negative"),
    ("The sound is crisp and the bass is surprisingly deep.", "positive"),
    ("Instructions were missing and two screws did not fit.", "negative"),
]
_DEV = [
    ("Does what it says and looks nice on the shelf.", "positive"),
    ("Broke the first time I dropped it.", "negative"),
    ("My kids love it and use it every day.", "positive"),
    ("Loud, slow and it overheats.", "negative"),
    ("Sturdy and light; perfect for hiking.", "positive"),
    ("The lid leaks, so my bag got soaked.", "negative"),
    ("Better than the expensive brand I had before.", "positive"),
    ("Waste of money.", "negative"),
]
_TEST = [
    ("Fits perfectly and the fabric feels soft.", "positive"),
    ("The app keeps crashing and will not pair.", "negative"),
    ("Delivered early, well packed, works great.", "positive"),
    ("Cheap material that tore on the first wash.", "negative"),
    ("Exactly what I needed for my desk.", "positive"),
    ("Arrived scratched and the seller ignored me.", "negative"),
    ("Keeps coffee hot for hours.", "positive"),
    ("The zip jammed on day one.", "negative"),
]


def _jsonl(rows: Sequence[tuple[str, str]], split: str) -> str:
    return "".join(
        json.dumps({"id": f"{split}-{i}", "input": text, "target": label}) + "\n"
        for i, (text, label) in enumerate(rows, start=1)
    )


def scaffold_files() -> dict[str, str]:
    """The files `promptopt init` writes, by path relative to its folder."""
    return {
        TASK_FILE: TASK_YAML,
        SCHEMA_FILE: json_schema_text(),
        "data/train.jsonl": _jsonl(_TRAIN, "train"),
        "data/dev.jsonl": _jsonl(_DEV, "dev"),
        "data/test.jsonl": _jsonl(_TEST, "test"),
    }


@dataclass(frozen=True)
class Scaffold:
    """What `write_scaffold` wrote."""

    folder: Path
    written: tuple[Path, ...]


def write_scaffold(folder: Path, *, force: bool = False) -> Scaffold:
    """Write the starter task into `folder` (created if missing).

    Raises UsageError, writing nothing, when any of its files exists and `force` is false.
    """
    files = scaffold_files()
    targets = {folder / name: text for name, text in files.items()}
    if folder.exists() and not folder.is_dir():
        raise UsageError(f"DIR: {folder} exists and is not a folder")
    existing = [path for path in targets if path.exists()]
    if existing and not force:
        listed = ", ".join(str(path) for path in existing)
        raise UsageError(
            f"{listed} already exist(s); nothing was written. Choose another folder "
            "(promptopt init DIR) or overwrite with --force"
        )
    written: list[Path] = []
    for path, text in targets.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, text)
        written.append(path)
    return Scaffold(folder, tuple(written))
