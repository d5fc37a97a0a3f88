"""CALL memex.rechunk(): stored content re-cut with today's chunking rules (after an upgrade)."""

from __future__ import annotations

import psycopg
import pytest

from tests.db.helpers import Conn, as_role, make_tenants, populate


def _chunks(db: str) -> list[tuple[object, ...]]:
    with psycopg.connect(db) as su:
        return su.execute(
            "select id, source_kind, ord, content from memex.chunks order by source_kind, id"
        ).fetchall()


def test_rechunk_recuts_what_older_rules_cut_and_keeps_the_rest_with_its_vectors(
    conn: Conn, db: str
) -> None:
    make_tenants(conn, "acme", "globex")
    populate(conn, "acme", prefix="a-")
    populate(conn, "globex", prefix="g-")
    current = _chunks(db)
    with psycopg.connect(db, autocommit=True) as su:
        vectors = su.execute("select count(*) from memex.embeddings").fetchone()
        # As an older release would have cut and embedded it: each document's chunk cut
        # differently, its vector made from that text.
        su.execute(
            "with old as (update memex.chunks set content = 'an older cut'"
            "  , content_hash = sha256(convert_to('an older cut', 'UTF8'))"
            "  where source_kind = 'document' returning tenant_id, id, content_hash)"
            " update memex.embeddings as e set content_hash = old.content_hash from old"
            " where e.tenant_id = old.tenant_id and e.chunk_id = old.id"
        )
        assert su.execute("select memex.pending_count()").fetchone() == (0,)
    notices: list[str] = []
    with psycopg.connect(db, autocommit=True) as admin:
        admin.add_notice_handler(lambda d: notices.append(d.message_primary or ""))
        as_role(admin, "memex_admin")
        admin.execute("call memex.rechunk(batch_size => 2)")
        assert admin.execute("select memex.pending_count()").fetchone() == (2,)  # the 2 re-cut
        assert _chunks(db) == current  # same ids, today's content
        with psycopg.connect(db) as su:
            assert su.execute("select count(*) from memex.embeddings").fetchone() == vectors
        admin.execute("call memex.rechunk()")  # idempotent
        assert admin.execute("select memex.pending_count()").fetchone() == (2,)
    assert notices[0].startswith("memex.rechunk: ") and "sources to re-cut" in notices[0]
    assert "done," in notices[-1] and "embed_pending" in notices[-1]


def test_rechunk_refuses_bad_input_and_the_app_role(conn: Conn, db: str) -> None:
    make_tenants(conn, "acme")
    populate(conn, "acme")
    before = _chunks(db)
    as_role(conn, "memex_admin")
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="batch_size"):
        conn.execute("call memex.rechunk(batch_size => 0)")
    conn.execute("reset role")
    as_role(conn, "memex_app")
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        conn.execute("call memex.rechunk()")
    assert _chunks(db) == before


def test_rechunk_gives_messages_stored_before_contexts_their_context(conn: Conn, db: str) -> None:
    """Messages stored by a release without contexts (migration 0024) get them from rechunk,
    one message at a time, and become pending; the content is untouched."""
    make_tenants(conn, "acme")
    conn.execute("select memex.set_tenant('acme', false)")
    conn.execute("select memex.upsert_conversation('c')")
    conn.execute("select memex.upsert_messages('c', %s::jsonb)", (
        '[{"role": "user", "content": "Did you finish the book?"},'
        ' {"role": "assistant", "content": "Yes! Last week."},'
        ' {"role": "user", "content": "Which one?"}]',))  # fmt: skip
    with psycopg.connect(db, autocommit=True) as su:  # as an older release left them
        su.execute("update memex.chunks set context = null,"
                   " content_hash = sha256(convert_to(content, 'UTF8'))")  # fmt: skip
    with psycopg.connect(db, autocommit=True) as admin:
        as_role(admin, "memex_admin")
        admin.execute("call memex.rechunk()")
    rows = conn.execute(
        "select m.seq, k.content, k.context from memex.chunks as k"
        " join memex.messages as m on m.id = k.message_id and m.tenant_id = k.tenant_id"
        " order by m.seq"
    ).fetchall()
    assert rows == [
        (1, "Did you finish the book?", None),
        (2, "Yes! Last week.", "In reply to user: Did you finish the book?"),
        (3, "Which one?", "In reply to assistant: Yes! Last week."),
    ]
