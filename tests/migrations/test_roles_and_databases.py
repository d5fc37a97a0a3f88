"""Login roles, databases and the Docker image's first-start hook, against a real cluster."""

from __future__ import annotations

import os
import subprocess
import uuid
from pathlib import Path

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from memex.devcluster import Cluster
from tests.conftest import TEMPLATE, create_database, drop_database

ROOT = Path(__file__).resolve().parents[2]
HOOK = ROOT / "installer" / "docker" / "initdb-memex.sh"
MEMEX = str(ROOT / ".venv" / "bin" / "memex")


def _as(dsn: str, user: str, **extra: str) -> str:
    return make_conninfo(dsn, user=user, **extra)


def _drop_role(su: psycopg.Connection[tuple[object, ...]], role: str) -> None:
    """A login role the test made: its grants on databases go first (roles are cluster-wide)."""
    for (name,) in su.execute("select datname from pg_database where not datistemplate").fetchall():
        su.execute(f'revoke all on database "{name}" from "{role}"')
    su.execute(f'drop role if exists "{role}"')


def _run_hook(dsn: str, user: str, password: str) -> subprocess.CompletedProcess[str]:
    params = conninfo_to_dict(dsn)
    env = os.environ | {
        "PATH": f"{ROOT / '.venv' / 'bin'}:{os.environ['PATH']}",
        "PGHOST": str(params["host"]),
        "PGPORT": str(params.get("port") or 5432),
        "POSTGRES_USER": str(params.get("user") or "postgres"),
        "POSTGRES_DB": str(params["dbname"]),
        "MEMEX_APP_USER": user,
        "MEMEX_APP_PASSWORD": password,
    }
    return subprocess.run(["bash", str(HOOK)], env=env, capture_output=True, text=True, timeout=300)


def test_the_docker_hook_installs_memex_and_a_login_role_that_is_only_memex_app(
    empty_db: str,
) -> None:
    user = f"api_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(empty_db, autocommit=True) as su:
        try:
            result = _run_hook(empty_db, user, "first secret")
            assert result.returncode == 0, result.stderr
            assert f"applications connect as {user}" in result.stdout
            row = su.execute(
                "select rolcanlogin, rolsuper, rolbypassrls, rolcreaterole, rolcreatedb,"
                " rolinherit, rolpassword is not null from pg_authid where rolname = %s",
                (user,),
            ).fetchone()
            assert row == (True, False, False, False, False, True, True)
            memberships = su.execute(
                "select r.rolname from pg_auth_members m join pg_roles r on r.oid = m.roleid"
                " where m.member = %s::regrole order by 1",
                (user,),
            ).fetchall()
            assert memberships == [("memex_app",)]
            before = su.execute("select rolpassword from pg_authid where rolname = %s",
                                (user,)).fetchone()  # fmt: skip
            again = _run_hook(empty_db, user, "second secret")  # idempotent: the password only
            assert again.returncode == 0, again.stderr
            after = su.execute("select rolpassword from pg_authid where rolname = %s",
                               (user,)).fetchone()  # fmt: skip
            assert after != before
            su.execute("select memex.create_tenant('acme')")
            with psycopg.connect(_as(empty_db, user), autocommit=True) as app:
                assert app.execute("select count(*) from memex.tenants").fetchone() == (0,)
                app.execute("select memex.set_tenant('acme', false)")
                assert app.execute("select count(*) from memex.tenants").fetchone() == (1,)
                with pytest.raises(psycopg.errors.InsufficientPrivilege):
                    app.execute("create function pg_temp.f() returns int"
                                " language plpython3u as 'return 1'")  # fmt: skip
        finally:
            _drop_role(su, user)


def test_the_docker_hook_without_an_app_password_creates_no_role(empty_db: str) -> None:
    user = f"api_{uuid.uuid4().hex[:8]}"
    result = _run_hook(empty_db, user, "")
    assert result.returncode == 0, result.stderr
    assert "MEMEX_APP_PASSWORD is not set" in result.stderr
    with psycopg.connect(empty_db, autocommit=True) as su:
        assert su.execute("select to_regrole(%s)", (user,)).fetchone() == (None,)
        assert su.execute("select memex.version()").fetchone() is not None


def test_two_databases_one_cluster_credentials_for_one_open_only_it_after_the_runbook(
    pg_cluster: Cluster, db: str
) -> None:
    """memex's roles are cluster-wide and PUBLIC may CONNECT anywhere: a login role meant for
    database B, being memex_app, opens database A and reads A's tenant by its name. The runbook
    of docs/tenancy.md (REVOKE CONNECT ... FROM PUBLIC, GRANT CONNECT per login role) closes it,
    and `memex doctor` says which databases are still open to memex_app."""
    other = f"b_{uuid.uuid4().hex[:10]}"
    other_dsn = create_database(pg_cluster, other, template=TEMPLATE)
    a_db = str(conninfo_to_dict(db)["dbname"])
    api_a, api_b = f"api_a_{uuid.uuid4().hex[:6]}", f"api_b_{uuid.uuid4().hex[:6]}"
    with psycopg.connect(db, autocommit=True) as su:
        try:
            for role in (api_a, api_b):
                su.execute(f'create role "{role}" login; grant memex_app to "{role}"')
            su.execute("select memex.create_tenant('acme')")
            su.execute("select memex.set_tenant('acme', false)")
            su.execute("select memex.upsert_document('kb/a-secret.md', 'the launch code is 0000')")
            # Before: B's credentials read A.
            with psycopg.connect(_as(db, api_b), autocommit=True) as intruder:
                intruder.execute("select memex.set_tenant('acme', false)")
                assert intruder.execute("select count(*) from memex.documents").fetchone() == (1,)
            doctor = subprocess.run([MEMEX, "doctor", "--dsn", other_dsn], capture_output=True,
                                    text=True)  # fmt: skip
            assert "[WARN] other databases" in doctor.stdout and a_db in doctor.stdout
            # The runbook, in each memex database.
            for name, role in ((a_db, api_a), (other, api_b)):
                su.execute(f'revoke connect on database "{name}" from public')
                su.execute(f'grant connect on database "{name}" to "{role}"')
            with pytest.raises(psycopg.OperationalError, match="permission denied for database"):
                psycopg.connect(_as(db, api_b)).close()
            with pytest.raises(psycopg.OperationalError, match="permission denied for database"):
                psycopg.connect(_as(other_dsn, api_a)).close()
            with psycopg.connect(_as(db, api_a), autocommit=True) as owner_app:
                owner_app.execute("select memex.set_tenant('acme', false)")
                assert owner_app.execute("select count(*) from memex.documents").fetchone() == (1,)
            doctor = subprocess.run([MEMEX, "doctor", "--dsn", other_dsn], capture_output=True,
                                    text=True)  # fmt: skip
            assert a_db not in doctor.stdout
        finally:
            for name in (a_db, other):
                su.execute(f'grant connect on database "{name}" to public')
            for role in (api_a, api_b):
                _drop_role(su, role)
            drop_database(pg_cluster, other)
