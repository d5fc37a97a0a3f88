"""The installer against a real server: idempotence, locking, missing prerequisites."""

from __future__ import annotations

import subprocess
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from memex.devcluster import pg_bindir
from memex.install import install
from memex.migrate import migration_files
from tests.conftest import EXTENSION_DIR, HIDDEN_SUFFIX

MEMEX = str(Path(__file__).resolve().parents[2] / ".venv" / "bin" / "memex")


def schema_dump(dsn: str) -> str:
    return subprocess.run(
        [str(pg_bindir() / "pg_dump"), "--schema-only", "--restrict-key=memextest", dsn],
        capture_output=True,
        text=True,
        check=True,
    ).stdout


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([MEMEX, *args], capture_output=True, text=True)


def test_fresh_install_then_second_install_changes_nothing(empty_db: str) -> None:
    first = run_cli("install", "--dsn", empty_db)
    assert first.returncode == 0, first.stderr
    assert "migrations applied: 0001_core" in first.stdout
    before = schema_dump(empty_db)
    second = run_cli("install", "--dsn", empty_db)
    assert second.returncode == 0, second.stderr
    assert "nothing to do" in second.stdout
    assert schema_dump(empty_db) == before


def test_two_installers_at_once_do_not_race(empty_db: str) -> None:
    errors: list[BaseException] = []

    def run() -> None:
        try:
            install(empty_db, say=lambda _m: None)
        except BaseException as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    with psycopg.connect(empty_db) as conn:
        rows = conn.execute("select count(*) from memex._yoyo_migration").fetchone()
        expected = [p for p in migration_files() if not p.name.endswith(".rollback.sql")]
        assert rows == (len(expected),)
        assert conn.execute("select count(*) from memex.installs").fetchone() == (1,)


def test_objects_are_owned_by_memex_owner(db: str) -> None:
    with psycopg.connect(db) as conn:
        foreign = conn.execute(
            """
            select p.oid::regprocedure::text from pg_proc p
             where p.pronamespace = 'memex'::regnamespace and p.proowner <> 'memex_owner'::regrole
            union all
            select c.oid::regclass::text from pg_class c
             where c.relnamespace = 'memex'::regnamespace and c.relkind in ('r','p','v','m')
               and c.relowner <> 'memex_owner'::regrole
            """
        ).fetchall()
    assert foreign == []


@pytest.fixture
def hidden_extension(request: pytest.FixtureRequest) -> Iterator[str]:
    """Really make an extension unavailable on the server by hiding its control file."""
    name: str = request.param
    control = EXTENSION_DIR / f"{name}.control"
    hidden = Path(str(control) + HIDDEN_SUFFIX)
    control.rename(hidden)
    try:
        yield name
    finally:
        hidden.rename(control)


@pytest.mark.parametrize(
    ("hidden_extension", "expected"),
    [
        ("vector", "pgvector >= 0.8"),
        ("plpython3u", "postgresql-15-plpython3"),
    ],
    indirect=["hidden_extension"],
)
def test_missing_prerequisite_is_named_with_its_fix_and_changes_nothing(
    empty_db: str, hidden_extension: str, expected: str
) -> None:
    before = schema_dump(empty_db)
    result = run_cli("install", "--dsn", empty_db)
    assert result.returncode == 3
    assert f"extension {hidden_extension}: not available" in result.stderr
    assert expected in result.stderr
    assert "nothing was changed" in result.stderr
    assert schema_dump(empty_db) == before

    doctor = run_cli("doctor", "--dsn", empty_db)
    assert doctor.returncode == 1
    assert f"[FAIL] extension {hidden_extension}" in doctor.stdout
    assert expected in doctor.stdout
    assert schema_dump(empty_db) == before


def test_doctor_passes_on_an_installed_database(db: str) -> None:
    result = run_cli("doctor", "--dsn", db)
    assert result.returncode == 0, result.stdout
    assert "all checks passed" in result.stdout
    assert "[ok  ] memex installed" in result.stdout


@pytest.mark.parametrize(
    ("change", "undo", "expected"),
    [("alter role memex_app bypassrls", "alter role memex_app nobypassrls",
      "memex_app has BYPASSRLS"),
     ("grant memex_owner to memex_app", "revoke memex_owner from memex_app",
      "memex_app is a member of memex_owner")],
)  # fmt: skip
def test_a_role_that_would_void_rls_is_refused_with_its_fix(
    empty_db: str, change: str, undo: str, expected: str
) -> None:
    with psycopg.connect(empty_db, autocommit=True) as su:
        su.execute(
            "do $$ begin if not exists (select from pg_roles where rolname = 'memex_app') then"
            " create role memex_app nologin; end if;"
            " if not exists (select from pg_roles where rolname = 'memex_owner') then"
            " create role memex_owner nologin; end if; end $$"
        )
        su.execute(change)  # roles are cluster-wide: undone below whatever happens
        try:
            before = schema_dump(empty_db)
            result = run_cli("install", "--dsn", empty_db)
            assert result.returncode == 3, result.stderr
            assert f"memex roles: {expected}" in result.stderr and "fix:" in result.stderr
            assert schema_dump(empty_db) == before
            doctor = run_cli("doctor", "--dsn", empty_db)
            assert "[FAIL] memex roles" in doctor.stdout
        finally:
            su.execute(undo)


def test_doctor_names_other_databases_the_app_role_can_open(db: str) -> None:
    other = f"other_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(db, autocommit=True) as su:
        su.execute(f"create database {other}")
        try:
            result = run_cli("doctor", "--dsn", db)
            assert result.returncode == 0, result.stdout  # a warning, not a failure
            assert "[WARN] other databases: memex_app may connect to" in result.stdout
            assert other in result.stdout
            su.execute(f"revoke connect on database {other} from public")
            assert other not in run_cli("doctor", "--dsn", db).stdout
        finally:
            su.execute(f"drop database {other}")
