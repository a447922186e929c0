"""`promptopt cache stats|clear`: inspect or empty the response cache."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from promptopt.cli.common import CacheDirOpt, JsonOpt, fail_on, stdout
from promptopt.errors import PromptoptError

if TYPE_CHECKING:
    from promptopt.llm.cache import ResponseCache

cache_app = typer.Typer(help="Inspect or clear the response cache.", no_args_is_help=True)


def _open_cache(cache_dir: Path | None) -> ResponseCache:
    from promptopt.llm.cache import ResponseCache, default_cache_dir

    try:
        return ResponseCache(cache_dir or default_cache_dir())
    except PromptoptError as exc:
        fail_on(exc)


@cache_app.command("stats")
def cache_stats(cache_dir: CacheDirOpt = None, as_json: JsonOpt = False) -> None:
    """Show where the cache is, how many responses it holds and its size."""
    cache = _open_cache(cache_dir)
    try:
        stats = cache.stats()
    finally:
        cache.close()
    payload: dict[str, Any] = {
        "directory": stats.directory,
        "entries": stats.entries,
        "size_bytes": stats.size_bytes,
    }
    if as_json:
        sys.stdout.write(json.dumps(payload) + "\n")
    else:
        stdout().print(
            f"{stats.directory}: {stats.entries} responses, {stats.size_bytes / 1e6:.1f} MB",
            highlight=False,
        )


@cache_app.command("clear")
def cache_clear(cache_dir: CacheDirOpt = None) -> None:
    """Remove every cached response."""
    cache = _open_cache(cache_dir)
    try:
        removed = cache.clear()
    finally:
        cache.close()
    stdout().print(f"removed {removed} responses from {cache.directory}", highlight=False)
