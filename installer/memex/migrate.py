"""Applying memex's two kinds of SQL.

migrations/  incremental, applied exactly once each by yoyo (tables, types, indexes, backfills);
             released files are frozen by hash (migrations/RELEASED).
sql/         idempotent objects (functions, views, policies, grants, comments), re-applied on
             every install: yoyo's post-apply hooks run only when a migration is pending, so
             this module applies sql/ itself, every time, after the migrations.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import psycopg
from yoyo import get_backend, read_migrations

from memex import __version__
from memex.dsn import yoyo_uri
from memex.paths import migrations_dir, sql_dir

MIGRATION_NAME = re.compile(r"^(\d{4})_[a-z0-9]+(?:_[a-z0-9]+)*(\.rollback)?\.sql$")
SQL_NAME = re.compile(r"^(\d{3})-[a-z0-9]+(?:-[a-z0-9]+)*\.sql$")
RELEASED_MANIFEST = "RELEASED"
VECTOR_SCHEMA_TOKEN = "__vector_schema__"
VERSION_TOKEN = "@memex_version@"


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
    """Apply pending migrations under yoyo's lock; return the ids applied."""
    backend = get_backend(yoyo_uri(dsn))
    try:
        with backend.lock(timeout=600):
            pending = backend.to_apply(read_migrations(str(migrations_dir())))
            ids = [m.id for m in pending]
            if pending:
                backend.apply_migrations(pending)
            return ids
    finally:
        backend.connection.close()


def render_sql(text: str, vector_schema: str) -> str:
    quoted = psycopg.sql.Identifier(vector_schema).as_string(None)
    return text.replace(VERSION_TOKEN, __version__).replace(VECTOR_SCHEMA_TOKEN, quoted)


def apply_sql_dir(conn: psycopg.Connection[tuple[object, ...]], vector_schema: str) -> int:
    """Re-apply every sql/ file in order, all in one transaction. Returns the file count."""
    files = sql_files()
    with conn.transaction():
        for path in files:
            try:
                conn.execute(render_sql(path.read_text(), vector_schema).encode())
            except psycopg.Error as exc:
                raise psycopg.Error(f"{path.name}: {exc}") from exc
    return len(files)
