"""Writes items through the public upsert functions, in the caller's transaction, and says for
each whether it was inserted, updated or left unchanged."""

from __future__ import annotations

from typing import Any, Literal

import psycopg
from psycopg.types.json import Jsonb

from memex.ingest.items import Artefact, Conversation, Document, Item

Outcome = Literal["inserted", "updated", "unchanged"]

# xmin tells whether an upsert touched the row: it changes only when the row is rewritten.
_DOCUMENT_VERSION = """
select xmin::text from memex.documents where tenant_id = memex.current_tenant() and uri = %s
"""
_CONVERSATION_VERSION = """
select xmin::text from memex.conversations where tenant_id = memex.current_tenant() and slug = %s
"""


def _version(conn: psycopg.Connection[Any], query: str, key: str) -> str | None:
    row = conn.execute(query, (key,)).fetchone()
    return None if row is None else str(row[0])


def _outcome(before: str | None, after: str | None, changed: bool = False) -> Outcome:
    if before is None:
        return "inserted"
    return "updated" if changed or before != after else "unchanged"


def store_document(conn: psycopg.Connection[Any], doc: Document) -> Outcome:
    before = _version(conn, _DOCUMENT_VERSION, doc.uri)
    conn.execute(
        "select memex.upsert_document(%s, %s, %s, %s, %s)",
        (doc.uri, doc.content, doc.title, Jsonb(doc.metadata), doc.folder),
    )
    return _outcome(before, _version(conn, _DOCUMENT_VERSION, doc.uri))


def store_conversation(conn: psycopg.Connection[Any], conv: Conversation) -> Outcome:
    before = _version(conn, _CONVERSATION_VERSION, conv.slug)
    conn.execute(
        "select memex.upsert_conversation(%s, %s, %s::date, %s, %s)",
        (conv.slug, conv.title, conv.created_date, Jsonb(conv.metadata), conv.system_prompt),
    )
    row = conn.execute(
        "select memex.upsert_messages(%s, %s)", (conv.slug, Jsonb(conv.messages))
    ).fetchone()
    changed = bool(row and row[0])
    return _outcome(before, _version(conn, _CONVERSATION_VERSION, conv.slug), changed)


def store_artefact(conn: psycopg.Connection[Any], art: Artefact) -> Outcome:
    row = conn.execute(
        "select inserted, updated, unchanged from memex.upsert_summaries(%s, %s)",
        (art.slug, Jsonb(art.payload)),
    ).fetchone()
    inserted, updated, unchanged = row if row else (0, 0, 0)
    if updated or (inserted and unchanged):
        return "updated"
    return "inserted" if inserted else "unchanged"


def store(conn: psycopg.Connection[Any], item: Item) -> Outcome:
    if isinstance(item, Document):
        return store_document(conn, item)
    if isinstance(item, Conversation):
        return store_conversation(conn, item)
    return store_artefact(conn, item)
