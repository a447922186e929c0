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


def _cache_path(cache_dir: Path | None) -> Path:
    from promptopt.llm.cache import default_cache_dir

    return cache_dir or default_cache_dir()


def _open_cache(directory: Path) -> ResponseCache:
    from promptopt.llm.cache import ResponseCache

    try:
        return ResponseCache(directory, create=False)
    except PromptoptError as exc:
        fail_on(exc)


@cache_app.command("stats")
def cache_stats(cache_dir: CacheDirOpt = None, as_json: JsonOpt = False) -> None:
    """Show where the cache is, how many responses it holds and its size."""
    directory = _cache_path(cache_dir)
    if directory.exists():
        cache = _open_cache(directory)
        try:
            stats = cache.stats()
        finally:
            cache.close()
        payload: dict[str, Any] = {
            "directory": stats.directory,
            "entries": stats.entries,
            "size_bytes": stats.size_bytes,
        }
    else:
        # Looking must not create: a mistyped --cache-dir would leave an empty folder behind.
        payload = {"directory": str(directory), "entries": 0, "size_bytes": 0}
    if as_json:
        sys.stdout.write(json.dumps(payload) + "\n")
    elif not directory.exists():
        stdout().print(f"{directory}: no cache there (0 responses)", highlight=False)
    else:
        stdout().print(
            f"{payload['directory']}: {payload['entries']} responses, "
            f"{payload['size_bytes'] / 1e6:.1f} MB",
            highlight=False,
        )


@cache_app.command("clear")
def cache_clear(cache_dir: CacheDirOpt = None) -> None:
    """Remove every cached response."""
    directory = _cache_path(cache_dir)
    if not directory.exists():
        stdout().print(f"{directory}: no cache there; nothing to remove", highlight=False)
        return
    cache = _open_cache(directory)
    try:
        removed = cache.clear()
    finally:
        cache.close()
    stdout().print(f"removed {removed} responses from {cache.directory}", highlight=False)
