"""The CLI's tenant argument: checked before any work, with the nearest names when unknown."""

from __future__ import annotations

import difflib
from typing import Any

import psycopg

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
        names = [str(r[0]) for r in conn.execute("select name from memex.tenants order by name")]
    close = difflib.get_close_matches(tenant, names, n=3, cutoff=0.6)
    message = f"unknown tenant {tenant!r}"
    if close:
        message += f" (did you mean {' or '.join(repr(c) for c in close)}?)"
    message += f": create it with `select memex.create_tenant('{tenant}')` as memex_admin"
    if create_flag:
        message += f", or pass {create_flag}"
    raise MemexError(message)
