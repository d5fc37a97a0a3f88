"""Errors the CLI reports as one clear message (no traceback) and a non-zero exit."""

from __future__ import annotations


class MemexError(Exception):
    """A failure the user can act on: the message says what is wrong and how to fix it."""

    exit_code = 1

    def __init__(self, message: str, exit_code: int | None = None):
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code


class SystemFailure(MemexError):
    """A system failed, not the request: the database refused the connection or went away."""

    exit_code = 2


class PrerequisiteError(MemexError):
    """Something the database needs before memex can be installed is missing."""

    exit_code = 3


# SQLSTATE classes that mean the request was wrong (exit 1), not that a system failed (exit 2):
# data exceptions, integrity constraints, invalid transaction state, access rules and syntax,
# program limits, and PL/pgSQL's raise (P0: no data, and raise exception without a code).
BAD_INPUT_CLASSES = {"22", "23", "25", "2D", "42", "44", "54", "P0"}


def database_error_exit_code(sqlstate: str | None) -> int:
    return 1 if sqlstate and sqlstate[:2] in BAD_INPUT_CLASSES else 2


def describe_database_error(exc: Exception) -> str:
    """A database error for people: its message and hint, with its SQLSTATE, without the
    PL/pgSQL context lines (which function, which line) that only help memex's developers."""
    diag = getattr(exc, "diag", None)
    message = (diag.message_primary if diag else None) or str(exc).strip().splitlines()[0]
    message = message.removeprefix("plpy.Error: ")
    sqlstate = getattr(exc, "sqlstate", None)
    text = f"database error [{sqlstate}]: {message}" if sqlstate else f"database error: {message}"
    if diag and diag.message_detail:
        text += f"\n  detail: {diag.message_detail}"
    if diag and diag.message_hint:
        text += f"\n  hint: {diag.message_hint}"
    return text
