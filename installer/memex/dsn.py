"""Which database a command talks to: --dsn, else MEMEX_DSN, else the dev cluster."""

from __future__ import annotations

import os
from typing import Any
from urllib.parse import urlencode

import psycopg
from psycopg.conninfo import conninfo_to_dict

from memex.devcluster import cluster
from memex.errors import SystemFailure


def resolve_dsn(explicit: str | None) -> str:
    if explicit:
        return explicit
    env = os.environ.get("MEMEX_DSN")
    if env:
        return env
    return cluster("dev").dsn()


def yoyo_uri(dsn: str, schema: str = "memex") -> str:
    """A yoyo URI for any libpq DSN.

    yoyo needs postgresql+psycopg:// (plain postgresql:// means psycopg2) and parses the host with
    urlsplit, which mangles socket directories; its query arguments go to psycopg.connect as they
    are, so every connection parameter travels there. `schema` puts yoyo's tables in memex.
    """
    params = {k: str(v) for k, v in conninfo_to_dict(dsn).items() if v is not None}
    params["schema"] = schema
    return "postgresql+psycopg:///?" + urlencode(params)


def connect(dsn: str, autocommit: bool = True) -> psycopg.Connection[tuple[Any, ...]]:
    """Connect, turning a connection failure into an actionable MemexError."""
    try:
        return psycopg.connect(dsn, autocommit=autocommit)
    except psycopg.OperationalError as exc:
        raise SystemFailure(
            f"cannot connect to the database: {str(exc).strip()}\n"
            "hint: start the dev cluster with `memex dev up`, or pass --dsn / set MEMEX_DSN"
        ) from exc
