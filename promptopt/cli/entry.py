"""The `promptopt` command's entry point: Ctrl-C at any moment, even while the command line is
still being imported or parsed, ends in one line and exit 130, never a traceback."""

from __future__ import annotations

import sys

INTERRUPTED = "error: interrupted\n"


def main() -> None:
    """Run the command line."""
    try:
        from promptopt.cli.main import main as run_cli

        run_cli()
    except KeyboardInterrupt:
        sys.stderr.write(INTERRUPTED)
        raise SystemExit(130) from None
    except SystemExit as exc:
        # Typer turns a KeyboardInterrupt it catches into a silent exit 130 (raised from the
        # interrupt); the command's own interrupt messages exit 130 without that cause.
        converted = exc.__context__
        if exc.code == 130 and isinstance(getattr(converted, "__cause__", None), KeyboardInterrupt):
            sys.stderr.write(INTERRUPTED)
        raise
