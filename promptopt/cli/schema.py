"""`promptopt schema`: the task file's JSON Schema, for editors and other tools."""

from __future__ import annotations

import sys


def schema_command() -> None:
    """Print the JSON Schema of a task file.

    Save it and point your editor at it, for example with the first line
    `# yaml-language-server: $schema=task-file.schema.json` in a task file (VS Code's YAML
    extension, or any editor using yaml-language-server).
    """
    from promptopt.task.reference import json_schema_text

    sys.stdout.write(json_schema_text())
