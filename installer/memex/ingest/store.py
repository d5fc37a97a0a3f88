"""Writes items through the public upsert functions, in the caller's transaction, and says for
each whether it was inserted, updated or left unchanged."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import psycopg
from psycopg.types.json import Jsonb

from memex.ingest.items import Artefact, Conversation, Document, Item

Outcome = Literal["inserted", "updated", "unchanged"]


@dataclass(frozen=True)
class Stored:
    outcome: Outcome
    messages_removed: int = 0  # a conversation's stored messages no longer in its file


def _outcome(action: str, changed: bool = False) -> Outcome:
    if action == "unchanged" and changed:
        return "updated"
    if action not in ("inserted", "updated", "unchanged"):
        raise ValueError(f"unexpected upsert action {action!r}")
    return action  # type: ignore[return-value]


def store_document(conn: psycopg.Connection[Any], doc: Document) -> Stored:
    row = conn.execute(
        "select action from memex.upsert_document_outcome(%s, %s, %s, %s, %s)",
        (doc.uri, doc.content, doc.title, Jsonb(doc.metadata), doc.folder),
    ).fetchone()
    assert row is not None
    return Stored(_outcome(str(row[0])))


def store_conversation(conn: psycopg.Connection[Any], conv: Conversation) -> Stored:
    row = conn.execute(
        "select action from memex.upsert_conversation_outcome(%s, %s, %s::date, %s, %s)",
        (conv.slug, conv.title, conv.created_date, Jsonb(conv.metadata), conv.system_prompt),
    ).fetchone()
    assert row is not None
    # A file holds the whole conversation: messages no longer in it (another branch of a
    # ChatGPT thread, a turn deleted in the app) are removed, and seq counts from 1.
    messages = conn.execute(
        "select inserted, updated, removed from memex.upsert_messages_outcome(%s, %s, true)",
        (conv.slug, Jsonb(conv.messages)),
    ).fetchone()
    assert messages is not None
    return Stored(_outcome(str(row[0]), changed=any(messages)), messages_removed=messages[2])


def store_artefact(conn: psycopg.Connection[Any], art: Artefact) -> Stored:
    row = conn.execute(
        "select inserted, updated, unchanged from memex.upsert_summaries(%s, %s)",
        (art.slug, Jsonb(art.payload)),
    ).fetchone()
    inserted, updated, unchanged = row if row else (0, 0, 0)
    if updated or (inserted and unchanged):
        return Stored("updated")
    return Stored("inserted" if inserted else "unchanged")


def store(conn: psycopg.Connection[Any], item: Item) -> Stored:
    if isinstance(item, Document):
        return store_document(conn, item)
    if isinstance(item, Conversation):
        return store_conversation(conn, item)
    return store_artefact(conn, item)
