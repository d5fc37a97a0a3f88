"""What the benchmarks share: a scratch database made afresh, and a percentile."""

from __future__ import annotations

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo


def scratch_database(dsn: str, name: str, reuse: bool = False) -> str:
    """The DSN of database `name` beside `dsn`'s: dropped and created again, or kept when it
    exists and `reuse` is asked for."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        exists = conn.execute("select 1 from pg_database where datname = %s", (name,)).fetchone()
        if not (reuse and exists):
            conn.execute(sql.SQL("drop database if exists {} with (force)").format(
                sql.Identifier(name)))  # fmt: skip
            conn.execute(sql.SQL("create database {}").format(sql.Identifier(name)))
    params = {k: v for k, v in conninfo_to_dict(dsn).items() if v is not None}
    return make_conninfo(**{**params, "dbname": name})


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]
