from __future__ import annotations

import sqlite3
import stat
from pathlib import Path

import pytest

from promptopt.errors import PromptoptError
from promptopt.llm.cache import NullCache, ResponseCache, default_cache_dir, request_key


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


def test_a_pickled_row_is_refused_not_loaded(tmp_path: Path) -> None:
    cache = ResponseCache(tmp_path / "c")
    cache.set("k", {"text": "fine"})
    cache.close()
    # Tamper with the database as an attacker would: mark the row as pickled (mode 4).
    db = sqlite3.connect(tmp_path / "c" / "cache.db")
    db.execute("UPDATE Cache SET mode = 4, value = ? WHERE key = 'k'", (b"cos\nsystem\n.",))
    db.commit()
    db.close()
    again = ResponseCache(tmp_path / "c")
    with pytest.raises(PromptoptError, match="pickled"):
        again.get("k")
    again.close()


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
