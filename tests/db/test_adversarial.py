"""Isolation read as an attacker would (issue 11's adversarial tests): as memex_app on tenant A,
every way to reach tenant B's rows that PostgreSQL offers a plain role."""

from __future__ import annotations

import psycopg
import pytest

from tests.db.helpers import Conn, as_role, make_tenants, populate


@pytest.fixture
def two_tenants(conn: Conn) -> dict[str, str]:
    ids = make_tenants(conn, "tenant-a", "tenant-b")
    as_role(conn, "memex_app")
    populate(conn, "tenant-b", prefix="b-")
    populate(conn, "tenant-a", prefix="a-")  # the session stays on tenant A
    return ids


def _tenant_tables(db: str, privilege: str = "select") -> list[str]:
    """The tables holding tenant rows (memex._tenant_tables, not the app's to call) on which
    memex_app has the privilege (the others it cannot touch at all: 42501 before any row)."""
    with psycopg.connect(db) as su:
        rows = su.execute(
            "select t from unnest(memex._tenant_tables()) as t"
            " where has_table_privilege('memex_app', 'memex.' || t, %s) order by 1",
            (privilege,),
        ).fetchall()
    return [str(r[0]) for r in rows]


def _b_rows(db: str, b: str) -> dict[str, list[str]]:
    """As superuser (no RLS): every row of tenant B, as text, table by table."""
    with psycopg.connect(db) as su:
        tables = [str(r[0]) for r in su.execute("select unnest(memex._tenant_tables())")]
        found = {}
        for t in tables:
            rows = su.execute(f"select x::text from memex.{t} as x where x.tenant_id = %s", (b,))
            found[t] = sorted(str(r[0]) for r in rows)
        return found


def test_a_leaky_function_in_pg_temp_sees_no_row_of_another_tenant(
    conn: Conn, db: str, two_tenants: dict[str, str]
) -> None:
    """PostgreSQL's rowsecurity pattern: a cheap, non-LEAKPROOF function in WHERE that raises
    its argument as a NOTICE; RLS quals run first, so only the tenant's own rows reach it."""
    b = two_tenants["tenant-b"]
    leaked: list[str] = []
    conn.add_notice_handler(lambda d: leaked.append(d.message_primary or ""))
    conn.execute(
        "create function pg_temp.leak(row_text text) returns boolean language plpgsql"
        " cost 0.0000001 as $$ begin raise notice 'leak %', row_text; return true; end $$"
    )
    seen = 0
    for scans in ("on", "off"):  # sequential scans, then index scans where the planner can
        conn.execute(f"set enable_seqscan = {scans}")
        for table in [*_tenant_tables(db), "tenants"]:
            rows = conn.execute(
                f"select count(*) from memex.{table} as t where pg_temp.leak(t::text)"
            )
            seen += int(rows.fetchone()[0])  # type: ignore[index, arg-type]
    assert seen > 0 and len(leaked) >= seen  # the function did run, on A's rows
    assert not [m for m in leaked if b in m or "b-keys" in m or "b-a@example" in m]


def test_copy_to_stdout_exports_only_the_current_tenant_and_copy_from_is_refused(
    conn: Conn, db: str, two_tenants: dict[str, str]
) -> None:
    a, b = two_tenants["tenant-a"], two_tenants["tenant-b"]
    for table in _tenant_tables(db):
        for statement in (f"copy memex.{table} to stdout",
                          f"copy (select * from memex.{table}) to stdout"):  # fmt: skip
            with conn.cursor().copy(statement) as copy:
                data = b"".join(bytes(chunk) for chunk in copy).decode()
            assert b not in data, (table, statement)
    assert a in data
    before = _b_rows(db, b)
    copy_in = "copy memex.users (tenant_id, email) from stdin"
    with (
        pytest.raises(psycopg.errors.FeatureNotSupported, match="row-level security"),
        conn.cursor().copy(copy_in) as copy,
    ):
        copy.write_row((b, "intruder@example.com"))
    assert _b_rows(db, b) == before


def test_upsert_merge_and_returning_cannot_reach_another_tenants_key(
    conn: Conn, db: str, two_tenants: dict[str, str]
) -> None:
    b = two_tenants["tenant-b"]
    before = _b_rows(db, b)
    # INSERT ... ON CONFLICT DO UPDATE on B's (tenant_id, email): the row to insert is B's, which
    # the policy's WITH CHECK refuses before any conflict is looked at.
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        conn.execute(
            "insert into memex.users as u (tenant_id, email) values (%s, 'b-a@example.com')"
            " on conflict (tenant_id, email) do update set role = 'owner' returning *",
            (b,),
        )
    # MERGE keyed on B's row: B's row is invisible, so it is "not matched", and the insert of
    # a B row is refused.
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        conn.execute(
            "merge into memex.users as u using (values (%s::uuid, 'b-a@example.com')) as v (t, e)"
            " on u.tenant_id = v.t and u.email = v.e"
            " when matched then update set role = 'owner'"
            " when not matched then insert (tenant_id, email) values (v.t, v.e)",
            (b,),
        )
    # MERGE that only updates, and UPDATE/DELETE ... RETURNING, over every tenant table: no B
    # row is touched or returned.
    merged = conn.execute(
        "merge into memex.users as u using (select %s::uuid as t) as v on u.tenant_id = v.t"
        " when matched then update set role = 'owner'",
        (b,),
    )
    assert merged.rowcount == 0
    for table in _tenant_tables(db, "update"):
        returned = conn.execute(
            f"update memex.{table} set tenant_id = tenant_id where tenant_id = %s returning *", (b,)
        ).fetchall()
        assert returned == [], table
    for table in _tenant_tables(db, "delete"):
        returned = conn.execute(f"delete from memex.{table} where tenant_id = %s returning *",
                                (b,)).fetchall()  # fmt: skip
        assert returned == [], table
    assert _b_rows(db, b) == before


@pytest.mark.parametrize("plan_cache_mode", ["force_generic_plan", "force_custom_plan"])
def test_a_prepared_statement_reused_after_switching_tenants_sees_the_new_tenant_only(
    conn: Conn, two_tenants: dict[str, str], plan_cache_mode: str
) -> None:
    conn.execute(f"set plan_cache_mode = {plan_cache_mode}")
    statement = "select coalesce(array_agg(uri order by uri), '{}') from memex.documents"
    seen = {}
    for tenant in ("tenant-a", "tenant-b", "tenant-a"):
        conn.execute("select memex.set_tenant(%s, false)", (tenant,))
        for _ in range(6):  # past the 5 custom plans that precede a generic one
            seen[tenant] = conn.execute(statement, prepare=True).fetchone()[0]  # type: ignore[index]
        conn.execute("prepare by_name as " + statement)
        assert conn.execute("execute by_name").fetchone()[0] == seen[tenant]  # type: ignore[index]
        conn.execute("deallocate by_name")
    assert seen == {"tenant-a": ["kb/a-keys.md"], "tenant-b": ["kb/b-keys.md"]}


@pytest.mark.parametrize("language", ["pg_temp.evil", "evil", "English", "public.english"])
def test_a_chunk_language_outside_the_builtin_configurations_is_refused(
    conn: Conn, two_tenants: dict[str, str], language: str
) -> None:
    """As memex_app: a text-search configuration of this session's pg_temp, named by a chunk,
    left a row whose tsvector no other session could recompute, and pg_restore refused the
    whole chunks table (0 of 2,374 chunks restored, every tenant's)."""
    conn.execute("create text search configuration pg_temp.evil (copy = pg_catalog.english)")
    before = conn.execute("select count(*) from memex.chunks").fetchone()
    # refused by the stored tsvector's pg_catalog-qualified lookup (42704) or by the CHECK
    refused = (psycopg.errors.UndefinedObject, psycopg.errors.CheckViolation)
    with pytest.raises(refused):
        conn.execute(
            "insert into memex.chunks (source_kind, document_id, ord, content, language,"
            " token_count, content_hash) select 'document', id, 9, 'x', %s, 1, '\\x00'"
            " from memex.documents limit 1",
            (language,),
        )
    with pytest.raises(refused):
        conn.execute("update memex.chunks set language = %s", (language,))
    assert conn.execute("select count(*) from memex.chunks").fetchone() == before


def test_the_application_cannot_lock_the_vectors_every_search_reads(
    conn: Conn, two_tenants: dict[str, str]
) -> None:
    """LOCK TABLE ... IN ACCESS EXCLUSIVE MODE needs table-level UPDATE, DELETE or TRUNCATE:
    memex_app held them on memex.embeddings, and one session could stop every tenant's
    searches. It now stores vectors with INSERT and updates three columns."""
    with pytest.raises(psycopg.errors.InsufficientPrivilege), conn.transaction():
        conn.execute("lock table memex.embeddings in access exclusive mode")
    # what the application still does to vectors works: an upsert through the API path
    conn.execute(
        "select memex._store_embeddings(1, array[c.id], array['\\x00'::bytea],"
        " array[memex.embed('x')]) from memex.chunks as c limit 1"
    )
