"""One data example."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Example:
    """A data row: its id, all of its fields, and every acceptable target.

    `targets` holds at least one string, an output that matches any of them being correct;
    it is empty only in a task without a metric, whose search compares answers instead.
    """

    id: str
    fields: Mapping[str, Any]
    targets: tuple[str, ...]
    line: int | None = field(default=None, compare=False)

    @property
    def target(self) -> str:
        """The first (canonical) target ("" when the example has none)."""
        return self.targets[0] if self.targets else ""
