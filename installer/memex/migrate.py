"""Applying memex's two kinds of SQL.

migrations/  incremental, applied exactly once each by yoyo (tables, types, indexes, backfills);
             released files are frozen by hash (migrations/RELEASED).
sql/         idempotent objects (functions, views, policies, grants, comments), applied by this
             module after the migrations: every file when a migration ran or the definitions
             drifted from what the last install left, else only the files that changed
             (memex.sql_state), under lock_timeout with retries (docs/install.md).
"""

from __future__ import annotations

import hashlib
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import psycopg
from yoyo import get_backend, read_migrations

from memex import __version__, code_files
from memex.dsn import yoyo_uri
from memex.errors import MemexError
from memex.paths import migrations_dir, sql_dir
from memex.stop_points import stop_point

MIGRATION_NAME = re.compile(r"^(\d{4})_[a-z0-9]+(?:_[a-z0-9]+)*(\.rollback)?\.sql$")
SQL_NAME = re.compile(r"^(\d{3})-[a-z0-9]+(?:-[a-z0-9]+)*\.sql$")
RELEASED_MANIFEST = "RELEASED"
VECTOR_SCHEMA_TOKEN = "__vector_schema__"
VERSION_TOKEN = "@memex_version@"
CODE_FILE_TOKEN = "@code_file_pattern@"


def migration_files() -> list[Path]:
    return sorted(p for p in migrations_dir().glob("*.sql"))


def sql_files() -> list[Path]:
    return sorted(p for p in sql_dir().glob("*.sql"))


def file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def released_hashes() -> dict[str, str]:
    manifest = migrations_dir() / RELEASED_MANIFEST
    entries: dict[str, str] = {}
    if manifest.exists():
        for line in manifest.read_text().splitlines():
            if line.strip() and not line.startswith("#"):
                digest, name = line.split()
                entries[name] = digest
    return entries


def pending_migrations(dsn: str) -> list[str]:
    backend = get_backend(yoyo_uri(dsn))
    try:
        return [m.id for m in backend.to_apply(read_migrations(str(migrations_dir())))]
    finally:
        backend.connection.close()


def apply_migrations(dsn: str) -> list[str]:
    """Apply pending migrations; return the ids applied. Call it only under memex install's
    advisory lock (install.INSTALL_LOCK_KEY), which makes two things safe after a killed
    installer (docs/install.md, "A killed installer"):
      - yoyo's lock is a committed row: any row found while memex holds its advisory lock was
        left by an installer that died, so it is broken instead of blocking for 10 minutes;
      - yoyo records a migration in a transaction of its own after applying it, so a kill in
        between leaves it applied but unrecorded (the next run fails re-applying it): here each
        migration and its record commit in one transaction.
    """
    backend = get_backend(yoyo_uri(dsn))
    try:
        backend.break_lock()
        with backend.lock(timeout=600):
            stop_point("migrations locked")
            pending = backend.to_apply(read_migrations(str(migrations_dir())))
            backend.ensure_internal_schema_updated()
            for migration in pending:
                with backend.transaction():
                    migration.process_steps(backend, "apply")
                    stop_point(f"migration {migration.id}")
                    # A migration may set search_path for its transaction; yoyo's own tables
                    # are found through the schema yoyo set on the connection.
                    backend.init_connection(backend.connection)
                    backend.mark_one(migration, log=False)
                backend.log_migration(migration, "apply")
                stop_point(f"migration {migration.id} recorded")
            return [m.id for m in pending]
    finally:
        backend.connection.close()


# The PL/Python bridge, written once: a body `@memex_db module:function(arg, ...)@` becomes the
# call of memex_db.<module>.<function>(plpy, GD, arg, ...) through memex_db.entry, which checks
# the version the SQL was installed with (docs/architecture.md, "The PL/Python bridge").
BRIDGE = re.compile(r"^@memex_db (?P<target>[a-z_]+:[a-z_]+)\((?P<args>[a-z0-9_, ]*)\)@$", re.M)
BRIDGE_BODY = """if "memex_db" not in GD:
    plpy.execute("select memex._python_init()")
return GD["memex_db"].entry.call(plpy, GD, "{version}", "{target}"{args})"""


def _bridge(found: re.Match[str]) -> str:
    args = "".join(f", {arg.strip()}" for arg in found["args"].split(",") if arg.strip())
    return BRIDGE_BODY.format(version=VERSION_TOKEN, target=found["target"], args=args)


def render_sql(text: str, vector_schema: str) -> str:
    quoted = psycopg.sql.Identifier(vector_schema).as_string(None)
    text = BRIDGE.sub(_bridge, text).replace(CODE_FILE_TOKEN, code_files.uri_pattern())
    if "@memex_db" in text:  # a marker the pattern did not take would install as Python text
        line = next(x for x in text.splitlines() if "@memex_db" in x)
        raise MemexError(f"a PL/Python bridge marker is malformed: {line.strip()!r}")
    return text.replace(VERSION_TOKEN, __version__).replace(VECTOR_SCHEMA_TOKEN, quoted)


# Live databases: DDL on a tenant table (policies, triggers) waits for every transaction that
# touched it, and everything after it queues behind the DDL. So each try gives up after
# lock_timeout, rolls back and tries again a little later; the last failure names who holds
# the locks. MEMEX_INSTALL_LOCK_TIMEOUT (a PostgreSQL interval) tunes it.
LOCK_TIMEOUT_ENV = "MEMEX_INSTALL_LOCK_TIMEOUT"
LOCK_TIMEOUT_DEFAULT = "5s"
LOCK_TRIES = 4
# Re-applied whenever any file is: new functions are executable by PUBLIC until it runs.
ALWAYS_WITH_OTHERS = "900-grants.sql"


@dataclass
class SqlApplied:
    applied: list[str]
    skipped: list[str]


def _rendered(vector_schema: str) -> dict[str, str]:
    return {p.name: render_sql(p.read_text(), vector_schema) for p in sql_files()}


def _recorded(conn: psycopg.Connection[tuple[object, ...]]) -> tuple[dict[str, str], str | None]:
    """(digest of each file as last applied, fingerprint recorded after that install)."""
    if conn.execute("select to_regclass('memex.sql_state')").fetchone() == (None,):
        return {}, None
    digests = {str(f): str(d) for f, d in conn.execute("select file, digest from memex.sql_state")}
    row = conn.execute("select fingerprint from memex.install_fingerprint").fetchone()
    return digests, (str(row[0]) if row else None)


def apply_sql_dir(
    conn: psycopg.Connection[tuple[object, ...]],
    vector_schema: str,
    fingerprint_now: str,
    everything: bool = False,
    say: Callable[[str], None] = print,
) -> SqlApplied:
    """Apply sql/ in one transaction: every file when `everything` (a migration ran) or when
    memex's definitions are not as the last install left them (`fingerprint_now` differs from
    the one it recorded: someone changed them by hand); otherwise only the files whose text
    changed, plus the grants. Returns what was applied and skipped."""
    rendered = _rendered(vector_schema)
    digests = {name: hashlib.sha256(text.encode()).hexdigest() for name, text in rendered.items()}
    recorded, fingerprint_then = _recorded(conn)
    if everything or fingerprint_then is None or fingerprint_then != fingerprint_now:
        todo = list(rendered)
    else:
        todo = [name for name in rendered if recorded.get(name) != digests[name]]
        if todo and ALWAYS_WITH_OTHERS in rendered and ALWAYS_WITH_OTHERS not in todo:
            todo.append(ALWAYS_WITH_OTHERS)
    todo.sort()
    if todo:
        _apply_with_lock_timeout(conn, [(name, rendered[name]) for name in todo], say)
    with conn.transaction():
        for name, digest in digests.items():
            conn.execute(
                "insert into memex.sql_state (file, digest) values (%s, %s) on conflict (file) do "
                "update set digest = excluded.digest, applied_at = now() "
                "where memex.sql_state.digest <> excluded.digest",
                (name, digest),
            )
        conn.execute("delete from memex.sql_state where file <> all(%s)", (list(digests),))
    stop_point("sql recorded")
    return SqlApplied(applied=todo, skipped=[n for n in rendered if n not in todo])


def _apply_with_lock_timeout(
    conn: psycopg.Connection[tuple[object, ...]],
    files: list[tuple[str, str]],
    say: Callable[[str], None],
) -> None:
    timeout = os.environ.get(LOCK_TIMEOUT_ENV) or LOCK_TIMEOUT_DEFAULT
    for attempt in range(1, LOCK_TRIES + 1):
        try:
            with conn.transaction():
                conn.execute("select set_config('lock_timeout', %s, true)", (timeout,))
                for name, text in files:
                    try:
                        conn.execute(text.encode())
                        stop_point(f"sql {name}")
                    except psycopg.errors.LockNotAvailable:
                        raise
                    except psycopg.Error as exc:
                        raise psycopg.Error(f"{name}: {exc}") from exc
            return
        except psycopg.errors.LockNotAvailable as exc:
            if attempt == LOCK_TRIES:
                raise MemexError(
                    f"memex install: sql/ could not take its locks within lock_timeout "
                    f"({timeout}) in {LOCK_TRIES} tries; nothing was changed. Sessions holding "
                    f"locks on memex tables: {_lock_holders(conn)}\n"
                    f"hint: let those transactions finish (or end them), then install again; "
                    f"{LOCK_TIMEOUT_ENV} sets the wait per try"
                ) from exc
            say(f"sql/: a lock was not free within {timeout} (try {attempt}/{LOCK_TRIES}), "
                "retrying")  # fmt: skip
            time.sleep(0.5 * attempt)


def _lock_holders(conn: psycopg.Connection[tuple[object, ...]]) -> str:
    rows = conn.execute(
        """
        select distinct a.pid, a.usename, a.state, left(a.query, 60)
          from pg_locks l join pg_stat_activity a on a.pid = l.pid
          join pg_class c on c.oid = l.relation
         where c.relnamespace = 'memex'::regnamespace and l.granted and l.pid <> pg_backend_pid()
         order by a.pid
        """
    ).fetchall()
    return "; ".join(f"pid {p} ({u}, {st}: {q!r})" for p, u, st, q in rows) or "(none seen now)"
