"""`promptopt strategies`: the search strategies and their parameters."""

from __future__ import annotations

import json
import sys

from promptopt.cli.common import JsonOpt, stdout


def strategies_command(as_json: JsonOpt = False) -> None:
    """List the search strategies and their parameters."""
    from promptopt.search.strategies.registry import STRATEGIES

    if as_json:
        listing = [
            {
                "name": name,
                "summary": info.summary,
                "params": [
                    {
                        "name": field_name,
                        "default": field.default,
                        "description": field.description or "",
                    }
                    for field_name, field in info.params.model_fields.items()
                ],
                "presets": {k: dict(v) for k, v in info.presets.items()},
            }
            for name, info in sorted(STRATEGIES.items())
        ]
        sys.stdout.write(json.dumps(listing, default=str) + "\n")
        return
    from rich.markup import escape

    out = stdout()
    for name, info in sorted(STRATEGIES.items()):
        out.print(f"[bold]{name}[/]: {escape(info.summary)}", markup=True)
        for field_name, field in info.params.model_fields.items():
            out.print(
                f"  {field_name} = {field.default!r}  {field.description or ''}", highlight=False
            )
        if info.presets:
            out.print(f"  presets: {', '.join(sorted(info.presets))}", highlight=False)
