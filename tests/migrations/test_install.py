"""The installer against a real server: idempotence, locking, missing prerequisites."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from memex.devcluster import Cluster, pg_bindir
from memex.errors import MemexError
from memex.install import install
from memex.migrate import migration_files
from memex.stop_points import STOP_ENV
from tests.conftest import EXTENSION_DIR, HIDDEN_SUFFIX, create_database, drop_database

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


def _hold_a_tenant_table(dsn: str) -> psycopg.Connection[tuple[object, ...]]:
    """A session in a long transaction that has read memex.chunks (as an application's would):
    DDL on that table (policies, triggers) must wait for it."""
    holder = psycopg.connect(dsn)
    holder.execute("select count(*) from memex.chunks")
    return holder


def test_an_install_with_nothing_to_do_takes_no_lock_behind_a_long_transaction(db: str) -> None:
    holder = _hold_a_tenant_table(db)
    try:
        report = install(db, say=lambda _m: None)  # would queue behind the holder if it re-applied
        assert report.nothing_to_do and report.sql_files == 0 and report.sql_skipped > 20
    finally:
        holder.close()


def test_changed_definitions_are_re_applied_under_lock_timeout(
    db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Drift: a definition changed by hand is noticed (fingerprint) and every file re-applied.
    count = "select count(*) from pg_policies where schemaname = 'memex' and tablename = 'chunks'"
    with psycopg.connect(db, autocommit=True) as conn:
        before = conn.execute(count).fetchone()
        conn.execute("drop policy tenant_isolation on memex.chunks")
    monkeypatch.setenv("MEMEX_INSTALL_LOCK_TIMEOUT", "300ms")
    holder = _hold_a_tenant_table(db)
    said: list[str] = []
    try:
        with pytest.raises(MemexError) as failed:
            install(db, say=said.append)
    finally:
        holder.close()
    message = str(failed.value)
    assert "nothing was changed" in message and "pid" in message and "lock_timeout" in message
    assert sum("retrying" in line for line in said) == 3
    with psycopg.connect(db) as conn:  # the failed install changed nothing
        dropped = conn.execute(count).fetchone()
    assert before is not None and dropped == (before[0] - 1,)
    report = install(db, say=lambda _m: None)  # the holder is gone: it goes through
    assert report.sql_skipped == 0 and report.definitions_changed
    with psycopg.connect(db) as conn:
        assert conn.execute(count).fetchone() == before


# Each step of a fresh install where a kill leaves something half done: roles and schema
# without migrations, yoyo's committed lock row, a migration's transaction open, a migration
# committed with the next ones missing, sql/ half applied in its transaction, sql/ committed
# without the ownership and version records.
STOP_POINTS = [
    "bootstrap", "migrations locked", "migration 0002_content", "migration 0002_content recorded",
    "sql 141-drain.sql", "sql recorded", "reassigned",
]  # fmt: skip


@pytest.mark.parametrize("point", STOP_POINTS)
def test_a_killed_installer_leaves_nothing_the_next_install_cannot_finish(
    pg_cluster: Cluster, template_dsn: str, point: str
) -> None:
    """SIGKILL `memex install` at a step of a fresh install (memex.stop_points), then install
    again: it must finish within 30 s (a stale yoyo lock would block it for 10 minutes) and
    leave the same schema as an untroubled install."""
    name = f"k_{uuid.uuid4().hex[:10]}"
    dsn = create_database(pg_cluster, name)
    try:
        victim = subprocess.run([MEMEX, "install", "--dsn", dsn], capture_output=True, text=True,
                                env={**os.environ, STOP_ENV: point}, timeout=120)  # fmt: skip
        assert victim.returncode == -signal.SIGKILL, victim.stderr
        assert f"killed at stop point {point!r}" in victim.stderr, "it died where it was told to"
        again = subprocess.run([MEMEX, "install", "--dsn", dsn], capture_output=True, text=True,
                               timeout=30)  # fmt: skip
        assert again.returncode == 0, again.stderr
        assert schema_dump(dsn) == schema_dump(template_dsn)
    finally:
        drop_database(pg_cluster, name)


def test_an_install_waits_for_the_install_lock_a_bounded_time_and_names_its_holder(
    db: str,
) -> None:
    """An advisory lock needs no privilege: any session could take memex's install key and
    every install waited for it forever."""
    with psycopg.connect(db, autocommit=True) as squatter:
        squatter.execute("set application_name = 'squatter'")
        squatter.execute("set role memex_app")
        squatter.execute("select pg_advisory_lock(7274617001)")
        pid = squatter.execute("select pg_backend_pid()").fetchone()
        with pytest.raises(MemexError) as refused:
            install(db, say=lambda _m: None, lock_wait="1s")
    message = str(refused.value)
    assert f"pid {pid[0] if pid else 0} (application squatter, user" in message
    assert "nothing was changed" in message
    install(db, say=lambda _m: None, lock_wait="1s")  # the lock went with its session


def test_doctor_warns_for_application_logins_without_timeouts(db: str) -> None:
    role = f"api_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(db, autocommit=True) as conn:
        conn.execute(f"create role {role} login")
        conn.execute(f"grant memex_app to {role}")
        try:
            result = run_cli("doctor", "--dsn", db)
            assert result.returncode == 0, result.stdout
            line = next(x for x in result.stdout.splitlines() if "application timeouts" in x)
            assert line.startswith("[WARN]") and role in line and "statement_timeout" in line
            for setting, value in (("statement_timeout", "30s"), ("lock_timeout", "10s"),
                                   ("idle_in_transaction_session_timeout", "60s"),
                                   ("temp_file_limit", "1GB")):  # fmt: skip
                conn.execute(f"alter role {role} set {setting} = '{value}'")
            result = run_cli("doctor", "--dsn", db)
            assert f"{role} (" not in result.stdout
        finally:
            conn.execute(f"drop owned by {role}")
            conn.execute(f"drop role {role}")
