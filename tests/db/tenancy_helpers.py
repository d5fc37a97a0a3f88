"""Helpers for tests that act as memex_app / memex_admin on a superuser connection."""

from __future__ import annotations

import json

import psycopg

Conn = psycopg.Connection[tuple[object, ...]]
TENANT_TABLES = ["users", "folders", "conversations", "messages", "summaries", "documents",
                 "chunks", "embeddings"]  # fmt: skip
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
                    {"role": "user", "content": "Il y a un orage."},
                    {"role": "assistant", "content": "Restez à l'abri."},
                ]
            ),
        ),
    )
    conn.execute("select * from memex.upsert_summaries('2025-06-25__orage', %s)",
                 (json.dumps(ARTEFACT),))  # fmt: skip
    # One vector per chunk in the default space, as embed_pending would store them.
    conn.execute(
        "insert into memex.embeddings (space_id, chunk_id, embedding, content_hash) "
        "select 1, c.id, memex.embed(c.content), c.content_hash from memex.chunks as c "
        "where c.tenant_id = memex.current_tenant() on conflict do nothing"
    )


def counts(conn: Conn) -> dict[str, int]:
    found = {}
    for table in TENANT_TABLES:
        row = conn.execute(f"select count(*) from memex.{table}").fetchone()
        assert row is not None
        found[table] = int(row[0])  # type: ignore[call-overload]
    return found
