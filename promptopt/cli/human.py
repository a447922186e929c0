"""The terminal a person answers preference questions at (`run --human`)."""

from __future__ import annotations

import asyncio
import json
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.console import Console

    from promptopt.scoring.preference import HumanAsk
    from promptopt.scoring.scorer import ExampleResult
    from promptopt.task.example import Example

KEYS = ("1", "2", "=", "s", "q")
PROMPT = "Which answer is better? 1 / 2 / = (tie) / s (skip) / q (save and quit): "


def _shown_input(example: Example) -> str:
    value = example.fields.get("input")
    if isinstance(value, str):
        return value
    return json.dumps(dict(example.fields), ensure_ascii=False, indent=2, default=str)


def _ask_blocking(console: Console, example: Example, a: ExampleResult, b: ExampleResult) -> str:
    from rich.panel import Panel
    from rich.table import Table
    from rich.text import Text

    console.rule(f"example {example.id}")
    console.print(Panel(Text(_shown_input(example)), title="input", title_align="left"))
    table = Table(expand=True, show_lines=True)
    table.add_column("1", ratio=1)
    table.add_column("2", ratio=1)
    table.add_row(Text(a.output or "(empty)"), Text(b.output or "(empty)"))
    console.print(table)
    while True:
        console.print(PROMPT, end="", markup=False, highlight=False)
        line = sys.stdin.readline()
        if not line:
            # End of input: nothing more can be answered, so save and stop.
            return "q"
        key = line.strip().lower()
        if key in KEYS:
            return key
        console.print(f"{key!r} is not an answer.", markup=False, highlight=False)


def terminal_ask(console: Console) -> HumanAsk:
    """An `ask` callback that shows the input and both answers side by side on `console` and
    reads the person's key from standard input."""

    async def ask(example: Example, first: ExampleResult, second: ExampleResult) -> str:
        # Reading the terminal blocks; a thread keeps the event loop (and the requests in
        # flight) running meanwhile.
        return await asyncio.to_thread(_ask_blocking, console, example, first, second)

    return ask
