"""The single door from SQL into memex_db.

Every PL/Python wrapper calls `call(plpy, GD, version, name, *args)`. It checks that this
backend imported the memex_db version the SQL was installed with, runs the function, and turns
memex errors into PostgreSQL errors with their SQLSTATE and hint.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from memex_db import __version__, api
from memex_db.errors import MemexDbError, VersionMismatch
from memex_db.plpy_types import GD

FUNCTIONS: dict[str, Callable[..., Any]] = {
    "embed": api.embed,
    "embed_batch": api.embed_batch,
    "model_info": api.model_info,
    "model_hash": api.model_hash,
    "measure_rate": api.measure_rate,
    "chunk_text": api.chunk_text,
    "count_tokens": api.count_tokens,
    "text_candidates": api.text_candidates,
    "check_messages": api.check_messages,
    "check_artefact": api.check_artefact,
    "python_check": api.python_check,
    "status": api.status,
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
