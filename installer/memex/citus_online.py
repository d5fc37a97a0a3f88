"""memex's tables moved while applications keep writing (docs/scale.md, "Citus"): `memex
citus distribute --online` on a database that holds rows, and `memex citus rebalance`.

Distributing online:

Each step commits on its own and says how far it is; a run that was interrupted resumes where
it stopped when run again. In order:
1. the foreign keys are saved in a coordinator table and dropped (Citus converts tables of
   different kinds one at a time, and refuses keys between them meanwhile);
2. the shared tables become reference tables (they are small: a short lock each);
3. every tenant table becomes a Citus local table (no copy): memex's statements join tenant
   tables, and Citus joins a distributed table with a Citus local one, never with a table
   outside its metadata;
4. each tenant table is distributed with create_distributed_table_concurrently, which copies
   it by logical replication (wal_level = logical) without blocking writes;
5. the keys come back NOT VALID, the rows whose parent was deleted while they were away get
   what the key's ON DELETE would have done, and the keys are validated.
Every DDL here waits at most a moment for its locks and is retried: a writer in the middle of
a transaction over several tables never deadlocks with it."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from typing import cast

import psycopg
from psycopg import sql

from memex.citus import REFERENCE_TABLES, TENANT_TABLES, check_cluster, is_distributed
from memex.errors import MemexError

Connection = psycopg.Connection[tuple[object, ...]]
Say = Callable[[str], None]
Statement = sql.Composed | sql.SQL
# On the coordinator while a run is under way; memex._check_search_args refuses searches
# while it exists (Citus's planner crashes on them with some tables distributed, others not).
SAVED_KEYS = "memex.citus_saved_foreign_keys"


def distribute_online(dsn: str, say: Say) -> bool:
    """Distributes memex's tables without blocking writes; False when they already are."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        check_cluster(conn)
        saved = conn.execute("select to_regclass(%s)", (SAVED_KEYS,)).fetchone()
        if is_distributed(conn) and saved == (None,):
            say("memex's tables are already distributed")
            return False
        _require_logical(
            conn, "an online distribution", "or distribute without --online (writes to each "
            "table wait while it is copied)")  # fmt: skip
        # Citus reaches the workers as the table owner while it moves a table, and as
        # memex_owner for the SECURITY DEFINER functions: it must be able to log in there
        conn.execute("alter role memex_owner login")
        if saved == (None,):
            _save_and_drop_keys(conn, say)
        _move_tables(conn, say)
        # each moved table's copy on the coordinator: Citus drops it later, or now
        conn.execute("call citus_cleanup_orphaned_resources()")
        _restore_keys(conn, say)
        conn.execute(sql.SQL("drop table {}").format(sql.SQL(SAVED_KEYS)))
        say(
            f"distributed online: {len(TENANT_TABLES)} tenant tables colocated by tenant_id, "
            f"{len(REFERENCE_TABLES)} reference tables, foreign keys validated"
        )
    return True


def rebalance(dsn: str, say: Say) -> int:
    """Citus's rebalancer, moving shard groups by logical replication while writes go on;
    the number of moves (0: balanced already)."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        check_cluster(conn)
        if not is_distributed(conn):
            raise MemexError("memex is not distributed here.\nFix: memex citus distribute first")
        _require_logical(
            conn, "a rebalance", "or Citus's rebalance_table_shards with shard_transfer_mode "
            "=> 'block_writes' (writes wait while it copies)")  # fmt: skip
        planned = conn.execute("select count(*) from get_rebalance_table_shards_plan()").fetchone()
        moves = int(str(planned[0])) if planned else 0
        if moves == 0:
            say("the shards are balanced already: nothing to move")
            return 0
        say(f"{moves} shard groups to move, each without blocking writes")
        done = threading.Event()
        watcher = threading.Thread(target=_say_progress, args=(dsn, moves, done, say))
        try:
            # as while distributing (_move_tables): the writes made during a move are
            # replicated as a role with the owner's rights, which FORCE would refuse
            for table in TENANT_TABLES:
                _unforce_row_security(conn, f"memex.{table}", say)
            watcher.start()
            conn.execute("select rebalance_table_shards(shard_transfer_mode => 'force_logical')")
        finally:
            done.set()
            if watcher.is_alive():
                watcher.join()
            _force_row_security(conn, say)
            conn.execute("call citus_cleanup_orphaned_resources()")
        say(f"rebalanced: {moves} shard groups moved, row-level security forced again")
        return moves


def _say_progress(dsn: str, moves: int, done: threading.Event, say: Say) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        while not done.wait(5):
            row = conn.execute(
                "select count(distinct shardid) filter (where progress = 2)"
                " from get_rebalance_progress()"
            ).fetchone()
            say(f"moving: {row[0] if row else 0} shards of the {moves} groups' tables done")


def _require_logical(conn: Connection, what: str, otherwise: str) -> None:
    level = conn.execute("show wal_level").fetchone()
    if level is None or level[0] != "logical":
        raise MemexError(
            f"{what} copies tables by logical replication, and wal_level is "
            f"{level[0] if level else 'unknown'} here.\n"
            f"Fix: wal_level = logical on every node (a restart), {otherwise}"
        )


def _briefly(conn: Connection, tables: Sequence[str], statements: Sequence[Statement],
             say: Say) -> None:  # fmt: skip
    """Runs `statements` in one transaction that first takes `tables` whole, without waiting
    more than a moment, and is retried for up to a minute. Taken whole up front: a DDL that
    held a weaker lock and asked for a stronger one later (Citus does, on its workers' behalf)
    would deadlock with a writer that holds a row lock and asks for a write lock. lock_timeout
    is under deadlock_timeout, so this gives up before a writer's wait can form a cycle."""
    what = ", ".join(tables) or "the tables"
    lock = sql.SQL("lock table {} in access exclusive mode").format(
        sql.SQL(", ").join(sql.SQL(t) for t in tables)
    )
    for attempt in range(1, 601):
        try:
            with conn.transaction():
                conn.execute("set local citus.propagate_set_commands = 'local'")
                conn.execute("set local lock_timeout = '100ms'")
                if tables:
                    conn.execute(lock)
                for statement in statements:
                    conn.execute(statement)
            return
        except (psycopg.errors.LockNotAvailable, psycopg.errors.DeadlockDetected):
            if attempt % 50 == 0:
                say(f"{what}: waiting for a moment when no transaction holds them ({attempt})")
            time.sleep(0.1)
    raise MemexError(
        f"{what}: never free for a moment in a minute; a long transaction holds one of them."
        "\nFix: end it (pg_stat_activity), then run this again: it resumes"
    )


def _save_and_drop_keys(conn: Connection, say: Say) -> None:
    keys = conn.execute(
        "select conrelid::regclass::text, conname from pg_constraint"
        " where contype = 'f' and connamespace = 'memex'::regnamespace order by 1, 2"
    ).fetchall()
    statements: list[Statement] = [
        sql.SQL("create table {} (relation text, name text, definition text, parent text)").format(
            sql.SQL(SAVED_KEYS)
        ),
        sql.SQL(
            "insert into {} select conrelid::regclass::text, conname, pg_get_constraintdef(oid),"
            " confrelid::regclass::text from pg_constraint"
            " where contype = 'f' and connamespace = 'memex'::regnamespace"
        ).format(sql.SQL(SAVED_KEYS)),
    ]
    statements += [
        sql.SQL("alter table {} drop constraint {}").format(
            sql.SQL(str(table)), sql.Identifier(str(name))
        )
        for table, name in keys
    ]
    tables = [f"memex.{t}" for t in (*REFERENCE_TABLES, *TENANT_TABLES)]
    _briefly(conn, tables, statements, say)
    say(f"{len(keys)} foreign keys saved and dropped (they come back at the end)")


def _citus_kinds(conn: Connection) -> dict[str, str]:
    """memex's tables Citus knows, each 'distributed', 'reference' or 'local' (a Citus local
    table: in its metadata, on the coordinator)."""
    return {
        str(name): str(kind)
        for name, kind in conn.execute(
            "select logicalrelid::regclass::text, case when partmethod = 'h' then 'distributed'"
            " when repmodel = 't' then 'reference' else 'local' end from pg_dist_partition"
            " where logicalrelid::regclass::text like 'memex.%'"
        )
    }


def _move_tables(conn: Connection, say: Say) -> None:
    """Each table in turn; those already moved are skipped. A tenant table's RLS is not forced
    while it is copied: Citus applies the writes made meanwhile as a role with its owner's
    rights, and PostgreSQL 15 refuses to replicate into a table whose RLS applies to that
    role. The definer functions that run as the owner bind their tenant anyway, and FORCE is
    back as soon as the table has moved."""
    kinds = _citus_kinds(conn)
    steps = len(REFERENCE_TABLES) + len(TENANT_TABLES)
    anchor = f"memex.{TENANT_TABLES[0]}"
    for n, table in enumerate((*REFERENCE_TABLES, *TENANT_TABLES), 1):
        name = f"memex.{table}"
        if kinds.get(name) in ("distributed", "reference"):
            say(f"[{n}/{steps}] {name}: done already")
            continue
        if n == len(REFERENCE_TABLES) + 1:
            _tenant_tables_into_metadata(conn, kinds, say)
        count = conn.execute(sql.SQL("select count(*) from {}").format(sql.SQL(name))).fetchone()
        started = time.monotonic()
        if table in REFERENCE_TABLES:
            call = sql.SQL("select create_reference_table({})").format(sql.Literal(name))
            _briefly(conn, [name], [call], say)
            kind = "reference table"
        else:
            try:
                _unforce_row_security(conn, name, say)
                conn.execute(
                    "select create_distributed_table_concurrently(%s, 'tenant_id',"
                    " colocate_with => %s)",
                    (name, "default" if name == anchor else anchor),
                )
            finally:
                _force_row_security(conn, say)
            kind = "distributed by tenant_id, writes never blocked"
        say(f"[{n}/{steps}] {name}: {kind}, {count[0] if count else 0} rows, "
            f"{time.monotonic() - started:.1f} s")  # fmt: skip


_SEQUENCE_COLUMNS = """
select c.oid::regclass::text, a.attname::text from pg_attribute as a
  join pg_class as c on c.oid = a.attrelid
 where c.oid::regclass::text = any(%s) and a.attnum > 0 and not a.attisdropped
   and pg_get_serial_sequence(c.oid::regclass::text, a.attname) is not null
"""


def _tenant_tables_into_metadata(conn: Connection, kinds: dict[str, str], say: Say) -> None:
    """Citus recreates the sequence of an identity or serial column when the table joins its
    metadata, starting again at 1: each is set past the column's largest value in the same
    transaction, or new rows collide with old ones (23505, seen on text_segments)."""
    names = [f"memex.{t}" for t in TENANT_TABLES if f"memex.{t}" not in kinds]
    if names:
        add = sql.SQL("select citus_add_local_table_to_metadata({})")
        statements = [add.format(sql.Literal(n)) for n in names]
        for table, column in conn.execute(_SEQUENCE_COLUMNS, (names,)).fetchall():
            statements.append(sql.SQL(
                "select setval(pg_get_serial_sequence({t}, {c}),"
                " coalesce((select max({col}) from {table}), 0) + 1, false)"
            ).format(t=sql.Literal(table), c=sql.Literal(column), col=sql.Identifier(str(column)),
                     table=sql.SQL(str(table))))  # fmt: skip
        _briefly(conn, names, statements, say)
        say(f"{len(names)} tenant tables in Citus's metadata, on the coordinator until moved")


def _unforce_row_security(conn: Connection, table: str, say: Say) -> None:
    """FORCE lifted from `table` while Citus copies it (_move_tables says why)."""
    unforce = sql.SQL("alter table {} no force row level security").format(sql.SQL(table))
    _briefly(conn, [table], [unforce], say)


def _force_row_security(conn: Connection, say: Say) -> None:
    """memex forces RLS wherever it enables it (test_tenancy): back on each of its tables
    (Citus carries it to their shards; the shards' own settings are Citus's)."""
    for (name,) in conn.execute(
        "select oid::regclass::text from pg_class where oid::regclass::text = any(%s)"
        " and relrowsecurity and not relforcerowsecurity",
        ([f"memex.{t}" for t in TENANT_TABLES],),
    ).fetchall():
        force = sql.SQL("alter table {} force row level security").format(sql.SQL(str(name)))
        _briefly(conn, [str(name)], [force], say)


def _restore_keys(conn: Connection, say: Say) -> None:
    keys = conn.execute(
        sql.SQL("select relation, name, definition, parent from {} order by 1, 2").format(
            sql.SQL(SAVED_KEYS)
        )
    ).fetchall()
    for table, name, definition, parent in keys:
        present = conn.execute(
            "select 1 from pg_constraint where conrelid = %s::regclass and conname = %s",
            (table, name),
        ).fetchone()
        if present is None:
            add = sql.SQL("alter table {} add constraint {} {} not valid").format(
                sql.SQL(str(table)), sql.Identifier(str(name)), sql.SQL(str(definition))
            )
            _briefly(conn, [str(table), str(parent)], [add], say)
    _finish_delete_actions(conn, say)
    for table, name, _definition, _parent in keys:
        validate = sql.SQL("alter table {} validate constraint {}").format(
            sql.SQL(str(table)), sql.Identifier(str(name))
        )
        _briefly(conn, [], [validate], say)  # its locks let writes through: taken as needed
    say(f"{len(keys)} foreign keys back and validated")


_UNVALIDATED_KEYS = """
select c.conrelid::regclass::text, c.confrelid::regclass::text, c.confdeltype::text
     , array(select a.attname::text from unnest(c.conkey) with ordinality as k (n, i)
               join pg_attribute as a on a.attrelid = c.conrelid and a.attnum = k.n order by k.i)
     , array(select a.attname::text from unnest(c.confkey) with ordinality as k (n, i)
               join pg_attribute as a on a.attrelid = c.confrelid and a.attnum = k.n order by k.i)
     , array(select a.attname::text from unnest(c.confdelsetcols) as k (n)
               join pg_attribute as a on a.attrelid = c.conrelid and a.attnum = k.n)
  from pg_constraint as c
 where c.contype = 'f' and c.connamespace = 'memex'::regnamespace and not c.convalidated
"""


def _finish_delete_actions(conn: Connection, say: Say) -> None:
    """A parent deleted while its keys were away left its children behind: they get what the
    key's ON DELETE would have done (the keys are back, NOT VALID, so nothing new is left
    behind, and a cascade from here goes on down), until no row is left to fix."""
    fixed = 0
    for _round in range(len(TENANT_TABLES) + 1):
        changed = 0
        for row in conn.execute(_UNVALIDATED_KEYS).fetchall():
            child, parent, action = str(row[0]), str(row[1]), str(row[2])
            columns, parent_columns, set_null = (cast(list[str], v) for v in row[3:])
            match = sql.SQL(" and ").join(
                sql.SQL("p.{} = c.{}").format(sql.Identifier(p), sql.Identifier(c))
                for c, p in zip(columns, parent_columns, strict=True)
            )
            present = sql.SQL(" and ").join(
                sql.SQL("c.{} is not null").format(sql.Identifier(c)) for c in columns
            )
            orphan = sql.SQL("{} and not exists (select from {} as p where {})").format(
                present, sql.SQL(parent), match
            )
            if action == "c":
                statement = sql.SQL("delete from {} as c where {}").format(sql.SQL(child), orphan)
            elif action == "n":
                nulls = sql.SQL(", ").join(
                    sql.SQL("{} = null").format(sql.Identifier(c)) for c in (set_null or columns)
                )
                statement = sql.SQL("update {} as c set {} where {}").format(
                    sql.SQL(child), nulls, orphan
                )
            else:
                continue  # no action: VALIDATE names the row that breaks it
            changed += conn.execute(statement).rowcount
        fixed += changed
        if changed == 0:
            break
    if fixed:
        say(f"{fixed} rows whose parent was deleted during the move: cascaded as their keys say")
