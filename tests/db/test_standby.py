"""Searching a hot standby (docs/scale.md): a streaming replica of the test cluster (pg_basebackup
-R, its own port and socket directory, the same server venv) returns the primary's rows, runs
every read of the API without a read-only error, keeps answering through a reembed on the
primary (one space per result, switching once), and `memex status` says it is a standby."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict

from memex.devcluster import Cluster, cluster
from tests.db.helpers import admin, load_documents, make_tenants, populate, wait_until

Conn = psycopg.Connection[tuple[object, ...]]
SEARCHES = [
    "select * from memex.rag_search(%s, k => 6, mode => 'hybrid')",
    "select * from memex.rag_search(%s, k => 6, mode => 'vector')",
    "select * from memex.rag_search(%s, k => 6, mode => 'text')",
    "select * from memex.rag_search(%s, k => 6, max_per_document => 1, diversity => 0.5)",
    'select * from memex.rag_search(%s, k => 6, filters => \'{"source_kind": ["message"]}\')',
    "select * from memex.rag_search(%s, k => 6, conversation_weight => 2"
    ', filters => \'{"after": "2000-01-01"}\')',
    "select * from memex.rag_search(memex.embed(%s), k => 6)",
    "select memex.compose_context(%s, 300)",
]
# scores that depend on now(): run on the standby, not compared
RECENT = "select * from memex.rag_search(%s, k => 6, recency => '30 days')"
QUERIES = ["rotate the signing keys", "orage abri", "runbook backups item"]


@pytest.fixture(scope="module")
def standby(pg_cluster: Cluster) -> Iterator[Cluster]:
    replica = cluster("test-replica")
    replica.destroy()  # a fresh copy of the test cluster each run
    replica.start_as_replica_of(pg_cluster)
    try:
        yield replica
    finally:
        replica.destroy()


def on_standby(standby: Cluster, db: str) -> str:
    return standby.dsn(database=str(conninfo_to_dict(db)["dbname"]))


def caught_up(primary_dsn: str, standby_dsn: str) -> None:
    """Waits until the standby has replayed everything the primary wrote so far."""
    with psycopg.connect(primary_dsn, autocommit=True) as primary:
        lsn = primary.execute("select pg_current_wal_lsn()").fetchone()[0]  # type: ignore[index]

    def replayed() -> bool:
        try:
            with psycopg.connect(standby_dsn, autocommit=True) as conn:
                row = conn.execute("select pg_last_wal_replay_lsn() >= %s::pg_lsn", (lsn,))
                return bool(row.fetchone()[0])  # type: ignore[index]
        except psycopg.OperationalError:  # its copy of a new database is not there yet
            return False

    wait_until(replayed, "the standby replayed the primary's writes", 60)


def app_session(dsn: str, tenant: str) -> Conn:
    conn = psycopg.connect(dsn, autocommit=True)
    conn.execute("set role memex_app")
    conn.execute("select memex.set_tenant(%s, false)", (tenant,))
    return conn


def rows(conn: Conn, statement: str, query: str) -> list[tuple[Any, ...]]:
    """The rows, floats rounded (the same plan on the same pages gives the same floats; the
    rounding only makes a failure readable)."""
    return [
        tuple(round(v, 9) if isinstance(v, float) else v for v in row)
        for row in conn.execute(statement, (query,)).fetchall()
    ]


def loaded_tenant(conn: Conn, db: str) -> str:
    ids = make_tenants(conn, "a")
    populate(conn, ids["a"])
    load_documents(db, ids["a"], 60)
    with admin(db) as run:
        run.execute("call memex.embed_pending()")
    return ids["a"]


def test_the_standby_returns_the_primarys_rows(conn: Conn, db: str, standby: Cluster) -> None:
    tenant = loaded_tenant(conn, db)
    replica = on_standby(standby, db)
    caught_up(db, replica)
    with app_session(db, tenant) as primary, app_session(replica, tenant) as copy:
        for statement in SEARCHES:
            for query in QUERIES:
                expected = rows(primary, statement, query)
                assert expected, (statement, query)
                assert rows(copy, statement, query) == expected, (statement, query)


def test_every_read_of_the_api_runs_on_the_standby(conn: Conn, db: str, standby: Cluster) -> None:
    """Nothing on the search path writes: no read-only error (25006) from any reading call."""
    tenant = loaded_tenant(conn, db)
    with admin(db) as run:
        made = run.execute("select token from memex.create_api_token('a', label => 'standby')")
        token = made.fetchone()[0]  # type: ignore[index]
    replica = on_standby(standby, db)
    caught_up(db, replica)
    reads = [
        "select memex.version()", "select memex.current_tenant()",
        "select memex.count_tokens('a few words')", "select * from memex.chunk_text('a b c', 8)",
        "select memex.embed('query')", "select memex.embed_batch(array['a', 'b'])",
        "select memex.pending_count()", "select memex.status()",
        "select * from memex.tenant_status()", "select * from memex.space_status",
        "select * from memex.text_index_status", "select * from memex.embedding_backends",
    ]  # fmt: skip
    with app_session(replica, tenant) as copy:
        for statement in reads:
            copy.execute(statement).fetchall()
        for statement in [*SEARCHES, RECENT]:
            copy.execute(statement, ("keys",)).fetchall()
        found = copy.execute("select memex.tenant_for_token(%s)::text", (token,)).fetchone()
        assert found == (tenant,)
        # a write is refused by PostgreSQL itself, naming the standby
        with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
            copy.execute("select memex.upsert_document('x.md', 'y')")
    with psycopg.connect(replica, autocommit=True) as as_admin:
        as_admin.execute("set role memex_admin")
        for statement in ("select * from memex.workers", "select * from memex.reembed_progress",
                          "select memex.reembed_plan('all-MiniLM-L6-v2', 256)"):  # fmt: skip
            as_admin.execute(statement).fetchall()


def test_a_search_loop_on_the_standby_survives_a_reembed(
    conn: Conn, db: str, standby: Cluster
) -> None:
    tenant = loaded_tenant(conn, db)
    load_documents(db, tenant, 140, prefix="more")
    with admin(db) as run:
        run.execute("call memex.embed_pending()")
    replica = on_standby(standby, db)
    statement = SEARCHES[0]  # hybrid: both legs, the vector one from the active space
    with app_session(db, tenant) as primary:
        before = [rows(primary, statement, q) for q in QUERIES]
    caught_up(db, replica)

    errors: list[BaseException] = []

    def reembed() -> None:
        try:
            with admin(db) as run:
                run.execute("call memex.reembed('all-MiniLM-L6-v2', 256, batch_size => 8)")
        except BaseException as exc:  # the test reports it
            errors.append(exc)

    seen: list[tuple[int, list[tuple[Any, ...]]]] = []
    thread = threading.Thread(target=reembed)
    with app_session(replica, tenant) as copy:
        thread.start()
        while thread.is_alive():
            for i, query in enumerate(QUERIES):
                seen.append((i, rows(copy, statement, query)))  # never raises
        thread.join()
        assert not errors, errors
        caught_up(db, replica)
        for i, query in enumerate(QUERIES):
            seen.append((i, rows(copy, statement, query)))
    with app_session(db, tenant) as primary:
        after = [rows(primary, statement, q) for q in QUERIES]
        active = primary.execute("select name from memex.space_status where status = 'active'")
        assert active.fetchone() == ("all-MiniLM-L6-v2@256",)
    assert all(before[i] != after[i] for i in range(len(QUERIES)))
    for i in range(len(QUERIES)):
        answers = [
            "before" if result == before[i] else "after" if result == after[i] else "mixed"
            for j, result in seen
            if j == i
        ]
        assert "mixed" not in answers, json.dumps(answers)
        # the old space until the activation replays, the new one from then on
        switched = answers.index("after")
        assert switched > 0 and set(answers[:switched]) == {"before"}, json.dumps(answers)
        assert set(answers[switched:]) == {"after"}, json.dumps(answers)
    assert sum(1 for _, r in seen) > 3 * len(QUERIES)


def test_memex_status_says_standby_and_its_lag(db: str, standby: Cluster) -> None:
    replica = on_standby(standby, db)
    caught_up(db, replica)
    result = subprocess.run(
        [sys.executable, "-m", "memex.cli", "status", "--dsn", replica],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "STANDBY (read-only;" in result.stdout
    assert "bytes received not yet replayed" in result.stdout
    as_json = subprocess.run(
        [sys.executable, "-m", "memex.cli", "status", "--json", "--dsn", replica],
        capture_output=True, text=True, timeout=120, check=True,
    ).stdout  # fmt: skip
    report = json.loads(as_json)
    assert report["standby"] is True and report["replay_lag_bytes"] is not None
