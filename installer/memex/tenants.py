"""Tenants from the command line: the --tenant argument, checked before any work with the
nearest names when unknown, and `memex tenant list|create|delete`."""

from __future__ import annotations

import json
import sys
from typing import Any

import psycopg
from psycopg.rows import dict_row

from memex.client import queries
from memex.dsn import connect
from memex.errors import MemexError


def check_tenant(
    conn: psycopg.Connection[Any], tenant: str, create_flag: str | None = None
) -> None:
    """Fails with a message that suggests the nearest tenant names the connected role can see
    (all of them for an administrator, none for memex_app: nothing leaks) when `tenant` is no
    tenant's name or id."""
    try:
        with conn.transaction():
            conn.execute("select memex.set_tenant(%s)", (tenant,))
        return
    except psycopg.errors.NoDataFound:
        pass
    with conn.transaction():
        names = [str(r[0]) for r in conn.execute(queries.TENANT_NAMES)]
    error = queries.tenant_not_found(tenant, names)
    message = error.message + (f": {error.hint}" if error.hint else "")
    if error.hint and create_flag:
        message += f", or pass {create_flag}"
    raise MemexError(message)


def list_tenants(dsn: str, as_json: bool) -> int:
    from memex.status import TENANT_COLUMNS, table

    with connect(dsn) as conn, conn.transaction():
        rows = (
            conn.cursor(row_factory=dict_row)
            .execute("select * from memex.tenant_status()")
            .fetchall()
        )
    if as_json:
        print(json.dumps(rows, indent=2, default=str))
    elif rows:
        print(table(rows, [*TENANT_COLUMNS, "created_at"]))
    else:
        print("no tenant visible to this role (memex_admin lists them all)")
    return 0


def create_tenant(dsn: str, name: str) -> int:
    """memex.create_tenant, idempotent by name: says whether it created the tenant."""
    with connect(dsn) as conn:
        found = conn.execute("select id from memex.tenants where name = %s", (name,)).fetchone()
        row = found or conn.execute("select memex.create_tenant(%s)", (name,)).fetchone()
    state = "exists" if found else "created"
    print(f"tenant {name!r} {state}: {row[0] if row else '?'}")
    return 0


def delete_tenant(dsn: str, name: str, confirm: str | None) -> int:
    """CALL memex.delete_tenant with its own confirmation: the tenant's name, repeated (typed at
    a prompt on a terminal, or --confirm NAME)."""
    if confirm is None:
        if not sys.stdin.isatty():
            raise MemexError(f"deleting tenant {name!r} removes everything it holds: repeat its "
                             f"name to confirm (--confirm {name})")  # fmt: skip
        confirm = input(f"Delete tenant {name!r} and everything it holds? Type its name: ")
    with connect(dsn) as conn:

        def on_notice(diag: psycopg.errors.Diagnostic) -> None:
            if diag.message_primary:
                print(diag.message_primary, file=sys.stderr)

        conn.add_notice_handler(on_notice)
        conn.execute("call memex.delete_tenant(%s, confirm => %s)", (name, confirm))
    return 0
