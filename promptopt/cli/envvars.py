"""Environment variables for options: one explicit name per option, set on the built command
tree, and errors in their values reported under the variable's name.

Typer's `auto_envvar_prefix` derives names from Python parameter names (`PROMPTOPT_EVAL_AS_JSON`
for `--json`) and reaches `--version` too, so a `PROMPTOPT_VERSION=0.1.0` pin in a CI job would
break every command. Here each option of `promptopt COMMAND` reads `PROMPTOPT_COMMAND_OPTION`
(its long name, upper case, `-` as `_`); the options every model-calling command shares read
`PROMPTOPT_OPTION`; the root options read none.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import typer
from typer.core import TyperGroup, TyperOption

PREFIX = "PROMPTOPT"

# The same value usually suits every command (one cache, one machine), so one variable sets it.
SHARED_OPTIONS = frozenset({"--concurrency", "--cache-dir", "--no-cache", "--seed"})


def option_envvar(command_path: tuple[str, ...], long_name: str) -> str:
    """The environment variable of option `long_name` (`--cache-dir`) of a command."""
    words = () if long_name in SHARED_OPTIONS else command_path
    return "_".join((PREFIX, *words, long_name.removeprefix("--"))).upper().replace("-", "_")


def _long_name(opts: list[str]) -> str | None:
    longs = [opt for opt in opts if opt.startswith("--")]
    return max(longs, key=len) if longs else None


def commands(group: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Any]]:
    """Every command below `group` (groups included) with its path of names."""
    children: Mapping[str, Any] = getattr(group, "commands", {})
    for name, command in children.items():
        yield (*path, name), command
        yield from commands(command, (*path, name))


def assign_envvars(root: Any) -> None:
    """Give every option of every subcommand of `root` its environment variable."""
    for path, command in commands(root):
        for param in command.params:
            if not isinstance(param, TyperOption):
                continue
            long_name = _long_name(param.opts)
            if long_name is None:
                continue
            param.envvar = option_envvar(path, long_name)
            param.show_envvar = True


class EnvvarGroup(TyperGroup):
    """The root command group: assigns the environment variables and names them in errors."""

    def __init__(self, **attrs: Any) -> None:
        super().__init__(**attrs)
        assign_envvars(self)

    def invoke(self, ctx: Any) -> Any:
        """Run the subcommand; a bad value read from the environment names its variable."""
        try:
            return super().invoke(ctx)
        except typer.BadParameter as exc:
            param, sub_ctx = exc.param, exc.ctx
            if param is not None and sub_ctx is not None and param.name is not None:
                source = sub_ctx.get_parameter_source(param.name)
                if source is not None and source.name == "ENVIRONMENT" and param.envvar:
                    exc.param_hint = f"environment variable {param.envvar}"
            raise
