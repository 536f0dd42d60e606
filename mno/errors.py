"""Domain errors. Each carries the exit code the CLI turns it into.

0 ok, 1 domain refusal, 2 bad input or usage, 3 store or service unreachable.
"""

from __future__ import annotations


class MnoError(Exception):
    """A refusal by the domain: not found, conflict, invalid transition (exit 1)."""

    exit_code = 1

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message


class NotFound(MnoError):
    """The named object does not exist."""


class Conflict(MnoError):
    """A duplicate, or a state that forbids the change."""


class InvalidTransition(MnoError):
    """A status change the state machine does not allow."""


class Forbidden(MnoError):
    """The actor may not make this change (exit 1)."""


class BadInput(MnoError):
    """Input that fails validation (exit 2)."""

    exit_code = 2


class Unavailable(MnoError):
    """A store or outside service cannot be reached (exit 3)."""

    exit_code = 3


class SchemaMismatch(Unavailable):
    """The store's schema is behind or ahead of the code (exit 3)."""
