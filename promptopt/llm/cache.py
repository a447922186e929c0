"""Content-addressed response cache on diskcache, storing JSON text only (never pickle)."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import diskcache
from diskcache.core import MODE_PICKLE

from promptopt.errors import PromptoptError
from promptopt.util.hashing import content_hash

CACHE_KEY_VERSION = 1


class _JSONTextDisk(diskcache.Disk):  # type: ignore[misc]
    """A diskcache Disk that refuses pickle in both directions.

    diskcache's own JSONDisk still unpickles a row whose mode says pickle, so a tampered cache
    database could run code (CVE-2025-69872). Here keys must be str and values JSON text, and a
    pickled row is reported as corruption instead of being loaded.
    """

    def put(self, key: Any) -> tuple[Any, bool]:
        if type(key) is not str:
            raise TypeError("cache keys must be str")
        return key, True

    def get(self, key: Any, raw: bool) -> Any:
        if not raw:
            raise PromptoptError(
                "the response cache holds a pickled key; run `promptopt cache clear`"
            )
        return key

    def store(self, value: Any, read: bool, key: Any = diskcache.UNKNOWN) -> Any:
        if read or type(value) is not str:
            raise TypeError("cache values must be JSON text")
        return super().store(value, read, key=key)

    def fetch(self, mode: int, filename: Any, value: Any, read: bool) -> Any:
        if mode == MODE_PICKLE:
            raise PromptoptError(
                "the response cache holds a pickled value, which promptopt never writes; "
                "run `promptopt cache clear`"
            )
        return super().fetch(mode, filename, value, read)


def default_cache_dir(env: Mapping[str, str] | None = None) -> Path:
    """The user cache dir: $PROMPTOPT_CACHE_DIR, else $XDG_CACHE_HOME/promptopt, else ~/.cache."""
    env = os.environ if env is None else env
    if env.get("PROMPTOPT_CACHE_DIR"):
        return Path(env["PROMPTOPT_CACHE_DIR"]).expanduser()
    base = Path(env["XDG_CACHE_HOME"]) if env.get("XDG_CACHE_HOME") else Path.home() / ".cache"
    return base / "promptopt" / "responses"


def request_key(
    *,
    provider: str,
    endpoint: str,
    model: str,
    messages: Sequence[Mapping[str, Any]],
    params: Mapping[str, Any],
    sample_index: int,
) -> str:
    """A hash of everything that changes a model's answer."""
    payload = {
        "v": CACHE_KEY_VERSION,
        "provider": provider,
        "endpoint": endpoint,
        "model": model,
        "messages": [dict(m) for m in messages],
        "params": dict(params),
        "sample_index": sample_index,
    }
    return content_hash(payload)


@dataclass(frozen=True)
class CacheStats:
    """What `promptopt cache stats` shows."""

    directory: str
    entries: int
    size_bytes: int


class ResponseStore(Protocol):
    """Where responses are kept; `NullCache` keeps nothing (`--no-cache`)."""

    def get(self, key: str) -> dict[str, Any] | None:
        """The stored value, or None."""
        ...

    def set(self, key: str, value: Mapping[str, Any]) -> None:
        """Store a JSON-serializable value."""
        ...

    def close(self) -> None:
        """Flush and release the store."""
        ...


class ResponseCache:
    """The on-disk cache. Open it once per process: concurrent first opens can lock sqlite."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        try:
            directory.mkdir(parents=True, exist_ok=True, mode=0o700)
            os.chmod(directory, 0o700)
            self._cache = diskcache.Cache(str(directory), disk=_JSONTextDisk)
        except OSError as exc:
            raise PromptoptError(
                f"cannot open the response cache at {directory}: {exc.strerror or exc}; "
                "pass --cache-dir DIR or --no-cache"
            ) from exc

    def get(self, key: str) -> dict[str, Any] | None:
        """The stored value, or None."""
        text = self._cache.get(key)
        if text is None:
            return None
        value = json.loads(text)
        return value if isinstance(value, dict) else None

    def set(self, key: str, value: Mapping[str, Any]) -> None:
        """Store a JSON-serializable mapping."""
        self._cache.set(key, json.dumps(value, ensure_ascii=False, separators=(",", ":")))

    def stats(self) -> CacheStats:
        """Entry count and size on disk."""
        return CacheStats(str(self.directory), len(self._cache), int(self._cache.volume()))

    def clear(self) -> int:
        """Remove every entry; returns how many were removed."""
        return int(self._cache.clear())

    def close(self) -> None:
        """Release the sqlite connection."""
        self._cache.close()


class NullCache:
    """Caches nothing; used for `--no-cache`."""

    def get(self, key: str) -> dict[str, Any] | None:
        """Always a miss."""
        return None

    def set(self, key: str, value: Mapping[str, Any]) -> None:
        """Discards the value."""

    def close(self) -> None:
        """Nothing to release."""
