"""Errors raised inside the database, each with the SQLSTATE the SQL caller sees.

The SQL wrappers turn these into plpy errors with that SQLSTATE, a message and a hint, so a
caller gets `22023 invalid_parameter_value`, not `XX000 internal error`.
"""

from __future__ import annotations


class MemexDbError(Exception):
    sqlstate = "XX000"

    def __init__(self, message: str, hint: str | None = None, sqlstate: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint
        if sqlstate:
            self.sqlstate = sqlstate


class InvalidParameter(MemexDbError):
    sqlstate = "22023"


class ResourceLimit(MemexDbError):
    """A configured budget (memory) would be exceeded: 53200 out_of_memory."""

    sqlstate = "53200"


class EnvironmentBroken(MemexDbError):
    """The server-side Python environment is not what memex needs: 58000 system_error."""

    sqlstate = "58000"


class VersionMismatch(MemexDbError):
    sqlstate = "55000"  # object_not_in_prerequisite_state
