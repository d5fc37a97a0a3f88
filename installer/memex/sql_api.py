"""docs/sql-api.md, generated from the database itself: every public function, procedure and
view of the memex schema with its signature, its `COMMENT ON` text and who may call it, so the
reference cannot drift from what is installed (a test regenerates it and compares).

    .venv/bin/python -m memex.sql_api [--dsn DSN] [--out docs/sql-api.md]
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from memex.dsn import connect, resolve_dsn

ROUTINES = """
select p.proname as name, p.prokind as kind,
       pg_catalog.pg_get_function_arguments(p.oid) as arguments,
       pg_catalog.pg_get_function_result(p.oid) as result,
       coalesce(pg_catalog.obj_description(p.oid, 'pg_proc'), '') as comment,
       pg_catalog.has_function_privilege('memex_app', p.oid, 'execute') as app,
       pg_catalog.has_function_privilege('memex_admin', p.oid, 'execute') as admin
  from pg_catalog.pg_proc as p
 where p.pronamespace = 'memex'::regnamespace and p.proname !~ '^_'
 order by p.proname, pg_catalog.pg_get_function_identity_arguments(p.oid)
"""
VIEWS = """
select c.relname as name,
       coalesce(pg_catalog.obj_description(c.oid, 'pg_class'), '') as comment,
       pg_catalog.has_table_privilege('memex_app', c.oid, 'select') as app,
       pg_catalog.has_table_privilege('memex_admin', c.oid, 'select') as admin,
       (select pg_catalog.string_agg(a.attname, ', ' order by a.attnum)
          from pg_catalog.pg_attribute as a
         where a.attrelid = c.oid and a.attnum > 0 and not a.attisdropped) as columns
  from pg_catalog.pg_class as c
 where c.relnamespace = 'memex'::regnamespace and c.relkind = 'v' and c.relname !~ '^_'
 order by c.relname
"""
HEADER = """# The SQL API (generated)

Generated from the installed catalog by `.venv/bin/python -m memex.sql_api --out
docs/sql-api.md` (`COMMENT ON` text, signatures, EXECUTE/SELECT rights); a test regenerates it
and fails when it differs, so change the comment in sql/ and run the command. The topics, with
examples, are in the docs of each feature (docs/search.md, docs/data-model.md, ...); internal
functions (`_name`) are not part of the API (docs/tenancy.md lists those applications may run).
"""


def _who(row: dict[str, Any]) -> str:
    roles = [role for role in ("app", "admin") if row[role]]
    return {("app", "admin"): "memex_app, memex_admin", ("admin",): "memex_admin",
            ("app",): "memex_app"}.get(tuple(roles), "neither role")  # fmt: skip


def render(dsn: str) -> str:
    from psycopg.rows import dict_row

    with connect(dsn) as conn:
        cur = conn.cursor(row_factory=dict_row)
        routines = cur.execute(ROUTINES).fetchall()
        views = cur.execute(VIEWS).fetchall()
    lines = [HEADER, "## Functions and procedures", ""]
    for row in routines:
        call = "call " if row["kind"] == "p" else ""
        returns = f" → {row['result']}" if row["result"] else ""
        title = f"### `{call}memex.{row['name']}({row['arguments']})`{returns}"
        comment = row["comment"] or "(no comment)"
        lines += [title, "", comment, "", f"Callable by: {_who(row)}.", ""]
    lines += ["## Views", ""]
    for row in views:
        lines += [f"### `memex.{row['name']}`", "", row["comment"] or "(no comment)", "",
                  f"Columns: {row['columns']}.", "", f"Readable by: {_who(row)}.", ""]  # fmt: skip
    return "\n".join(lines).rstrip() + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dsn", help="a database where memex is installed (default: dev cluster)")
    parser.add_argument("--out", help="write here instead of standard output")
    args = parser.parse_args()
    text = render(resolve_dsn(args.dsn))
    if args.out:
        Path(args.out).write_text(text)
    else:
        print(text, end="")


if __name__ == "__main__":
    main()
