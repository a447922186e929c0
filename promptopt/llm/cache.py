"""Content-addressed response cache on diskcache, storing JSON text only (never pickle)."""

from __future__ import annotations

import asyncio
import errno
import hashlib
import itertools
import json
import logging
import os
import sqlite3
import time
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import diskcache
from diskcache.core import MODE_PICKLE

from promptopt.errors import PromptoptError, UsageError
from promptopt.util.hashing import canonical_json, content_hash, json_text

CACHE_KEY_VERSION = 1
# Answers are written in small transactions rather than one commit each: a commit per answer
# blocks the event loop on the disk, which capped the scorer against fast servers. An answer
# waits at most this long (or for this many others) before it is on disk.
_FLUSH_AFTER_S = 0.05
_FLUSH_AT = 256

# A library reports what it did to the user's files through logging; the command line shows
# warnings on stderr (Python's last-resort handler does when nothing else is configured).
log = logging.getLogger("promptopt.cache")


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


class RequestKeys:
    """`request_key` for one model's requests, with the parts its requests share encoded and
    hashed once: the same keys at a fraction of the cost, which a cached rerun (one key per
    example, every one a hit) pays for little else.

    The parts shared are the endpoint and model, and the hash state after a request's first
    message (the system prompt, the same for every example of an evaluation).
    """

    def __init__(self, *, provider: str, endpoint: str, model: str) -> None:
        """Keys of requests to `model` of `provider` at `endpoint`."""
        # canonical_json sorts the payload's keys: endpoint, messages, model, params,
        # provider, sample_index, v.
        self._head = ('{"endpoint":' + canonical_json(endpoint) + ',"messages":[').encode()
        self._provider = provider
        self._model = model
        self._starts: dict[tuple[str, str], Any] = {}
        self._tails: dict[tuple[Any, ...], bytes] = {}

    def key(
        self, messages: Sequence[Mapping[str, Any]], params: Mapping[str, Any], sample_index: int
    ) -> str:
        """`request_key(...)` of a request with these messages, parameters and sample."""
        if not messages:
            digest = hashlib.sha256(self._head)
        else:
            digest = self._start(messages[0]).copy()
            for message in itertools.islice(messages, 1, None):
                digest.update(b"," + _message_json(message).encode())
        digest.update(self._tail(params, sample_index))
        return digest.hexdigest()

    def _start(self, first: Mapping[str, Any]) -> Any:
        """The hash state after the payload's opening and its first message."""
        memo = _usual(first)
        start = self._starts.get(memo) if memo is not None else None
        if start is None:
            start = hashlib.sha256(self._head)
            start.update(_message_json(first).encode())
            if memo is not None:
                _remember(self._starts, memo, start)
        return start

    def _tail(self, params: Mapping[str, Any], sample_index: int) -> bytes:
        """The payload after its messages: model, parameters, provider, sample, version."""
        memo: tuple[Any, ...] | None = None
        tail: bytes | None = None
        if type(sample_index) is int and all(type(v) in _SCALARS for v in params.values()):
            # Typed, and floats by their repr: a dict key would take 0, 0.0 and False (or 0.0
            # and -0.0) for the same value, which JSON writes differently.
            memo = (
                sample_index,
                *(
                    (k, type(v), repr(v) if type(v) is float else v)
                    for k, v in sorted(params.items())
                ),
            )
            tail = self._tails.get(memo)
        if tail is None:
            text = canonical_json(
                {
                    "model": self._model,
                    "params": dict(params),
                    "provider": self._provider,
                    "sample_index": sample_index,
                    "v": CACHE_KEY_VERSION,
                }
            )
            tail = ("]," + text[1:]).encode()
            if memo is not None:
                _remember(self._tails, memo, tail)
        return tail


_SCALARS = (str, int, float, bool, type(None))
_MAX_MEMOS = 64


def _remember(memos: dict[Any, Any], key: Any, value: Any) -> None:
    """Keep `value` under `key`, starting over past `_MAX_MEMOS` entries (an evaluation uses
    one or two; a run with many system prompts must not grow the memo without end)."""
    if len(memos) >= _MAX_MEMOS:
        memos.clear()
    memos[key] = value


def _usual(message: Mapping[str, Any]) -> tuple[str, str] | None:
    """(role, content) of a message that has only those, both text; None for any other."""
    role, content = message.get("role"), message.get("content")
    if len(message) == 2 and type(role) is str and type(content) is str:
        return role, content
    return None


def _message_json(message: Mapping[str, Any]) -> str:
    """A message's canonical JSON; the usual one written directly (the encoder's fixed cost
    per call was most of a key's)."""
    usual = _usual(message)
    if usual is None:
        return canonical_json(dict(message))
    role, content = usual
    return '{"content":' + json_text(content) + ',"role":' + json_text(role) + "}"


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
    """The on-disk cache. Open it once per process: concurrent first opens can lock sqlite.

    It heals rather than crashes: a row that cannot be read (not JSON, not a mapping, pickled)
    is a miss, reported once; a database that cannot be opened (garbage, truncated, a folder
    where the file should be) is moved aside with a one-line notice and a new cache started.
    Everything a run paid for is also in its run folder's journal, so nothing is lost.
    """

    def __init__(self, directory: Path, *, create: bool = True) -> None:
        """Open (and with `create`, make) the cache in `directory`."""
        self.directory = directory
        self.bad_rows = 0
        self._trim_failed = False
        self.moved_to: Path | None = None
        self._pending: dict[str, str] = {}
        self._flush_timer: asyncio.TimerHandle | None = None
        self._deferred_error: PromptoptError | None = None
        self._timer_loop: asyncio.AbstractEventLoop | None = None
        if not create and not directory.exists():
            raise PromptoptError(f"there is no response cache at {directory}")
        if directory.exists() and not directory.is_dir():
            # A usage mistake (a file given for the folder), not damage to move aside.
            raise UsageError(
                f"the response cache folder {directory} is a file; pass --cache-dir (or "
                "PROMPTOPT_CACHE_DIR) naming a folder, or --no-cache"
            )
        try:
            self._cache = self._open()
        except (sqlite3.DatabaseError, IsADirectoryError) as exc:
            self.moved_to = self._move_aside()
            log.warning(
                "the response cache at %s could not be read (%s); it was moved to %s and a "
                "new one started",
                directory,
                exc,
                self.moved_to,
            )
            try:
                self._cache = self._open()
            except (OSError, sqlite3.DatabaseError) as again:
                raise self._open_error(again) from again
        except OSError as exc:
            raise self._open_error(exc) from exc
        # A cache dropped without `close` (a script's own use of it) still writes what is
        # pending when it is collected or the interpreter exits.
        self._last_resort = weakref.finalize(self, _write_pending, self._cache, self._pending)

    def _open(self) -> diskcache.Cache:
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(self.directory, 0o700)
        db = self.directory / "cache.db"
        if db.is_dir():
            raise IsADirectoryError(errno.EISDIR, "cache.db is a folder", str(db))
        cache = diskcache.Cache(str(self.directory), disk=_JSONTextDisk)
        # No culling inside each write (diskcache checks the size limit on every `set`, half of
        # a write's statements): `flush` culls once per transaction instead. For this process
        # only: the database keeps diskcache's setting, so that other openers (an older
        # promptopt sharing the user's cache) still cull.
        cache.reset("cull_limit", 0, update=False)
        # diskcache opens lazily: touch the database now, so damage shows here, not mid-run.
        len(cache)
        return cache

    def _move_aside(self) -> Path:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        target = self.directory.with_name(f"{self.directory.name}.damaged-{stamp}")
        n = 1
        while target.exists():
            n += 1
            target = self.directory.with_name(f"{self.directory.name}.damaged-{stamp}-{n}")
        self.directory.rename(target)
        return target

    def _open_error(self, exc: BaseException) -> PromptoptError:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        return PromptoptError(
            f"cannot open the response cache at {self.directory}: {reason}; "
            "pass --cache-dir DIR or --no-cache"
        )

    def _bad_row(self, key: str, why: str) -> None:
        self.bad_rows += 1
        if self.bad_rows == 1:
            log.warning(
                "the response cache at %s has an unreadable entry (%s); such entries are "
                "treated as not cached and asked again",
                self.directory,
                why,
            )

    def get(self, key: str) -> dict[str, Any] | None:
        """The stored value, or None (also for an entry that cannot be read)."""
        text = self._pending.get(key)
        try:
            if text is None:
                text = self._cache.get(key)
        except (PromptoptError, sqlite3.DatabaseError, OSError, UnicodeDecodeError) as exc:
            self._bad_row(key, str(exc))
            return None
        if text is None:
            return None
        try:
            value = json.loads(text)
        except (TypeError, ValueError):
            self._bad_row(key, "not JSON")
            return None
        if not isinstance(value, dict):
            self._bad_row(key, "not a JSON object")
            return None
        return value

    def set(self, key: str, value: Mapping[str, Any]) -> None:
        """Store a JSON-serializable mapping: on disk within `_FLUSH_AFTER_S` when called
        from an event loop (in one transaction with the answers around it), at once otherwise;
        `get` sees it at once either way, and `close` writes whatever is left.

        Raises:
            PromptoptError: the disk is full (one sentence; the answer is already in the run
                folder's journal, so a resumed run does not pay for it again), also when an
                earlier deferred write found it so.
        """
        self._pending[key] = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
        try:
            loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        # A timer of a loop that has ended never fires: write now rather than wait on it.
        stale = self._flush_timer is not None and self._timer_loop is not loop
        if loop is None or stale or len(self._pending) >= _FLUSH_AT:
            self.flush()
        elif self._flush_timer is None:
            self._flush_timer = loop.call_later(_FLUSH_AFTER_S, self._timed_flush)
            self._timer_loop = loop
        self._raise_deferred()

    def _timed_flush(self) -> None:
        self._flush_timer = None
        try:
            self.flush()
        except Exception as exc:
            # The next `set` or `close` raises it.
            self._deferred_error = (
                exc
                if isinstance(exc, PromptoptError)
                else PromptoptError(
                    f"cannot write to the response cache at {self.directory}: {exc}"
                )
            )

    def _raise_deferred(self) -> None:
        error, self._deferred_error = self._deferred_error, None
        if error is not None:
            raise error

    def flush(self) -> None:
        """Write the pending answers in one transaction.

        Raises:
            PromptoptError: as `set`; the answers that could not be written are dropped (a
                run's journal holds them). An interruption (Ctrl-C) keeps them pending, for
                `close` to write.
        """
        if self._flush_timer is not None:
            self._flush_timer.cancel()
            self._flush_timer = None
        if not self._pending:
            return
        batch = dict(self._pending)
        try:
            with self._cache.transact():
                for key, text in batch.items():
                    self._cache.set(key, text)
        except (sqlite3.Error, OSError, diskcache.Timeout) as exc:
            for key in batch:
                self._pending.pop(key, None)
            full = (isinstance(exc, OSError) and exc.errno == errno.ENOSPC) or "full" in str(exc)
            if full:
                raise PromptoptError(
                    f"the disk holding the response cache ({self.directory}) is full; free "
                    "some space and resume the run"
                ) from exc
            raise PromptoptError(
                f"cannot write to the response cache at {self.directory}: {exc}"
            ) from exc
        for key in batch:
            self._pending.pop(key, None)
        try:
            # Past the size limit (diskcache's, 1 GB unless changed), the oldest answers go.
            self._cache.cull()
        except (sqlite3.Error, OSError, diskcache.Timeout) as exc:
            # Another process holding the database: the next batch tries again. Said once.
            if not self._trim_failed:
                self._trim_failed = True
                log.warning(
                    "the response cache at %s could not be trimmed to its size limit: %s",
                    self.directory,
                    exc,
                )

    def stats(self) -> CacheStats:
        """Entry count and size on disk."""
        self.flush()
        return CacheStats(str(self.directory), len(self._cache), int(self._cache.volume()))

    def clear(self) -> int:
        """Remove every entry; returns how many were removed."""
        self.flush()
        return int(self._cache.clear())

    def close(self) -> None:
        """Write what is pending and release the sqlite connection.

        Raises:
            PromptoptError: as `set` (the connection is released all the same).
        """
        try:
            try:
                self.flush()
            finally:
                # An error found earlier by a deferred write comes first; it is reported here
                # if no `set` came after it.
                self._raise_deferred()
        finally:
            if not self._pending:
                self._last_resort.detach()
            self._cache.close()


def _write_pending(cache: diskcache.Cache, pending: dict[str, str]) -> None:
    """Best effort, for `ResponseCache`'s finalizer: nothing can be reported from there."""
    if not pending:
        return
    try:
        with cache.transact():
            for key, text in pending.items():
                cache.set(key, text)
    except (sqlite3.Error, OSError):
        log.debug("a dropped response cache could not write its last answers")
    pending.clear()


class NullCache:
    """Caches nothing; used for `--no-cache`."""

    def get(self, key: str) -> dict[str, Any] | None:
        """Always a miss."""
        return None

    def set(self, key: str, value: Mapping[str, Any]) -> None:
        """Discards the value."""

    def close(self) -> None:
        """Nothing to release."""
