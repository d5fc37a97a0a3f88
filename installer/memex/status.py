"""`memex status`: what a database's memex holds and is doing, for the person running it: one
table per tenant, per space, the text index, and the backends embedding now. `--json` prints
the same figures for machines. Counts are read under RLS like everything else: memex_admin
lists every tenant, an application role only the tenant it names."""

from __future__ import annotations

import json
from datetime import datetime
from decimal import Decimal
from typing import Any

import psycopg
from psycopg.rows import dict_row

from memex.dsn import connect
from memex.errors import MemexError
from memex.tenants import check_tenant

Row = dict[str, Any]
TENANT_COLUMNS = ["tenant", "documents", "conversations", "messages", "summaries", "chunks",
                  "pending", "failed"]  # fmt: skip
SPACE_COLUMNS = ["name", "model", "dimensions", "domain", "status", "embedded", "pending", "failed"]
TEXT_COLUMNS = ["tenant", "language", "chunks", "lexemes", "segments", "dead_share"]
BACKEND_COLUMNS = ["pid", "application_name", "role", "client", "batch_start"]
WORKER_COLUMNS = ["host", "pid", "space", "provider", "state", "rows_per_s", "embedded",
                  "last_heartbeat", "last_error"]  # fmt: skip
# memex.workers is memex_admin's: other roles see no worker section.
WORKERS_SQL = """
select host, pid, space, provider, state, round(rows_per_s::numeric, 1) as rows_per_s, embedded,
       last_heartbeat, left(last_error, 80) as last_error
  from memex.workers
 order by state <> 'running', state <> 'lost', started_at
"""
READS_WORKERS_SQL = """
select coalesce(has_table_privilege(to_regclass('memex.workers'), 'select'), false) as reads
"""
# A standby: how far its replay is behind (time since the last replayed commit, and WAL
# received but not yet replayed).
STANDBY_SQL = """
select pg_is_in_recovery() as standby,
       case when pg_is_in_recovery() then now() - pg_last_xact_replay_timestamp() end as replay_lag,
       case when pg_is_in_recovery()
            then pg_wal_lsn_diff(pg_last_wal_receive_lsn(), pg_last_wal_replay_lsn()) end
         as replay_lag_bytes
"""
FAILURE_COLUMNS = ["tenant", "space", "chunk_id", "attempts", "retry_at", "error"]
FAILURES_SHOWN = 10  # per tenant: the most recent (memex.embedding_failures holds them all)
# The current tenant's failures that stop a chunk from embedding now (its content failed).
FAILURES_SQL = """
select s.name as space, f.chunk_id, f.attempts, coalesce(f.retry_at::text, 'parked') as retry_at,
       '[' || f.sqlstate || '] ' || left(f.error, 120) as error, f.last_failed_at
  from memex.embedding_failures as f
  join memex.spaces as s on s.id = f.space_id
  join memex.chunks as c on c.tenant_id = f.tenant_id and c.id = f.chunk_id
   and c.content_hash = f.content_hash
 where f.tenant_id = memex.current_tenant() and (f.retry_at is null or f.retry_at > now())
 order by f.last_failed_at desc limit %s
"""


def _rows(conn: psycopg.Connection[Any], query: str, params: tuple[Any, ...] = ()) -> list[Row]:
    return conn.cursor(row_factory=dict_row).execute(query, params).fetchall()


def collect(conn: psycopg.Connection[Any], tenant: str | None = None) -> dict[str, Any]:
    """Everything `memex status` shows, as plain data."""
    if conn.execute("select to_regprocedure('memex.tenant_status()')").fetchone() == (None,):
        raise MemexError("memex is not installed in this database (run `memex install`)")
    if tenant:
        check_tenant(conn, tenant)
    with conn.transaction():
        if tenant:
            conn.execute("select memex.set_tenant(%s)", (tenant,))
        versions = _rows(conn, "select memex.status() - 'backend' - 'spaces' as s")[0]["s"]
        tenants = _rows(conn, "select * from memex.tenant_status()")
        spaces = _rows(conn, "select * from memex.space_status order by name")
        backends = _rows(conn, "select * from memex.embedding_backends order by pid")
        standby = _rows(conn, STANDBY_SQL)[0]
        workers = _rows(conn, WORKERS_SQL) if _rows(conn, READS_WORKERS_SQL)[0]["reads"] else []
    text_index: list[Row] = []
    failures: list[Row] = []
    for row in tenants:  # these read the tenant that is set
        with conn.transaction():
            conn.execute("select memex.set_tenant(%s)", (str(row["tenant_id"]),))
            for index in _rows(conn, "select * from memex.text_index_status order by language"):
                text_index.append({"tenant": row["tenant"], **index})
            for failure in _rows(conn, FAILURES_SQL, (FAILURES_SHOWN,)):
                failures.append({"tenant": row["tenant"], **failure})
    return {
        **versions,
        **standby,
        "scope": f"tenant {tenant}" if tenant else "every tenant this role may list",
        "tenants": tenants,
        "spaces": spaces,
        "text_index": text_index,
        "failures": failures,
        "embedding_backends": backends,
        "workers": workers,
    }


def _cell(value: Any, column: str = "") -> str:
    if value is None:
        return "-"
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, int | Decimal) and not isinstance(value, bool) and column != "pid":
        return f"{value:,}"
    return str(value)


def table(rows: list[Row], columns: list[str]) -> str:
    """Rows under their column names, numbers right-aligned."""
    cells = [[_cell(row.get(c), c) for c in columns] for row in rows]
    widths = [max([len(c), *(len(r[i]) for r in cells)]) for i, c in enumerate(columns)]
    numeric = [
        all(isinstance(row.get(c), int | Decimal | float) or row.get(c) is None for row in rows)
        for c in columns
    ]

    def line(values: list[str]) -> str:
        parts = [
            v.rjust(w) if n else v.ljust(w) for v, w, n in zip(values, widths, numeric, strict=True)
        ]
        return "  " + "  ".join(parts).rstrip()

    return "\n".join([line(columns), *(line(r) for r in cells)])


def render(report: dict[str, Any]) -> str:
    installed = report.get("installed_at")
    lines = [
        f"memex {report['memex_version']} · PostgreSQL {report['postgres_version']} · "
        f"pgvector {report['vector_version']}"
        + (f" · installed {str(installed)[:19]}" if installed else "")
        + (_standby_note(report) if report["standby"] else ""),
        "",
        f"Tenants ({len(report['tenants'])}; {report['scope']})",
        table(report["tenants"], TENANT_COLUMNS) if report["tenants"] else "  (none visible)",
        "",
        "Embedding spaces (embedded and pending chunks over the tenants above)",
        table(report["spaces"], SPACE_COLUMNS),
        "",
        "Text index (BM25), per tenant and language",
        table(report["text_index"], TEXT_COLUMNS) if report["text_index"] else "  (empty)",
        "",
        f"Embedding now: {len(report['embedding_backends'])} backend(s)",
    ]
    if report["failures"]:
        lines[-1:-1] = [
            f"Failed chunks (the {FAILURES_SHOWN} latest per tenant; `select memex.retry_failed()`"
            " queues them again)",
            table(report["failures"], FAILURE_COLUMNS),
            "",
        ]
    if report["embedding_backends"]:
        lines.append(table(report["embedding_backends"], BACKEND_COLUMNS))
    lines += _worker_lines(report["workers"])
    pending = sum(int(t["pending"]) for t in report["tenants"])
    running = any(w["state"] == "running" for w in report["workers"])
    if pending and not report["embedding_backends"] and not running:
        lines += ["", f"{pending:,} chunks wait for embedding and nothing is embedding them: "
                  "run `memex embed`, or keep `memex worker` running"]  # fmt: skip
    return "\n".join(lines)


def _standby_note(report: dict[str, Any]) -> str:
    lag = report.get("replay_lag")
    behind = report.get("replay_lag_bytes")
    said = "no commit replayed yet"
    if lag is not None:
        said = f"last replayed commit {str(lag).split('.')[0]} ago"
    return f" · STANDBY (read-only; {said}, {int(behind or 0):,} bytes received not yet replayed)"


def _worker_lines(workers: list[Row]) -> list[str]:
    """memex worker runs (memex.workers): the running and lost ones in full."""
    if not workers:
        return []
    states = [w["state"] for w in workers]
    shown = [w for w in workers if w["state"] != "stopped"]
    head = (f"Workers ({states.count('running')} running, {states.count('lost')} lost, "
            f"{states.count('stopped')} stopped in the last week; memex.workers)")  # fmt: skip
    return ["", head, table(shown, WORKER_COLUMNS) if shown else "  (none running)"]


def status(dsn: str, tenant: str | None, as_json: bool) -> int:
    with connect(dsn) as conn:
        report = collect(conn, tenant)
    if as_json:
        print(json.dumps(report, indent=2, default=str))
    else:
        print(render(report))
    return 0
