"""The error hierarchy. Every message says what the user should do about it."""

from __future__ import annotations

from dataclasses import dataclass


class PromptoptError(Exception):
    """An error a user can act on; the CLI prints its message without a traceback."""

    exit_code: int = 1


@dataclass(frozen=True)
class Problem:
    """One problem found in a task file or its data."""

    file: str
    field: str
    message: str
    line: int | None = None

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line is not None else self.file
        field = f" {self.field}:" if self.field else ""
        return f"{where}:{field} {self.message}"


class TaskFileError(PromptoptError):
    """A task file or its data is invalid; carries every problem found, not just the first."""

    exit_code = 2

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


class UsageError(PromptoptError):
    """A command-line flag or argument is wrong."""

    exit_code = 2


class ProviderError(PromptoptError):
    """A model endpoint failed."""


class TransientProviderError(ProviderError):
    """Worth retrying: rate limit, 5xx, timeout, connection reset, malformed body.

    `kind` names the failure in a few words ("connection failed", "timed out", "HTTP 500",
    "malformed response") for the error budget's message; by default it is the HTTP status.
    """

    def __init__(
        self,
        message: str,
        retry_after: float | None = None,
        status: int | None = None,
        kind: str | None = None,
    ):
        super().__init__(message)
        self.retry_after = retry_after
        self.status = status
        self.kind = kind or (f"HTTP {status}" if status is not None else "failed")


class ExampleRejected(ProviderError):
    """The endpoint refused this one request for its content (too long for the context, say):
    retrying cannot help, but other examples can still be answered, so it is recorded on the
    example and the run goes on."""

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.status = status
        self.kind = f"HTTP {status}" if status is not None else "rejected"


class FatalProviderError(ProviderError):
    """Retrying cannot help (bad key, quota exhausted, invalid request): the run stops."""


class BudgetExhausted(PromptoptError):
    """A hard budget cap would be exceeded by the next request; it was not sent."""


class MissingDependencyError(PromptoptError):
    """An optional extra or a model file is not installed."""
