"""What distributing memex by tenant (Citus, docs/scale.md) requires of its schema, read from
the catalog of a stock install: runs everywhere, Citus or not.

Tenant tables are those with a tenant_id column, except api_tokens (found by its hash before
any tenant is known: a shared table). Shared tables are every other memex table. A rule that
still has breaches lists them (KNOWN_*): a new breach fails, and so does a listed one that is
fixed, so that the list only shrinks until it is empty."""

from __future__ import annotations

import re
from typing import Any

import psycopg
import pytest

from memex.citus import distribute
from memex.errors import MemexError

SHARED_WITH_TENANT_ID = {"api_tokens"}


def _rows(conn: psycopg.Connection[Any], query: str) -> set[str]:
    return {row[0] for row in conn.execute(query).fetchall()}


TENANT_TABLES = """
    select c.oid from pg_class as c join pg_attribute as a on a.attrelid = c.oid
     where c.relnamespace = 'memex'::regnamespace and c.relkind in ('r', 'p')
       and a.attname = 'tenant_id' and not a.attisdropped
       and c.relname <> all(%s)
"""


def _tenant_tables_sql() -> str:
    names = ", ".join(f"'{n}'" for n in sorted(SHARED_WITH_TENANT_ID))
    return TENANT_TABLES % f"array[{names}]::name[]"


def test_tenant_tables_are_the_policed_ones(conn: psycopg.Connection[Any]) -> None:
    """A new table with tenant_id is a tenant table: it has its policy and its keys below."""
    found = _rows(conn, f"select c.oid::regclass::text from ({_tenant_tables_sql()}) as t (oid) "
                        "join pg_class as c on c.oid = t.oid")  # fmt: skip
    policed = _rows(conn, "select 'memex.' || t from unnest(memex._tenant_tables()) as t")
    assert found == policed


def test_every_key_of_a_tenant_table_includes_tenant_id(conn: psycopg.Connection[Any]) -> None:
    """Primary keys, unique constraints and unique indexes, and foreign keys between tenant
    tables (a foreign key to a shared table, spaces, points at a reference table: allowed)."""
    breaches = _rows(conn, f"""
        with tenant as ({_tenant_tables_sql()})
        select i.indexrelid::regclass::text
          from pg_index as i
         where i.indisunique and i.indrelid in (select oid from tenant)
           and not exists (select from unnest(i.indkey) as n
                             join pg_attribute as a on a.attrelid = i.indrelid and a.attnum = n
                            where a.attname = 'tenant_id')
        union all
        select k.conrelid::regclass::text || '.' || k.conname
          from pg_constraint as k
         where k.contype = 'f' and k.conrelid in (select oid from tenant)
           and k.confrelid in (select oid from tenant)
           and not exists (select from unnest(k.conkey) as n
                             join pg_attribute as a on a.attrelid = k.conrelid and a.attnum = n
                            where a.attname = 'tenant_id')
    """)  # fmt: skip
    assert breaches == set()


def test_no_foreign_key_from_a_shared_table_to_a_tenant_table(
    conn: psycopg.Connection[Any],
) -> None:
    breaches = _rows(conn, f"""
        with tenant as ({_tenant_tables_sql()})
        select k.conrelid::regclass::text || '.' || k.conname
          from pg_constraint as k
          join pg_class as c on c.oid = k.conrelid
         where k.contype = 'f' and c.relnamespace = 'memex'::regnamespace
           and k.conrelid not in (select oid from tenant)
           and k.confrelid in (select oid from tenant)
    """)  # fmt: skip
    assert breaches == set()


def test_no_set_null_of_some_columns(conn: psycopg.Connection[Any]) -> None:
    """ON DELETE SET NULL (col): Citus refuses it when the key holds the distribution column."""
    breaches = _rows(conn, """
        select k.conrelid::regclass::text || '.' || k.conname from pg_constraint as k
         where k.contype = 'f' and k.connamespace = 'memex'::regnamespace
           and k.confdelsetcols is not null
    """)  # fmt: skip
    assert breaches == set()


def test_no_trigger_on_a_tenant_table(conn: psycopg.Connection[Any]) -> None:
    """Citus fires them on worker shards, where they fail: the write functions do their
    follow-up themselves (the text index, the queue's NOTIFY, embed-on-write)."""
    found = _rows(conn, f"""
        select c.relname || '.' || t.tgname
          from pg_trigger as t join pg_class as c on c.oid = t.tgrelid
         where not t.tgisinternal and t.tgrelid in ({_tenant_tables_sql()})
    """)  # fmt: skip
    assert found == set()


def test_no_policy_with_a_subquery(conn: psycopg.Connection[Any]) -> None:
    """Citus: "Subqueries are not supported in policies on distributed tables"."""
    breaches = _rows(conn, """
        select tablename || '.' || policyname from pg_policies
         where schemaname = 'memex'
           and (qual ~* '\\(\\s*select\\M' or with_check ~* '\\(\\s*select\\M')
    """)  # fmt: skip
    assert breaches == set()


def test_no_sql_function_reads_a_tenant_table(conn: psycopg.Connection[Any]) -> None:
    """Citus cannot plan a SQL-language function's statements over distributed tables
    ("parameters in SQL functions"): plpgsql, the tenant bound in a variable."""
    found = _rows(conn, """
        select p.oid::regprocedure::text from pg_proc as p
         where p.pronamespace = 'memex'::regnamespace
           and p.prolang = (select oid from pg_language where lanname = 'sql')
           and exists (select from unnest(memex._tenant_tables()) as t
                        where p.prosrc ~* ('memex\\.' || t || '\\M'))
    """)  # fmt: skip
    assert found == set()


def test_no_row_type_in_a_signature(conn: psycopg.Connection[Any]) -> None:
    """A function whose signature names a table's row type (or an array of it) stays on the
    Citus coordinator, and one distributed by hand is executable by PUBLIC on the workers."""
    found = _rows(conn, """
        select p.oid::regprocedure::text from pg_proc as p
         where p.pronamespace = 'memex'::regnamespace
           and exists (select from unnest(array[p.prorettype] || p.proargtypes::oid[]
                                          || coalesce(p.proallargtypes, '{}')) as s (type)
                         join pg_type as y on y.oid = s.type
                         left join pg_type as e on e.oid = y.typelem and y.typcategory = 'A'
                         join pg_class as c on c.oid = coalesce(e.typrelid, y.typrelid)
                        where c.relnamespace = 'memex'::regnamespace and c.relkind in ('r', 'p'))
    """)  # fmt: skip
    assert found == set()


def test_no_function_call_in_do_update(conn: psycopg.Connection[Any]) -> None:
    """Citus: "functions used in the DO UPDATE SET clause ... must be marked IMMUTABLE"; the
    time of a write is the inserted row's default (excluded.created_at) instead."""
    bodies = conn.execute("select p.oid::regprocedure::text, p.prosrc from pg_proc as p "
                          "where p.pronamespace = 'memex'::regnamespace").fetchall()  # fmt: skip
    breaches = set()
    for name, body in bodies:
        for clause in re.findall(r"on\s+conflict[^;]*?do\s+update[^;]*", body, re.I):
            clause = re.sub(r"--[^\n]*", "", clause)
            if re.search(r"\b(now|clock_timestamp|statement_timestamp|current_tenant)\s*\(|"
                         r"current_timestamp", clause, re.I):  # fmt: skip
                breaches.add(name)
    assert breaches == set()


def test_no_empty_select_list_over_memex_tables(conn: psycopg.Connection[Any]) -> None:
    """`exists (select from memex.chunks)`: Citus answers "a column definition list is required
    for functions returning record" (it broke a re-run of the installer); `select 1 from`."""
    bodies = conn.execute("select p.oid::regprocedure::text, p.prosrc from pg_proc as p "
                          "where p.pronamespace = 'memex'::regnamespace").fetchall()  # fmt: skip
    breaches = {name for name, body in bodies if re.search(r"select\s+from\s+memex\.", body, re.I)}
    assert breaches == set()


# Forced generic plans on one node that switch to custom plans for their own call where Citus
# is loaded (memex_db.text_search._on_citus): generic plans are the faster ones there.
SWITCHES_ON_CITUS = {
    "memex._text_candidates(uuid,text,jsonb,text,integer,double precision,double precision,"
    "uuid[],bigint[])",
}


def test_no_forced_generic_plan(conn: psycopg.Connection[Any]) -> None:
    """Citus cannot plan a generic plan's parameters over distributed tables."""
    breaches = _rows(conn, """
        select p.oid::regprocedure::text from pg_proc as p
         where p.pronamespace = 'memex'::regnamespace
           and 'plan_cache_mode=force_generic_plan' = any(coalesce(p.proconfig, '{}'))
    """)  # fmt: skip
    assert breaches == SWITCHES_ON_CITUS


def test_distribute_refuses_a_database_without_citus_and_changes_nothing(
    conn: psycopg.Connection[Any], db: str
) -> None:
    """`memex citus distribute` on a single node: the fix named, no foreign key dropped."""
    keys = (
        "select count(*) from pg_constraint"
        " where contype = 'f' and connamespace = 'memex'::regnamespace"
    )
    before = conn.execute(keys).fetchone()
    with pytest.raises(MemexError, match="no citus extension"):
        distribute(db, say=lambda _m: None)
    assert conn.execute(keys).fetchone() == before
