"""memex distributed by tenant on Citus (docs/scale.md, "Citus"): `memex install --citus` and
`memex citus distribute`, on a Citus coordinator with its workers added.

The shared tables become reference tables (a copy on every node) and the tenant tables are
distributed by tenant_id in one colocation group, so a tenant's rows of every table live on
the same node. Citus refuses a foreign key between tables of different kinds while they are
converted one by one, so memex's foreign keys are dropped, the tables converted (parents
first) and the keys added back, all in one transaction: it succeeds whole or changes nothing.
Installer bookkeeping (migrations, sql/ state, worker heartbeats) stays on the coordinator.

On a database that already holds rows and takes writes, `online=True` does it step by step
without blocking them (memex.citus_online)."""

from __future__ import annotations

from collections.abc import Callable

import psycopg
from psycopg import sql

from memex.errors import MemexError

# Shared tables that tenant tables (or one another) reference: a copy on every node.
REFERENCE_TABLES = (
    "tenants",
    "providers",
    "spaces",
    "endpoints",
    "limits",
    "reembeds",
    "api_tokens",
)
# The tenant tables (memex._tenant_tables()), parents before children; the first anchors the
# colocation group.
TENANT_TABLES = (
    "users",
    "folders",
    "conversations",
    "documents",
    "messages",
    "summaries",
    "chunks",
    "embeddings",
    "embedding_failures",
    "text_postings",
    "text_segments",
)


def check_cluster(conn: psycopg.Connection[tuple[object, ...]]) -> None:
    if conn.execute("select 1 from pg_extension where extname = 'citus'").fetchone() is None:
        raise MemexError(
            "this database has no citus extension: memex is distributed on a Citus coordinator.\n"
            "Fix: shared_preload_libraries = 'citus' on every node, `create extension citus` in "
            'this database, then citus_add_node for each worker (docs/scale.md, "Citus")'
        )
    workers = conn.execute(
        "select count(*) from pg_dist_node where noderole = 'primary' and groupid <> 0"
    ).fetchone()
    if workers is None or workers[0] == 0:
        raise MemexError(
            "this Citus coordinator has no worker.\n"
            "Fix: select citus_add_node('host', port) for each worker first"
        )
    tables = {str(r[0]) for r in conn.execute("select unnest(memex._tenant_tables())")}
    if tables != set(TENANT_TABLES):
        raise MemexError(
            f"memex's tenant tables are {sorted(tables)}, this installer distributes "
            f"{sorted(TENANT_TABLES)}: install the matching release"
        )


def is_distributed(conn: psycopg.Connection[tuple[object, ...]]) -> bool:
    return (
        conn.execute("select 1 from pg_extension where extname = 'citus'").fetchone() is not None
        and conn.execute(
            "select 1 from pg_dist_partition where logicalrelid = 'memex.chunks'::regclass"
            " and partmethod = 'h'"
        ).fetchone()
        is not None
    )


def distribute(dsn: str, say: Callable[[str], None], online: bool = False) -> bool:
    """Distributes memex's tables; False when they already are (nothing done). `online`:
    for a database that holds rows, without blocking writes while they are copied."""
    if online:
        from memex.citus_online import distribute_online

        return distribute_online(dsn, say)
    with psycopg.connect(dsn) as conn:
        check_cluster(conn)
        if is_distributed(conn):
            say("memex's tables are already distributed")
            return False
        # one connection per node: foreign keys to reference tables are added in this
        # transaction, after distributed tables were written (Citus's own advice)
        conn.execute("set local citus.multi_shard_modify_mode to 'sequential'")
        keys = conn.execute(
            "select conrelid::regclass::text, conname, pg_get_constraintdef(oid)"
            " from pg_constraint where contype = 'f' and connamespace = 'memex'::regnamespace"
            " order by conrelid::regclass::text, conname"
        ).fetchall()
        for table, name, _definition in keys:
            conn.execute(
                sql.SQL("alter table {} drop constraint {}").format(
                    sql.SQL(str(table)), sql.Identifier(str(name))
                )
            )
        steps = len(REFERENCE_TABLES) + len(TENANT_TABLES)
        for n, table in enumerate(REFERENCE_TABLES, 1):
            say(f"[{n}/{steps}] memex.{table}: reference table")
            conn.execute("select create_reference_table(%s)", (f"memex.{table}",))
        anchor = f"memex.{TENANT_TABLES[0]}"
        for n, table in enumerate(TENANT_TABLES, len(REFERENCE_TABLES) + 1):
            say(f"[{n}/{steps}] memex.{table}: distributed by tenant_id")
            conn.execute(
                "select create_distributed_table(%s, 'tenant_id', colocate_with => %s)",
                (f"memex.{table}", "default" if table == TENANT_TABLES[0] else anchor),
            )
        # Citus reaches the workers as the current role: memex's SECURITY DEFINER functions
        # (a space's index, set_tenant) run as memex_owner, which must be able to log in there.
        conn.execute("alter role memex_owner login")
        for table, name, definition in keys:
            conn.execute(
                sql.SQL("alter table {} add constraint {} {}").format(
                    sql.SQL(str(table)), sql.Identifier(str(name)), sql.SQL(str(definition))
                )
            )
        say(
            f"distributed: {len(TENANT_TABLES)} tenant tables colocated by tenant_id, "
            f"{len(REFERENCE_TABLES)} reference tables, {len(keys)} foreign keys restored"
        )
    return True
