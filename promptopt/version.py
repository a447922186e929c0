"""The version of promptopt, written once (pyproject.toml reads it from here).

Kept out of the package's `__init__`, which re-exports the Python API, so that any layer can
name the version without importing the layers above it; and read from this file rather than
from installed metadata, which would cost importlib.metadata at every start of the CLI.
"""

__version__ = "0.1.0"

DISTRIBUTION = "promptopt-cli"
"""The name to pip-install: `promptopt` on PyPI is an unrelated project; the import package and
the command are still `promptopt`."""
