"""Writes items through the public upsert functions, in the caller's transaction, and says for
each whether it was inserted, updated or left unchanged."""

from __future__ import annotations

from typing import Any, Literal

import psycopg
from psycopg.types.json import Jsonb

from memex.ingest.items import Artefact, Conversation, Document, Item

Outcome = Literal["inserted", "updated", "unchanged"]


def _outcome(action: str, changed: bool = False) -> Outcome:
    if action == "unchanged" and changed:
        return "updated"
    if action not in ("inserted", "updated", "unchanged"):
        raise ValueError(f"unexpected upsert action {action!r}")
    return action  # type: ignore[return-value]


def store_document(conn: psycopg.Connection[Any], doc: Document) -> Outcome:
    row = conn.execute(
        "select action from memex.upsert_document_outcome(%s, %s, %s, %s, %s)",
        (doc.uri, doc.content, doc.title, Jsonb(doc.metadata), doc.folder),
    ).fetchone()
    assert row is not None
    return _outcome(str(row[0]))


def store_conversation(conn: psycopg.Connection[Any], conv: Conversation) -> Outcome:
    row = conn.execute(
        "select action from memex.upsert_conversation_outcome(%s, %s, %s::date, %s, %s)",
        (conv.slug, conv.title, conv.created_date, Jsonb(conv.metadata), conv.system_prompt),
    ).fetchone()
    assert row is not None
    messages = conn.execute(
        "select memex.upsert_messages(%s, %s)", (conv.slug, Jsonb(conv.messages))
    ).fetchone()
    return _outcome(str(row[0]), changed=bool(messages and messages[0]))


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
