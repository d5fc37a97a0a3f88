"""Errors the CLI reports as one clear message (no traceback) and a non-zero exit."""

from __future__ import annotations


class MemexError(Exception):
    """A failure the user can act on: the message says what is wrong and how to fix it."""

    exit_code = 1


class PrerequisiteError(MemexError):
    """Something the database needs before memex can be installed is missing."""

    exit_code = 3
