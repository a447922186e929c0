"""`.env` files: API keys and `PROMPTOPT_*` settings kept beside a project instead of exported
in every shell, as promptfoo, simonw/llm and most twelve-factor tools read them.

python-dotenv parses the file (quotes, `export`, `${VAR}` interpolation); what is done here is
the policy: `./.env` when present, else nothing, unless `--env-file` names one; a variable
already in the environment always wins (a CI secret or an `export` beats a stale file); a line
that cannot be parsed is named with its file and line instead of being dropped silently.
"""

from __future__ import annotations

import io
from collections.abc import MutableMapping
from dataclasses import dataclass
from pathlib import Path

DEFAULT_ENV_FILE = Path(".env")


@dataclass(frozen=True)
class EnvFileResult:
    """What reading a `.env` file did."""

    path: Path | None
    """The file read (None when there was none to read)."""
    loaded: tuple[str, ...] = ()
    """The variables set from it (never their values: they are often keys)."""
    bad_lines: tuple[int, ...] = ()
    """Lines skipped because they are not NAME=value."""


class EnvFileError(Exception):
    """The env file named cannot be read; the message says which and why."""


def load_env_file(
    path: Path | None, environ: MutableMapping[str, str], *, cwd: Path | None = None
) -> EnvFileResult:
    """Set the variables of `path` (else of `./.env` if it exists) that `environ` lacks.

    Raises EnvFileError when `path` was given and cannot be read; a missing `./.env` is not an
    error.
    """
    from dotenv import dotenv_values
    from dotenv.parser import parse_stream

    if path is None:
        candidate = (cwd or Path.cwd()) / DEFAULT_ENV_FILE
        if not candidate.is_file():
            return EnvFileResult(None)
        path = candidate
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise EnvFileError(f"{path} does not exist") from None
    except IsADirectoryError:
        raise EnvFileError(f"{path} is a folder, not a file of NAME=value lines") from None
    except UnicodeDecodeError:
        raise EnvFileError(f"{path} is not UTF-8 text") from None
    except OSError as exc:
        raise EnvFileError(f"cannot read {path}: {exc.strerror}") from None
    bindings = list(parse_stream(io.StringIO(text)))
    bad = tuple(b.original.line for b in bindings if b.error)
    # The good statements alone go to dotenv_values: it would otherwise log its own warning,
    # which names neither the file nor what to write instead.
    clean = "".join(b.original.string for b in bindings if not b.error)
    loaded: list[str] = []
    for name, value in dotenv_values(stream=io.StringIO(clean)).items():
        if value is None or name in environ:
            continue
        environ[name] = value
        loaded.append(name)
    return EnvFileResult(path, tuple(loaded), bad)
