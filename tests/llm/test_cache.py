from __future__ import annotations

import asyncio
import gc
import logging
import sqlite3
import stat
from pathlib import Path
from typing import Any

import diskcache
import pytest
from typer.testing import CliRunner

from promptopt.cli.main import app
from promptopt.errors import PromptoptError
from promptopt.llm.cache import (
    NullCache,
    RequestKeys,
    ResponseCache,
    default_cache_dir,
    request_key,
)


def key(**changes: object) -> str:
    base: dict[str, object] = {
        "provider": "openai",
        "endpoint": "https://api.openai.com/v1",
        "model": "gpt-4o-mini",
        "messages": [{"role": "user", "content": "hi"}],
        "params": {"temperature": 0},
        "sample_index": 0,
    }
    base.update(changes)
    return request_key(**base)  # type: ignore[arg-type]


def test_key_changes_with_everything_that_changes_the_answer() -> None:
    keys = {
        key(),
        key(provider="anthropic"),
        key(endpoint="http://127.0.0.1:8765/v1"),
        key(model="gpt-4o"),
        key(messages=[{"role": "user", "content": "hi!"}]),
        key(params={"temperature": 0.7}),
        key(sample_index=1),
    }
    assert len(keys) == 7
    assert key() == key(params={"temperature": 0})  # stable


def test_request_keys_are_request_key_exactly() -> None:
    # Every cache a user holds was keyed by request_key: the faster maker must give the same
    # keys, for repeated and changing first messages alike.
    system: dict[str, object] = {
        "role": "system",
        "content": "Classify the question. Answer with one label: é, ü.",
    }
    shapes: list[list[dict[str, object]]] = [
        [],
        [system],
        [system, {"role": "user", "content": "q1"}],
        [system, {"role": "user", "content": "q1"}, {"role": "assistant", "content": "A"}],
        [system, {"role": "user", "content": "q2"}],
        [{"role": "user", "content": [{"type": "text", "text": "parts"}]}],
        [{"role": "user", "content": 1}],
        [{"role": "user", "content": 1.0}],
        [{"role": "user", "content": True}],
        [{"role": "system", "name": "x", "content": "named"}, {"role": "user", "content": "q"}],
        [system, {"role": "user", "content": 'say "hi"\n\ttab \u2028 \x01 \\ /'}],
    ]
    # 0, 0.0 and False are one dict key but three different JSON values.
    params: list[dict[str, object]] = [
        {},
        {"temperature": 0, "max_tokens": 8},
        {"temperature": 0.0, "max_tokens": 8},
        {"temperature": False, "max_tokens": 8},
        {"temperature": -0.0, "max_tokens": 8},
        {"n": 2, "stop": ["\n"]},
        {"logit_bias": (1,)},
        {"logit_bias": (1.0,)},
    ]
    for endpoint in ("https://api.openai.com/v1", "http://127.0.0.1:8765/v1"):
        maker = RequestKeys(provider="openai", endpoint=endpoint, model="gpt-4o-mini")
        for _ in range(2):  # the second pass answers from the remembered first messages
            for messages in shapes:
                for p in params:
                    for sample in (0, 3):
                        assert maker.key(messages, p, sample) == request_key(
                            provider="openai",
                            endpoint=endpoint,
                            model="gpt-4o-mini",
                            messages=messages,
                            params=p,
                            sample_index=sample,
                        ), (messages, p, sample)


def test_round_trip_stats_and_clear(tmp_path: Path) -> None:
    cache = ResponseCache(tmp_path / "c")
    assert cache.get("k") is None
    cache.set("k", {"text": "hello", "usage": {"input": 3}})
    assert cache.get("k") == {"text": "hello", "usage": {"input": 3}}
    stats = cache.stats()
    assert stats.entries == 1 and stats.size_bytes > 0
    assert cache.clear() == 1 and cache.get("k") is None
    cache.close()
    assert stat.S_IMODE((tmp_path / "c").stat().st_mode) == 0o700


def test_values_survive_reopen_and_large_values_work(tmp_path: Path) -> None:
    cache = ResponseCache(tmp_path / "c")
    cache.set("big", {"text": "x" * 100_000})
    cache.close()
    again = ResponseCache(tmp_path / "c")
    assert again.get("big") == {"text": "x" * 100_000}
    again.close()


def test_a_pickled_row_is_a_miss_never_loaded(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cache = ResponseCache(tmp_path / "c")
    cache.set("k", {"text": "fine"})
    cache.close()
    # Tamper with the database as an attacker would: mark the row as pickled (mode 4).
    db = sqlite3.connect(tmp_path / "c" / "cache.db")
    db.execute("UPDATE Cache SET mode = 4, value = ? WHERE key = 'k'", (b"cos\nsystem\n.",))
    db.commit()
    db.close()
    again = ResponseCache(tmp_path / "c")
    with caplog.at_level(logging.WARNING, logger="promptopt.cache"):
        assert again.get("k") is None
    assert again.bad_rows == 1 and "unreadable entry" in caplog.text
    again.close()


def test_rows_that_are_not_json_objects_are_misses_reported_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cache = ResponseCache(tmp_path / "c")
    cache._cache.set("not-json", "{broken")
    cache._cache.set("a-list", "[1, 2]")
    cache.set("good", {"text": "ok"})
    with caplog.at_level(logging.WARNING, logger="promptopt.cache"):
        assert cache.get("not-json") is None
        assert cache.get("a-list") is None
        assert cache.get("good") == {"text": "ok"}
    assert cache.bad_rows == 2
    assert caplog.text.count("unreadable entry") == 1
    # A bad row is overwritten by the next answer for its key.
    cache.set("not-json", {"text": "fresh"})
    assert cache.get("not-json") == {"text": "fresh"}
    cache.close()


@pytest.mark.parametrize("damage", ["garbage", "truncated", "folder"])
def test_a_damaged_database_is_moved_aside_and_a_new_cache_started(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, damage: str
) -> None:
    directory = tmp_path / "c"
    cache = ResponseCache(directory)
    for i in range(50):
        cache.set(f"k{i}", {"text": "x" * 200})
    cache.close()
    db = directory / "cache.db"
    if damage == "garbage":
        db.write_bytes(b"this is not a database" * 100)
    elif damage == "truncated":
        db.write_bytes(db.read_bytes()[:1000])
    else:
        db.unlink()
        db.mkdir()
    with caplog.at_level(logging.WARNING, logger="promptopt.cache"):
        healed = ResponseCache(directory)
    assert healed.moved_to is not None and healed.moved_to.exists()
    assert str(healed.moved_to) in caplog.text and "new one started" in caplog.text
    assert healed.get("k1") is None
    healed.set("k1", {"text": "again"})
    assert healed.get("k1") == {"text": "again"}
    assert healed.stats().entries == 1
    healed.close()


def test_stats_and_clear_work_on_a_damaged_cache(tmp_path: Path) -> None:
    directory = tmp_path / "c"
    ResponseCache(directory).close()
    (directory / "cache.db").write_bytes(b"garbage" * 500)
    for command in (
        ["cache", "stats", "--cache-dir", str(directory)],
        ["cache", "clear", "--cache-dir", str(directory)],
    ):
        result = CliRunner().invoke(app, command)
        assert result.exit_code == 0, result.output
        assert "Traceback" not in result.output


def test_stats_of_a_mistyped_cache_dir_creates_nothing(tmp_path: Path) -> None:
    typo = tmp_path / "typo"
    result = CliRunner().invoke(app, ["cache", "stats", "--cache-dir", str(typo)])
    assert result.exit_code == 0 and "no cache there" in result.output
    result = CliRunner().invoke(app, ["cache", "clear", "--cache-dir", str(typo)])
    assert result.exit_code == 0 and "nothing to remove" in result.output
    assert not typo.exists()


def test_a_full_disk_is_one_sentence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cache = ResponseCache(tmp_path / "c")

    def full(*args: object, **kwargs: object) -> None:
        raise sqlite3.OperationalError("database or disk is full")

    monkeypatch.setattr(cache._cache, "set", full)
    with pytest.raises(PromptoptError, match="is full; free some space and resume"):
        cache.set("k", {"text": "x"})
    cache.close()


def test_only_str_keys_and_json_values(tmp_path: Path) -> None:
    cache = ResponseCache(tmp_path / "c")
    with pytest.raises(TypeError):
        cache._cache.set(("tuple", "key"), "x")
    with pytest.raises(TypeError):
        cache._cache.set("k", object())
    cache.close()


def test_default_dir_honours_env() -> None:
    assert default_cache_dir({"PROMPTOPT_CACHE_DIR": "/x/y"}) == Path("/x/y")
    assert default_cache_dir({"XDG_CACHE_HOME": "/c"}) == Path("/c/promptopt/responses")


def test_unwritable_cache_dir_gives_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(PromptoptError, match="--cache-dir"):
        ResponseCache(blocker / "sub")


def test_null_cache_keeps_nothing() -> None:
    null = NullCache()
    null.set("k", {"text": "x"})
    assert null.get("k") is None


async def test_answers_set_in_an_event_loop_are_read_at_once_and_on_disk_soon(
    tmp_path: Path,
) -> None:
    cache = ResponseCache(tmp_path / "c")
    other = ResponseCache(tmp_path / "c")
    cache.set("a", {"text": "x"})
    assert cache.get("a") == {"text": "x"}
    assert other.get("a") is None  # in the same transaction as the answers around it
    await asyncio.sleep(0.2)
    assert other.get("a") == {"text": "x"}
    cache.set("b", {"text": "y"})
    cache.close()  # what is pending is written, not lost
    assert other.get("b") == {"text": "y"}
    other.close()


def test_answers_set_outside_an_event_loop_are_on_disk_at_once(tmp_path: Path) -> None:
    cache = ResponseCache(tmp_path / "c")
    other = ResponseCache(tmp_path / "c")
    cache.set("a", {"text": "x"})
    assert other.get("a") == {"text": "x"}
    cache.close()
    other.close()


def test_other_openers_of_the_cache_still_cull_in_each_write(tmp_path: Path) -> None:
    # promptopt culls once per batch in its own process; the database must keep diskcache's
    # setting, or an older promptopt sharing the user's cache would never cull again.
    cache = ResponseCache(tmp_path / "c")
    cache.set("k", {"text": "x"})
    cache.close()
    other = diskcache.Cache(str(tmp_path / "c"))
    assert other.cull_limit == diskcache.DEFAULT_SETTINGS["cull_limit"] > 0
    other.close()


def test_the_oldest_answers_go_past_the_size_limit(tmp_path: Path) -> None:
    # Culling runs once per written batch rather than inside each write; the cache must
    # still stay within its size limit.
    cache = ResponseCache(tmp_path / "c")
    limit = cache._cache.volume() + 60_000  # the empty database's own pages, and 60 kB
    cache._cache.reset("size_limit", limit)
    text = "x" * 2000
    for i in range(60):
        cache.set(f"k{i}", {"text": text})
    assert cache.get("k0") is None  # stored first, evicted first
    assert cache.get("k59") == {"text": text}
    assert cache._cache.volume() <= limit
    cache.close()


async def cache_whose_deferred_write_failed(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    error: Exception | None = None,
) -> ResponseCache:
    cache = ResponseCache(tmp_path / "c")

    def failing(*args: object, **kwargs: object) -> None:
        raise error or sqlite3.OperationalError("database or disk is full")

    monkeypatch.setattr(cache._cache, "set", failing)
    cache.set("k", {"text": "x"})
    await asyncio.sleep(0.2)
    return cache


async def test_a_full_disk_found_by_a_deferred_write_is_raised_by_the_next_set(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = await cache_whose_deferred_write_failed(tmp_path, monkeypatch)
    with pytest.raises(PromptoptError, match="is full; free some space and resume"):
        cache.set("k2", {"text": "y"})
    monkeypatch.undo()  # space was freed
    cache.close()  # the error was reported once
    reopened = ResponseCache(tmp_path / "c")
    assert reopened.get("k2") == {"text": "y"}  # the answer that reported it was kept
    reopened.close()


async def test_an_interrupted_write_keeps_its_answers_for_close(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = ResponseCache(tmp_path / "c")
    cache.set("a", {"text": "x"})
    cache.set("b", {"text": "y"})
    real_set = cache._cache.set
    calls = []

    def interrupted(*args: Any, **kwargs: Any) -> Any:
        calls.append(args)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real_set(*args, **kwargs)

    monkeypatch.setattr(cache._cache, "set", interrupted)
    with pytest.raises(KeyboardInterrupt):
        cache.flush()
    monkeypatch.undo()
    cache.close()
    reopened = ResponseCache(tmp_path / "c")
    assert reopened.get("a") == {"text": "x"} and reopened.get("b") == {"text": "y"}
    reopened.close()


def test_a_timer_left_by_an_ended_loop_does_not_hold_later_answers(tmp_path: Path) -> None:
    cache = ResponseCache(tmp_path / "c")

    async def answer() -> None:
        cache.set("a", {"text": "x"})

    asyncio.run(answer())  # ends before its timer fires
    cache.set("b", {"text": "y"})  # no loop now: on disk at once, with what was pending
    other = ResponseCache(tmp_path / "c")
    assert other.get("a") == {"text": "x"} and other.get("b") == {"text": "y"}
    other.close()
    cache.close()


async def test_any_failure_of_a_deferred_write_is_reported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    malformed = sqlite3.DatabaseError("database disk image is malformed")
    cache = await cache_whose_deferred_write_failed(tmp_path, monkeypatch, malformed)
    monkeypatch.undo()
    with pytest.raises(PromptoptError, match="cannot write to the response cache"):
        cache.close()


async def test_a_full_disk_found_by_a_deferred_write_is_raised_by_close(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = await cache_whose_deferred_write_failed(tmp_path, monkeypatch)
    with pytest.raises(PromptoptError, match="is full"):
        cache.close()


def test_a_cache_dropped_without_close_still_writes_its_answers(tmp_path: Path) -> None:
    async def answer() -> None:
        ResponseCache(tmp_path / "c").set("a", {"text": "x"})

    asyncio.run(answer())
    gc.collect()  # or the interpreter's exit
    reopened = ResponseCache(tmp_path / "c")
    assert reopened.get("a") == {"text": "x"}
    reopened.close()
