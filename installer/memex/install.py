"""`memex install`: prerequisites, extensions, roles, migrations once, sql/ every time, versions.

The whole run holds an advisory lock, so two installers at once serialise instead of racing.
A second run on an up-to-date database applies no migration and re-applies no sql/ file (the
definitions are as the last install left them, and no file changed): it takes no lock on a
tenant table, and pg_dump --schema-only does not change.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import psycopg

from memex import __version__
from memex.dsn import connect
from memex.errors import MemexError, PrerequisiteError
from memex.migrate import apply_migrations, apply_sql_dir
from memex.prereqs import Finding, blocking, check_all
from memex.stop_points import stop_point
from memex_db import catalog

ROLES = ("memex_owner", "memex_admin", "memex_app")
INSTALL_LOCK_KEY = 7_274_617_001  # arbitrary, constant: pg_advisory_lock key for installs


@dataclass
class InstallReport:
    version: str
    migrations_applied: list[str] = field(default_factory=list)
    sql_files: int = 0
    sql_skipped: int = 0
    created: list[str] = field(default_factory=list)
    definitions_changed: bool = False
    warnings: list[Finding] = field(default_factory=list)
    rechunk_advised: bool = False

    @property
    def nothing_to_do(self) -> bool:
        return not (self.migrations_applied or self.created or self.definitions_changed)

    def summary(self) -> str:
        lines = [f"memex {self.version}"]
        lines += [f"warning: {w.name}: {w.detail} ({w.fix})" for w in self.warnings]
        if self.nothing_to_do:
            lines.append(
                f"nothing to do: no pending migration, sql/ definitions unchanged "
                f"({self.sql_files} files re-applied, {self.sql_skipped} unchanged skipped)"
            )
            return "\n".join(lines)
        if self.created:
            lines.append("created: " + ", ".join(self.created))
        lines.append(
            f"migrations applied: {', '.join(self.migrations_applied)}"
            if self.migrations_applied
            else "migrations: none pending"
        )
        lines.append(
            f"sql/: {self.sql_files} files re-applied, {self.sql_skipped} unchanged skipped"
            + (", definitions changed" if self.definitions_changed else ", no definition changed")
        )
        if self.rechunk_advised:
            lines.append(
                "chunking rules changed in this upgrade: stored content keeps its old cut until "
                "`CALL memex.rechunk()` (as memex_admin; then CALL memex.embed_pending())"
            )
        return "\n".join(lines)


# Definitions that sql/ owns: if this fingerprint is equal before and after, sql/ changed nothing.
_FINGERPRINT = """
select md5(coalesce(string_agg(d, E'\\n' order by d), '')) from (
    select p.oid::regprocedure::text || pg_get_functiondef(p.oid)
           || coalesce(p.proacl::text, '') || p.proowner::regrole::text as d
      from pg_proc p where p.pronamespace = 'memex'::regnamespace
    union all
    select c.relname || coalesce(c.relacl::text, '') || c.relowner::regrole::text
           || c.relrowsecurity::text || c.relforcerowsecurity::text
           || coalesce(pg_get_viewdef(c.oid), '')
      from pg_class c where c.relnamespace = 'memex'::regnamespace
    union all
    select pol.polname || pol.polrelid::regclass::text || coalesce(pg_get_expr(pol.polqual,
           pol.polrelid), '') || coalesce(pg_get_expr(pol.polwithcheck, pol.polrelid), '')
      from pg_policy pol join pg_class c on c.oid = pol.polrelid
     where c.relnamespace = 'memex'::regnamespace
    union all
    select d.objoid::text || d.classoid::text || d.objsubid::text || d.description
      from pg_description d
      join pg_class c on d.classoid = 'pg_class'::regclass and c.oid = d.objoid
     where c.relnamespace = 'memex'::regnamespace
    union all
    select d.objoid::text || d.description
      from pg_description d
      join pg_proc p on d.classoid = 'pg_proc'::regclass and p.oid = d.objoid
     where p.pronamespace = 'memex'::regnamespace
) defs
"""


def _fingerprint(conn: psycopg.Connection[tuple[object, ...]]) -> str:
    if conn.execute("select to_regnamespace('memex')").fetchone() == (None,):
        return ""
    row = conn.execute(_FINGERPRINT).fetchone()
    return str(row[0]) if row else ""


def _bootstrap(conn: psycopg.Connection[tuple[object, ...]]) -> list[str]:
    """Roles, schema and extensions: created when missing, never altered when present."""
    created = []
    for role in ROLES:
        if conn.execute("select 1 from pg_roles where rolname = %s", (role,)).fetchone() is None:
            conn.execute(
                psycopg.sql.SQL(
                    "create role {} nologin nosuperuser nocreatedb nocreaterole noinherit "
                    "nobypassrls"
                ).format(psycopg.sql.Identifier(role))
            )
            created.append(f"role {role}")
    if conn.execute("select to_regnamespace('memex')").fetchone() == (None,):
        conn.execute("create schema memex authorization memex_owner")
        created.append("schema memex")
    for ext in ("vector", "plpython3u"):
        if conn.execute("select 1 from pg_extension where extname = %s", (ext,)).fetchone() is None:
            conn.execute(psycopg.sql.SQL("create extension {}").format(psycopg.sql.Identifier(ext)))
            created.append(f"extension {ext}")
    return created


def _register_providers(conn: psycopg.Connection[tuple[object, ...]]) -> None:
    """Every provider family of memex_db.providers may name a space (memex.spaces' foreign
    key): a new provider module is all a new provider needs, no migration."""
    from memex_db import providers

    conn.execute(
        "insert into memex.providers (name) select unnest(%s::text[]) on conflict do nothing",
        (providers.families(),),
    )


def vector_schema(conn: psycopg.Connection[tuple[object, ...]]) -> str:
    row = conn.execute(catalog.VECTOR_SCHEMA_SQL).fetchone()
    return str(row[0]) if row else "public"


_REASSIGN = """
do $reassign$
declare
    obj record;
begin
    for obj in
        select format('alter %s %s owner to memex_owner',
                      case c.relkind when 'v' then 'view' when 'm' then 'materialized view'
                                     when 'S' then 'sequence' else 'table' end,
                      c.oid::regclass) as stmt
          from pg_class c
         where c.relnamespace = 'memex'::regnamespace
           and c.relkind in ('r', 'p', 'v', 'm', 'S')
           and c.relowner <> 'memex_owner'::regrole
           and not exists (select 1 from pg_depend d            -- identity/serial sequences
                            where d.classid = 'pg_class'::regclass and d.objid = c.oid
                              and d.deptype in ('a', 'i'))
        union all
        select format('alter %s %s owner to memex_owner',
                      case p.prokind when 'p' then 'procedure' else 'function' end,
                      p.oid::regprocedure)
          from pg_proc p
         where p.pronamespace = 'memex'::regnamespace and p.proowner <> 'memex_owner'::regrole
        union all
        select format('alter type %s owner to memex_owner', t.oid::regtype)
          from pg_type t
         where t.typnamespace = 'memex'::regnamespace and t.typowner <> 'memex_owner'::regrole
           and t.typtype in ('e', 'd', 'c') and (t.typtype <> 'c' or exists (
               select 1 from pg_class c where c.oid = t.typrelid and c.relkind = 'c'))
    loop
        execute obj.stmt;
    end loop;
end
$reassign$
"""


# How long an install waits for another one. Any session may take the key (an advisory lock
# needs no privilege): a wait must end, naming the holder. Read here, not through
# memex._advisory_holders: the first install runs before the memex schema exists.
INSTALL_LOCK_WAIT = "300s"
_LOCK_HOLDERS = """
select string_agg('pid ' || l.pid || ' (application '
                  || coalesce(nullif(a.application_name, ''), '-')
                  || ', user ' || coalesce(a.usename::text, '-') || ')', ', ' order by l.pid)
  from pg_locks as l left join pg_stat_activity as a on a.pid = l.pid
 where l.locktype = 'advisory' and l.granted and l.objsubid = 1
   and l.classid = ((%(key)s::bigint >> 32) & 4294967295)::text::oid
   and l.objid = (%(key)s::bigint & 4294967295)::text::oid
"""


def _take_install_lock(conn: psycopg.Connection[Any], wait: str) -> None:
    conn.execute("select set_config('lock_timeout', %s, false)", (wait,))
    try:
        conn.execute("select pg_advisory_lock(%s)", (INSTALL_LOCK_KEY,))
    except psycopg.errors.LockNotAvailable:
        row = conn.execute(_LOCK_HOLDERS, {"key": INSTALL_LOCK_KEY}).fetchone()
        raise MemexError(
            f"another session has held memex's install lock for over {wait}: "
            f"{(row[0] if row else None) or 'gone now'}; nothing was changed.\n"
            "hint: wait for that install to finish, or end the session: "
            "select pg_terminate_backend(<pid>)"
        ) from None
    finally:
        conn.execute("reset lock_timeout")


def install(
    dsn: str, say: Callable[[str], None] = print, lock_wait: str = INSTALL_LOCK_WAIT
) -> InstallReport:
    with connect(dsn) as conn:
        # Locked before the checks too: they read what a concurrent installer may be creating.
        _take_install_lock(conn, lock_wait)
        try:
            findings = check_all(conn)
            failed = blocking(findings)
            if failed:
                raise PrerequisiteError(
                    "memex cannot be installed in this database; nothing was changed.\n"
                    + "\n".join(f.line() for f in failed)
                )
            report = InstallReport(version=__version__)
            report.warnings = [f for f in findings if not f.ok and f.warning_only]
            before = _fingerprint(conn)
            report.created = _bootstrap(conn)
            stop_point("bootstrap")
            say("applying migrations")
            had_content = _has_chunks(conn)
            report.migrations_applied = apply_migrations(dsn)
            _register_providers(conn)
            report.rechunk_advised = had_content and bool(
                RECHUNKING_MIGRATIONS & set(report.migrations_applied)
            )
            say("applying sql/")
            applied = apply_sql_dir(
                conn, vector_schema(conn), before,
                everything=bool(report.migrations_applied or report.created), say=say,
            )  # fmt: skip
            report.sql_files, report.sql_skipped = len(applied.applied), len(applied.skipped)
            conn.execute(_REASSIGN)
            stop_point("reassigned")
            _record_version(conn)
            after = _fingerprint(conn)
            report.definitions_changed = after != before
            _record_fingerprint(conn, after)
        finally:
            conn.execute("select pg_advisory_unlock(%s)", (INSTALL_LOCK_KEY,))
        return report


# Migrations of releases whose chunking rules changed (0006: titles as headings; 0011: code and
# text domains; 0024: messages embedded in context): applied to a database that holds chunks,
# the upgrade advises memex.rechunk().
RECHUNKING_MIGRATIONS = {"0006_text_index", "0011_chunk_domains", "0024_chunk_context"}


def _has_chunks(conn: psycopg.Connection[tuple[object, ...]]) -> bool:
    """Whether memex.chunks holds rows (as the installer sees them: all, for a superuser)."""
    if conn.execute("select to_regclass('memex.chunks')").fetchone() == (None,):
        return False
    return conn.execute("select exists (select 1 from memex.chunks)").fetchone() == (True,)


def _record_fingerprint(conn: psycopg.Connection[tuple[object, ...]], fingerprint: str) -> None:
    conn.execute(
        "insert into memex.install_fingerprint (fingerprint) values (%s) on conflict (singleton) "
        "do update set fingerprint = excluded.fingerprint, recorded_at = now() "
        "where memex.install_fingerprint.fingerprint <> excluded.fingerprint",
        (fingerprint,),
    )


def _record_version(conn: psycopg.Connection[tuple[object, ...]]) -> None:
    conn.execute(
        """
        insert into memex.installs (version, postgres_version, vector_version)
        select %s, current_setting('server_version'),
               (select extversion from pg_extension where extname = 'vector')
         where not exists (
               select 1 from memex.installs i
                where i.version = %s
                  and i.postgres_version = current_setting('server_version')
                  and i.vector_version is not distinct from
                      (select extversion from pg_extension where extname = 'vector')
                  and i.id = (select max(id) from memex.installs))
        """,
        (__version__, __version__),
    )
