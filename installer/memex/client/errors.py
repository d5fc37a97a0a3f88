"""The client's exceptions: a small hierarchy chosen by SQLSTATE (never by message text), each
carrying the server's message and hint."""

from __future__ import annotations

import psycopg


class MemexClientError(Exception):
    """A database error, as the server said it: `message`, `hint`, `sqlstate`."""

    def __init__(self, message: str, hint: str | None = None, sqlstate: str | None = None):
        super().__init__(message if not hint else f"{message} (hint: {hint})")
        self.message = message
        self.hint = hint
        self.sqlstate = sqlstate
        self.original: psycopg.Error | None = None  # the driver's error, with its diagnostics


class TenantNotFound(MemexClientError):
    """The tenant named is not one this role can see (the message names the nearest ones)."""


class NotFound(MemexClientError):
    """Something named does not exist (P0002): a conversation, a space."""


class InvalidInput(MemexClientError):
    """The request was wrong (class 22: a bad argument or payload; 23: a constraint)."""


class LimitExceeded(MemexClientError):
    """A limit was reached (class 54: a query too long, too many texts; 53: a memory budget)."""


class PermissionDenied(MemexClientError):
    """The role may not do this (42501), e.g. embed_pending as memex_app."""


def _class_for(sqlstate: str | None) -> type[MemexClientError]:
    if not sqlstate:
        return MemexClientError
    if sqlstate == "42501":
        return PermissionDenied
    if sqlstate == "P0002":
        return NotFound
    return {"22": InvalidInput, "23": InvalidInput, "54": LimitExceeded,
            "53": LimitExceeded}.get(sqlstate[:2], MemexClientError)  # fmt: skip


def translate(exc: psycopg.Error) -> MemexClientError:
    """The client exception for a psycopg error (its diagnostics kept)."""
    diag = exc.diag
    message = (diag.message_primary or str(exc).strip()).removeprefix("plpy.Error: ")
    error = _class_for(exc.sqlstate)(message, diag.message_hint, exc.sqlstate)
    error.original = exc
    return error
