"""The single door from SQL into memex_db.

Every PL/Python wrapper calls `call(plpy, GD, version, name, *args)`. It checks that this
backend imported the memex_db version the SQL was installed with, runs the function, and turns
memex errors into PostgreSQL errors with their SQLSTATE and hint.
"""

from __future__ import annotations

import types
from collections.abc import Callable
from typing import Any

from memex_db import __version__, api
from memex_db.errors import MemexDbError, VersionMismatch
from memex_db.plpy_types import GD

# Every public function of memex_db.api is callable from SQL by its name: adding one there is
# all the Python side of a new PL/Python function needs (docs/architecture.md).
# (types.FunctionType rather than inspect.isfunction: importing inspect costs every backend's
# cold start 28 ms.)
FUNCTIONS: dict[str, Callable[..., Any]] = {
    name: value
    for name, value in vars(api).items()
    if not name.startswith("_")
    and isinstance(value, types.FunctionType)
    and value.__module__ == api.__name__
}


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
        return FUNCTIONS[name](plpy, gd, *args)
    except MemexDbError as exc:
        details = {"hint": exc.hint} if exc.hint else {}
        plpy.error(exc.message, sqlstate=exc.sqlstate, **details)
    # Input that exhausts Python itself gets PostgreSQL's SQLSTATE for it, not 38000 with a
    # traceback (tests/db/test_fuzz.py).
    except RecursionError:
        plpy.error(f"memex.{name}: input nested too deeply", sqlstate="54001")
    except MemoryError:
        plpy.error(f"memex.{name}: out of memory for this input", sqlstate="53200")
