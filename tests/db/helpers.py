"""Helpers shared by the database tests: tenants, roles, loading, state, waiting."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable
from typing import Any

import psycopg

Conn = psycopg.Connection[tuple[object, ...]]
TOPICS = ["keys", "backups", "storms", "indexes", "tenants", "vectors", "queues", "upgrades"]
TENANT_TABLES = ["users", "folders", "conversations", "messages", "summaries", "documents",
                 "chunks", "embeddings", "embedding_failures"]  # fmt: skip
ARTEFACT = {
    "version": 2, "slug": "2025-06-25__orage", "level": 1, "title": "Orage", "date": "2025-06-25",
    "summaries": [
        {"index": 0, "summary": "Un orage a coupé le courant; dîner à la bougie.",
         "covers": [0, 1], "char_count": 48, "tags": ["meteo", "maison"],
         "entities": {"people": [], "others": ["EDF"]}, "signals": {}, "extras": {}},
        {"index": 1, "summary": "Conseils de sécurité pendant l'orage.", "covers": [2],
         "tags": ["securite"]},
    ],
}  # fmt: skip


def as_role(conn: Conn, role: str) -> None:
    conn.execute(psycopg.sql.SQL("set role {}").format(psycopg.sql.Identifier(role)))


def make_tenants(conn: Conn, *names: str) -> dict[str, str]:
    as_role(conn, "memex_admin")
    ids = {
        n: str(conn.execute("select memex.create_tenant(%s)", (n,)).fetchone()[0]) for n in names
    }  # type: ignore[index]
    conn.execute("reset role")
    return ids


def populate(conn: Conn, tenant: str, prefix: str = "") -> None:
    """One of everything for `tenant` (in autocommit: set_tenant for the session)."""
    conn.execute("select memex.set_tenant(%s, false)", (tenant,))
    conn.execute("insert into memex.users (email) values (%s) on conflict do nothing",
                 (f"{prefix}a@example.com",))  # fmt: skip
    conn.execute(
        "select memex.upsert_document(%s, %s, 'Keys', '{\"language\": \"en\"}', 'kb')",
        (f"kb/{prefix}keys.md", "Rotate the signing keys: publish the new key first."),
    )
    conn.execute("select memex.upsert_conversation('2025-06-25__orage', 'Orage')")
    conn.execute(
        "select memex.upsert_messages('2025-06-25__orage', %s)",
        (
            json.dumps(
                [
                    {"seq": 1, "role": "user", "content": "Il y a un orage."},
                    {"seq": 2, "role": "assistant", "content": "Restez à l'abri."},
                ]
            ),
        ),
    )
    conn.execute("select * from memex.upsert_summaries('2025-06-25__orage', %s)",
                 (json.dumps(ARTEFACT),))  # fmt: skip
    # One vector per chunk in the default space, as embed_pending would store them (a row at a
    # time: on Citus an INSERT ... SELECT runs on the shard, where memex.embed cannot).
    chunks = conn.execute("select c.id, c.content, c.content_hash from memex.chunks as c"
                          " where c.tenant_id = memex.current_tenant()").fetchall()  # fmt: skip
    for chunk_id, content, content_hash in chunks:
        conn.execute(
            "insert into memex.embeddings (space_id, chunk_id, embedding, content_hash)"
            " values (1, %s, memex.embed(%s), %s) on conflict do nothing",
            (chunk_id, content, content_hash),
        )
    # A failure record of an earlier content of one chunk (stale: it counts for nothing).
    conn.execute(
        "insert into memex.embedding_failures (space_id, chunk_id, content_hash, sqlstate, error)"
        " select 1, c.id, '\\x00', '54000', 'an earlier text' from memex.chunks as c"
        " where c.tenant_id = memex.current_tenant() order by c.id limit 1 on conflict do nothing"
    )


def counts(conn: Conn) -> dict[str, int]:
    found = {}
    for table in TENANT_TABLES:
        row = conn.execute(f"select count(*) from memex.{table}").fetchone()
        assert row is not None
        found[table] = int(row[0])  # type: ignore[call-overload]
    return found


def admin(dsn: str) -> Conn:
    """An autocommit connection acting as memex_admin."""
    conn = psycopg.connect(dsn, autocommit=True)
    conn.execute("set role memex_admin")
    return conn


def load_documents(dsn: str, tenant: str, count: int, prefix: str = "doc") -> None:
    """`count` one-chunk documents for `tenant`, in one transaction."""
    with psycopg.connect(dsn) as conn:
        conn.execute("select memex.set_tenant(%s)", (tenant,))
        for i in range(count):
            topic = TOPICS[i % len(TOPICS)]
            conn.execute(
                "select memex.upsert_document(%s, %s)",
                (f"{prefix}/{i}.md", f"Note {i} about {topic}: item {i * 7 % 13} of the runbook."),
            )


def embedding_state(dsn: str) -> tuple[int, int, int, int]:
    """(chunks, vectors in the default space, chunks with exactly one up-to-date vector,
    pending) over every tenant, read as superuser."""
    with psycopg.connect(dsn) as conn:
        row = conn.execute(
            """
            select (select count(*) from memex.chunks)
                 , (select count(*) from memex.embeddings where space_id = 1)
                 , (select count(*) from memex.chunks c where (
                       select count(*) from memex.embeddings e where e.space_id = 1
                          and e.tenant_id = c.tenant_id and e.chunk_id = c.id
                          and e.content_hash = c.content_hash) = 1)
                 , (select memex.pending_count())
            """
        ).fetchone()
        assert row is not None
        return tuple(int(v) for v in row)  # type: ignore[return-value]


def wait_until(condition: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
    """Polls `condition` until it holds; fails the test naming `what` after `timeout` s."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting until {what}")
        time.sleep(0.02)


def stop_process(process: subprocess.Popen[Any], timeout: float) -> None:
    """Stops a server a test started: SIGTERM, then SIGKILL if it has not exited in `timeout` s."""
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=timeout)
