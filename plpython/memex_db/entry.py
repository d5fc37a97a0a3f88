"""The single door from SQL into memex_db.

Every PL/Python wrapper calls `call(plpy, GD, version, "module:function", *args)`. It checks
that this backend imported the memex_db version the SQL was installed with, runs the function,
and turns memex errors into PostgreSQL errors with their SQLSTATE and hint.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from memex_db import __version__
from memex_db.errors import InvalidParameter, MemexDbError, VersionMismatch
from memex_db.plpy_types import GD

# What SQL calls, by "module:function" (the bridge bodies the installer renders from
# `@memex_db module:function(args)@`): resolved once per backend, the module imported on its
# first call (text_search imports numpy: only backends that search text pay for it).
FUNCTIONS: dict[str, Callable[..., Any]] = {}


def resolve(target: str) -> Callable[..., Any]:
    """memex_db.<module>.<function> for "module:function"; a private name or anything else is
    refused (the SQL can only name memex_db's public functions)."""
    found = FUNCTIONS.get(target)
    if found is not None:
        return found
    module, _, name = target.partition(":")
    if not (module.isidentifier() and name.isidentifier()) or "_" in (module[:1], name[:1]):
        raise InvalidParameter(f"no memex_db function {target!r}")
    try:
        value: Any = getattr(importlib.import_module(f"memex_db.{module}"), name, None)
    except ModuleNotFoundError:
        value = None
    if not callable(value):
        raise InvalidParameter(f"no memex_db function {target!r}")
    FUNCTIONS[target] = value
    function: Callable[..., Any] = value
    return function


def check_version(sql_version: str) -> None:
    if sql_version != __version__:
        raise VersionMismatch(
            f"memex SQL {sql_version} is installed but this session loaded memex_db {__version__}",
            hint="open a new database session (memex was upgraded while this one was open); "
            "if it persists, run `memex install` and `make setup` so both sides match",
        )


def call(plpy: Any, gd: GD, sql_version: str, name: str, *args: Any) -> Any:
    try:
        check_version(sql_version)
        return resolve(name)(plpy, gd, *args)
    except MemexDbError as exc:
        details = {"hint": exc.hint} if exc.hint else {}
        plpy.error(exc.message, sqlstate=exc.sqlstate, **details)
    # Input that exhausts Python itself gets PostgreSQL's SQLSTATE for it, not 38000 with a
    # traceback (tests/db/test_fuzz.py).
    except RecursionError:
        plpy.error(f"memex_db {name}: input nested too deeply", sqlstate="54001")
    except MemoryError:
        plpy.error(f"memex_db {name}: out of memory for this input", sqlstate="53200")
