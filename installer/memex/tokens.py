"""`memex token create|list|revoke`: the API tokens of the MCP server over HTTP. A token is
shown once, when it is created: the database keeps its sha256 only."""

from __future__ import annotations

import json
import re

from psycopg.rows import dict_row

from memex.dsn import connect
from memex.errors import MemexError

_SHORT = re.compile(r"^(?P<n>[0-9]+)\s*(?P<unit>[smhdw])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
LIST = """
select a.id::text, t.name as tenant, a.label, a.created_at, a.expires_at, a.revoked_at,
       case when a.revoked_at is not null then 'revoked'
            when a.expires_at <= now() then 'expired' else 'live' end as state
  from memex.api_tokens as a join memex.tenants as t on t.id = a.tenant_id
 order by a.created_at, a.id
"""


def interval(text: str | None) -> str | None:
    """`30d`, `12h`, ... as a PostgreSQL interval; anything else is passed on as one."""
    if text is None:
        return None
    found = _SHORT.match(text.strip())
    return f"{found['n']} {_UNITS[found['unit']]}" if found else text


def create(dsn: str, tenant: str, expires: str | None, label: str | None) -> int:
    with connect(dsn) as conn:
        row = conn.execute(
            "select id::text, token from memex.create_api_token(%s, %s::interval, %s)",
            (tenant, interval(expires), label),
        ).fetchone()
    if row is None:
        raise MemexError("no token was created")
    print(row[1])
    print(f"token {row[0]} for tenant {tenant!r}: keep it now, it is not shown again",
          flush=True)  # fmt: skip
    return 0


def listing(dsn: str, as_json: bool) -> int:
    from memex.status import table

    with connect(dsn) as conn:
        rows = conn.cursor(row_factory=dict_row).execute(LIST).fetchall()
    if as_json:
        print(json.dumps(rows, indent=2, default=str))
    elif rows:
        print(table(rows, ["id", "tenant", "label", "state", "created_at", "expires_at"]))
    else:
        print("no token")
    return 0


def revoke(dsn: str, token_id: str) -> int:
    with connect(dsn) as conn:
        row = conn.execute("select memex.revoke_api_token(%s::uuid)", (token_id,)).fetchone()
    if not row or not row[0]:
        raise MemexError(f"no live token {token_id} (memex token list shows them)")
    print(f"token {token_id} revoked")
    return 0
