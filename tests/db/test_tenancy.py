"""Tenant isolation: the cross-tenant matrix, failing closed, and the catalog's security rules."""

from __future__ import annotations

import json
import re
from pathlib import Path

import psycopg
import pytest

from tests.db.helpers import (
    ARTEFACT,
    TENANT_TABLES,
    Conn,
    as_role,
    counts,
    make_tenants,
    populate,
)


@pytest.fixture
def two_tenants(conn: Conn) -> dict[str, str]:
    ids = make_tenants(conn, "tenant-a", "tenant-b")
    as_role(conn, "memex_app")
    populate(conn, "tenant-b", prefix="b-")
    populate(conn, "tenant-a", prefix="a-")
    return ids


def test_app_with_tenant_a_sees_and_changes_nothing_of_tenant_b(
    conn: Conn, two_tenants: dict[str, str]
) -> None:
    b = two_tenants["tenant-b"]
    for table in TENANT_TABLES:
        assert conn.execute(
            f"select count(*) from memex.{table} where tenant_id = %s", (b,)
        ).fetchone() == (0,), table
        assert conn.execute(f"select count(*) from memex.{table}").fetchone() != (0,), table
        for statement in (f"update memex.{table} set tenant_id = tenant_id where tenant_id = %s",
                          f"delete from memex.{table} where tenant_id = %s"):  # fmt: skip
            if conn.execute("select has_table_privilege(%s, %s)", (
                f"memex.{table}", statement.split()[0]
            )).fetchone() == (True,):  # fmt: skip
                assert conn.execute(statement, (b,)).rowcount == 0, (table, statement)
            else:  # embeddings: the app may not UPDATE the table or DELETE from it at all
                with pytest.raises(psycopg.errors.InsufficientPrivilege), conn.transaction():
                    conn.execute(statement, (b,))
    assert conn.execute("select count(*) from memex.tenants").fetchone() == (1,)
    # Functions act on the caller's tenant only: deleting B's document by uri finds nothing.
    assert conn.execute("select memex.delete_document('kb/b-keys.md')").fetchone() == (False,)
    conn.execute("reset role")
    conn.execute("select memex.set_tenant('tenant-b', false)")
    as_role(conn, "memex_app")
    assert conn.execute("select count(*) from memex.documents").fetchone() == (1,)


@pytest.mark.parametrize("table", TENANT_TABLES)
def test_moving_a_row_to_another_tenant_fails_with_42501(
    conn: Conn, two_tenants: dict[str, str], table: str
) -> None:
    """RLS refuses it (42501); on Citus the distribution column cannot change at all (0A000)."""
    distributed = conn.execute("select memex._distributed()").fetchone() == (True,)
    refused = (
        psycopg.errors.FeatureNotSupported if distributed else psycopg.errors.InsufficientPrivilege
    )
    with pytest.raises(refused):
        conn.execute(f"update memex.{table} set tenant_id = %s", (two_tenants["tenant-b"],))


def test_writing_with_another_tenants_id_fails_with_42501(
    conn: Conn, two_tenants: dict[str, str]
) -> None:
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        conn.execute("insert into memex.users (tenant_id, email) values (%s, 'x@y.z')",
                     (two_tenants["tenant-b"],))  # fmt: skip


@pytest.mark.parametrize("setting", [None, ""])
def test_no_tenant_or_empty_tenant_means_zero_rows_and_refused_writes(
    conn: Conn, two_tenants: dict[str, str], setting: str | None
) -> None:
    conn.execute("reset role")
    conn.execute("reset memex.tenant_id" if setting is None else "set memex.tenant_id = ''")
    as_role(conn, "memex_app")
    assert conn.execute("select memex.current_tenant()").fetchone() == (None,)
    assert set(counts(conn).values()) == {0}
    assert conn.execute("select count(*) from memex.tenants").fetchone() == (0,)
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        conn.execute("insert into memex.users (tenant_id, email) values (%s, 'x@y.z')",
                     (two_tenants["tenant-a"],))  # fmt: skip
    writes = [
        ("select memex.upsert_document('u', 'c')", ()),
        ("select memex.upsert_conversation('s')", ()),
        ("select memex.upsert_messages('s', '[]')", ()),
        ("select * from memex.upsert_summaries('s', %s)", (json.dumps(ARTEFACT),)),
        ("select memex.delete_document('u')", ()),
        ("select memex.delete_conversation('s')", ()),
    ]
    for statement, args in writes:
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="no tenant"):
            conn.execute(statement, args)


def test_unknown_tenant_is_a_clear_error_and_sets_nothing(conn: Conn) -> None:
    as_role(conn, "memex_app")
    with pytest.raises(psycopg.errors.NoDataFound, match="unknown tenant: nobody"):
        conn.execute("select memex.set_tenant('nobody', false)")
    assert conn.execute("select memex.current_tenant()").fetchone() == (None,)


def test_set_tenant_is_transaction_local_by_default(db: str) -> None:
    with psycopg.connect(db) as c:
        make_tenants(c, "t-local")
        c.commit()
        c.execute("select memex.set_tenant('t-local')")
        assert c.execute("select memex.current_tenant()").fetchone() != (None,)
        c.commit()
        assert c.execute("select memex.current_tenant()").fetchone() == (None,)


def test_catalog_security_rules(conn: Conn) -> None:
    # RLS enabled and forced on every table of memex holding tenant data.
    rows = conn.execute(
        """
        select c.relname, c.relrowsecurity, c.relforcerowsecurity
          from pg_class c join pg_attribute a on a.attrelid = c.oid and a.attname = 'tenant_id'
         where c.relnamespace = 'memex'::regnamespace and c.relkind in ('r', 'p')
        """
    ).fetchall()
    assert {r[0] for r in rows} >= set(TENANT_TABLES)
    assert all(r[1] and r[2] for r in rows), rows
    # ... each listed in memex._tenant_tables(), where its policy comes from, and holding it
    # (api_tokens are credentials an admin manages across tenants: docs/tenancy.md)
    listed = conn.execute("select memex._tenant_tables()").fetchone()
    assert listed is not None and set(listed[0]) | {"api_tokens"} == {r[0] for r in rows}
    policies = conn.execute(
        "select c.relname from pg_policy p join pg_class c on c.oid = p.polrelid"
        " where p.polname = 'tenant_isolation' and c.relnamespace = 'memex'::regnamespace"
    ).fetchall()
    assert {r[0] for r in policies} | {"api_tokens"} == {r[0] for r in rows}
    tenants = conn.execute("select relrowsecurity and relforcerowsecurity from pg_class"
                           " where oid = 'memex.tenants'::regclass").fetchone()  # fmt: skip
    assert tenants == (True,)
    # Every function pins its search_path; a procedure that COMMITs cannot carry SET, so it must
    # pin it again with SET LOCAL (and it is counted here only if its body does so).
    unpinned = conn.execute(
        """
        select p.oid::regprocedure::text from pg_proc p
         where p.pronamespace = 'memex'::regnamespace
           and not coalesce(p.proconfig::text like '%search_path=pg_catalog, pg_temp%', false)
           and not (p.prokind = 'p'
                    and p.prosrc like '%set local search_path = pg_catalog, pg_temp%')
        """
    ).fetchall()
    assert unpinned == []
    # Nothing in memex is executable by PUBLIC.
    public = conn.execute(
        """
        select p.oid::regprocedure::text from pg_proc p
         where p.pronamespace = 'memex'::regnamespace
           and has_function_privilege('public', p.oid, 'execute')
        """
    ).fetchall()
    assert public == []
    # SECURITY DEFINER only where written down (docs/tenancy.md, docs/spaces.md), and never
    # executable by memex_app.
    definers = conn.execute(
        "select p.proname, has_function_privilege('memex_app', p.oid, 'execute') from pg_proc p"
        " where p.pronamespace = 'memex'::regnamespace and p.prosecdef order by 1"
    ).fetchall()
    assert definers == [
        ("_build_space_index", False), ("_drop_space_index", False),
        ("_drop_space_storage", False), ("set_tenant", True), ("tenant_for_token", True),
    ]  # fmt: skip
    # The app role owns nothing, has no superpowers, cannot create plpython3u functions.
    owned = conn.execute(
        "select count(*) from pg_class where relowner = 'memex_app'::regrole"
        " union all select count(*) from pg_proc where proowner = 'memex_app'::regrole"
    ).fetchall()
    assert owned == [(0,), (0,)]
    flags = conn.execute(
        "select rolsuper, rolbypassrls, rolcreaterole, rolcreatedb from pg_roles"
        " where rolname in ('memex_app', 'memex_admin', 'memex_owner')"
    ).fetchall()
    assert all(not any(f) for f in flags)
    as_role(conn, "memex_app")
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        conn.execute("create function pg_temp.evil() returns int language plpython3u as 'return 1'")


# pg_upgrade (and managed services' major-version prechecks) refuse user columns of the reg*
# types whose oids a new version does not keep; memex forbids every reg* type, arrays included.
def test_no_column_has_a_reg_type(conn: Conn) -> None:
    rows = conn.execute(
        """
        select c.relname || '.' || a.attname || ' ' || format_type(a.atttypid, a.atttypmod)
          from pg_attribute a
          join pg_class c on c.oid = a.attrelid
          join pg_type t on t.oid = a.atttypid
          left join pg_type e on e.oid = t.typelem
         where c.relnamespace = 'memex'::regnamespace and a.attnum > 0 and not a.attisdropped
           and (t.typname like 'reg%' or e.typname like 'reg%')
        """
    ).fetchall()
    assert rows == []


EXPECTED_PRIVILEGES = Path(__file__).with_name("expected_privileges.txt")


def privileges_snapshot(conn: Conn) -> str:
    """Per role (memex_app, memex_admin and PUBLIC): EXECUTE on every memex function, every
    table privilege (TRUNCATE, REFERENCES and TRIGGER included) on every relation, USAGE and
    CREATE on the schema, and the privileges held on some columns of a table only."""
    rows = conn.execute(
        """
        with r (rolname) as (values ('memex_app'), ('memex_admin'), ('public'))
        select r.rolname, 'function ' || p.oid::regprocedure::text,
               has_function_privilege(r.rolname, p.oid, 'execute')
          from pg_proc p cross join r
         where p.pronamespace = 'memex'::regnamespace
        union all
        select r.rolname, 'table ' || c.oid::regclass::text || ' ' || priv,
               has_table_privilege(r.rolname, c.oid, priv)
          from pg_class c cross join r
          cross join unnest(array['select', 'insert', 'update', 'delete', 'truncate',
                                  'references', 'trigger']) as priv
         where c.relnamespace = 'memex'::regnamespace and c.relkind in ('r', 'v', 'p', 'm')
           and c.relname not like '%yoyo%'
        union all
        select r.rolname, 'schema memex ' || priv, has_schema_privilege(r.rolname, 'memex', priv)
          from r cross join unnest(array['usage', 'create']) as priv
        union all  -- privileges on some columns only (not the whole table)
        select r.rolname, 'column memex.' || a.table_name || '.' || a.column_name || ' '
               || lower(a.privilege_type), true
          from information_schema.column_privileges a join r on r.rolname = a.grantee
         where a.table_schema = 'memex'
           and not has_table_privilege(r.rolname, 'memex.' || a.table_name, a.privilege_type)
        order by 1, 2
        """
    ).fetchall()
    return "".join(f"{role} {obj} {'yes' if ok else 'no'}\n" for role, obj, ok in rows)


def test_privileges_match_the_expected_snapshot(conn: Conn) -> None:
    snapshot = privileges_snapshot(conn)
    if not EXPECTED_PRIVILEGES.exists():
        EXPECTED_PRIVILEGES.write_text(snapshot)
        pytest.fail("expected_privileges.txt written: review and commit it")
    assert snapshot == EXPECTED_PRIVILEGES.read_text(), (
        "privileges changed: review the diff, then delete tests/db/expected_privileges.txt "
        "and re-run to regenerate it"
    )


def _rows_of(dsn: str, tenant: str) -> dict[str, int]:
    """As superuser (no RLS): the tenant's rows in every memex table with a tenant_id."""
    with psycopg.connect(dsn) as su:
        tables = [r[0] for r in su.execute(
            "select c.relname from pg_class c join pg_attribute a on a.attrelid = c.oid"
            " and a.attname = 'tenant_id' where c.relnamespace = 'memex'::regnamespace"
            " and c.relkind = 'r' order by 1")]  # fmt: skip
        found = {t: su.execute(f"select count(*) from memex.{t} where tenant_id = %s",
                               (tenant,)).fetchone()[0] for t in tables}  # type: ignore[index]  # fmt: skip
        found["tenants"] = su.execute("select count(*) from memex.tenants where id = %s",
                                      (tenant,)).fetchone()[0]  # type: ignore[index]  # fmt: skip
    return found  # type: ignore[return-value]


def test_a_deleted_tenant_is_gone_from_every_table_and_the_other_keeps_all(
    conn: Conn, db: str, two_tenants: dict[str, str]
) -> None:
    a, b = two_tenants["tenant-a"], two_tenants["tenant-b"]
    before_a = _rows_of(db, a)
    assert _rows_of(db, b)["chunks"] > 0 and _rows_of(db, b)["embeddings"] > 0
    notices: list[str] = []
    with psycopg.connect(db, autocommit=True) as admin:
        admin.execute("set role memex_admin")
        admin.add_notice_handler(lambda d: notices.append(d.message_primary or ""))
        with pytest.raises(psycopg.errors.InvalidParameterValue, match="confirm must repeat"):
            admin.execute("call memex.delete_tenant('tenant-b', confirm => 'tenant-a')")
        assert _rows_of(db, b)["documents"] == 1, "a wrong confirmation deletes nothing"
        with pytest.raises(psycopg.errors.NoDataFound):
            admin.execute("call memex.delete_tenant('tenant-c', confirm => 'tenant-c')")
        admin.execute(
            "call memex.delete_tenant('tenant-b', confirm => 'tenant-b', batch_size => 1)"
        )
    assert set(_rows_of(db, b).values()) == {0}, _rows_of(db, b)
    assert _rows_of(db, a) == before_a
    assert notices[-1].startswith("memex.delete_tenant: tenant tenant-b (")


def test_writes_under_an_id_that_is_no_tenant_are_refused(conn: Conn, db: str) -> None:
    with psycopg.connect(db) as app:
        app.execute("set role memex_app")
        app.execute("select set_config('memex.tenant_id', gen_random_uuid()::text, false)")
        # on Citus a session's setting never reaches the workers: RLS refuses first there
        distributed = app.execute("select memex._distributed()").fetchone() == (True,)
        with pytest.raises(psycopg.errors.InsufficientPrivilege if distributed
                           else psycopg.errors.ForeignKeyViolation):  # fmt: skip
            app.execute("select memex.upsert_document('kb/x.md', 'text')")
    with psycopg.connect(db) as su:
        assert su.execute("select count(*) from memex.documents").fetchone() == (0,)


def test_every_helper_the_app_can_execute_is_listed_here(conn: Conn) -> None:
    """docs/tenancy.md lists each internal function memex_app may execute, with why it is safe
    to call directly: a new one must be added there (or not granted)."""
    doc = (Path(__file__).resolve().parents[2] / "docs" / "tenancy.md").read_text()
    section = doc.split("## Internal helpers the application role can execute")[1].split("\n## ")[0]
    listed = set(re.findall(r"`(_\w+)\(", section))
    granted = {
        str(r[0])
        for r in conn.execute(
            "select p.proname from pg_proc p where p.pronamespace = 'memex'::regnamespace"
            " and p.proname like '\\_%' and has_function_privilege('memex_app', p.oid, 'execute')"
        ).fetchall()
    }
    assert granted == listed, {"undocumented": granted - listed, "not granted": listed - granted}
