"""Upserts: idempotency, bad input (clear error, right SQLSTATE, nothing written), concurrency."""

from __future__ import annotations

import json
import random
import threading

import psycopg
import pytest

from tests.db.helpers import ARTEFACT, Conn, as_role, counts, make_tenants, populate


@pytest.fixture
def app(conn: Conn) -> Conn:
    make_tenants(conn, "acme")
    as_role(conn, "memex_app")
    conn.execute("select memex.set_tenant('acme', false)")
    return conn


def test_rerunning_the_same_upserts_changes_no_row_counts(app: Conn) -> None:
    populate(app, "acme")
    before = counts(app)
    assert before["chunks"] >= 5
    populate(app, "acme")
    assert counts(app) == before


def test_unchanged_content_writes_nothing_and_metadata_keeps_chunks(app: Conn) -> None:
    app.execute("select memex.upsert_document('d', 'alpha beta gamma')")
    chunk = app.execute("select id, xmin::text from memex.chunks").fetchone()
    app.execute("select memex.upsert_document('d', 'alpha beta gamma')")
    app.execute("select memex.upsert_document('d', 'alpha beta gamma', null, '{\"k\": 1}')")
    assert app.execute("select id, xmin::text from memex.chunks").fetchone() == chunk
    # A title counts for search: it becomes the first chunk's first line (same chunk id).
    app.execute("select memex.upsert_document('d', 'alpha beta gamma', 'A title', '{\"k\": 1}')")
    rows = app.execute("select id, content from memex.chunks").fetchall()
    assert rows == [(chunk[0], "A title\n\nalpha beta gamma")]  # type: ignore[index]
    app.execute("select memex.upsert_document('d', '# A title\n\nalpha', 'A title')")
    rows = app.execute("select id, content from memex.chunks").fetchall()
    assert rows == [(chunk[0], "# A title\n\nalpha")], "content that opens with its title"  # type: ignore[index]
    app.execute("select memex.upsert_document('d', 'delta epsilon')")
    rows = app.execute("select id, content from memex.chunks").fetchall()
    assert rows == [(chunk[0], "delta epsilon")]  # type: ignore[index]


def test_outcome_variants_say_what_each_upsert_did(app: Conn) -> None:
    def document(content: str, metadata: str = "{}") -> tuple[object, ...]:
        sql = "select id, action from memex.upsert_document_outcome('kb/a.md', %s, 'A', %s::jsonb)"
        row = app.execute(sql, (content, metadata)).fetchone()
        assert row is not None
        return row

    first = document("one")
    assert first[1] == "inserted"
    assert document("one") == (first[0], "unchanged")
    assert document("one", '{"team": "ops"}') == (first[0], "updated")  # metadata only
    assert document("two", '{"team": "ops"}') == (first[0], "updated")
    assert app.execute("select memex.upsert_document('kb/a.md', 'two', 'A', "
                       "'{\"team\": \"ops\"}')").fetchone() == (first[0],)  # fmt: skip

    def conversation(title: str | None) -> object:
        row = app.execute("select action from memex.upsert_conversation_outcome('c1', %s)",
                          (title,)).fetchone()  # fmt: skip
        return row[0] if row else None

    assert [conversation("T"), conversation("T"), conversation(None), conversation("U")] == [
        "inserted", "unchanged", "unchanged", "updated"]  # fmt: skip


def test_summaries_report_inserted_updated_unchanged(app: Conn) -> None:
    first = app.execute("select * from memex.upsert_summaries('2025-06-25__orage', %s)",
                        (json.dumps(ARTEFACT),)).fetchone()  # fmt: skip
    assert first == (2, 0, 0)
    changed = json.loads(json.dumps(ARTEFACT))
    changed["summaries"][1]["summary"] = "Conseils révisés."
    again = app.execute("select * from memex.upsert_summaries('2025-06-25__orage', %s)",
                        (json.dumps(changed),)).fetchone()  # fmt: skip
    assert again == (0, 1, 1)
    topics = app.execute("select topics from memex.summaries where index = 0").fetchone()
    assert topics == (["meteo", "maison"],)


def test_duplicates_inside_one_payload(app: Conn) -> None:
    app.execute("select memex.upsert_conversation('c')")
    same = [{"seq": 1, "role": "user", "content": "x"}] * 2
    assert app.execute("select memex.upsert_messages('c', %s)", (json.dumps(same),)).fetchone() == (
        1,
    )
    clash = [{"seq": 2, "role": "user", "content": "x"}, {"seq": 2, "role": "user", "content": "y"}]
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="seq 2 appears twice"):
        app.execute("select memex.upsert_messages('c', %s)", (json.dumps(clash),))


def _bad_artefacts() -> list[tuple[str, object, str]]:
    no_text = json.loads(json.dumps(ARTEFACT))
    del no_text["summaries"][1]["summary"]
    bad_covers = json.loads(json.dumps(ARTEFACT))
    bad_covers["summaries"][0]["covers"] = [1, {"id": 2}]
    covers_string = json.loads(json.dumps(ARTEFACT))
    covers_string["summaries"][0]["covers"] = "1,2"
    truncated = {k: v for k, v in ARTEFACT.items() if k != "summaries"}
    return [
        ("summary without text", no_text, r"summaries\[1\]\.summary: missing"),
        ("wrong type in covers", bad_covers, r"summaries\[0\]\.covers\[1\]: expected an integer"),
        ("covers not an array", covers_string, r"summaries\[0\]\.covers: expected an array"),
        ("truncated artefact", truncated, r"artefact\.summaries: expected an array"),
        ("wrong version", {**ARTEFACT, "version": 1}, r"artefact\.version: expected 2"),
        ("not an object", [1, 2], "artefact: expected an object"),
    ]


@pytest.mark.parametrize(("case", "artefact", "message"), _bad_artefacts(),
                         ids=[c[0] for c in _bad_artefacts()])  # fmt: skip
def test_bad_artefacts_are_rejected_whole(
    app: Conn, case: str, artefact: object, message: str
) -> None:
    before = counts(app)
    with pytest.raises(psycopg.errors.InvalidParameterValue, match=message):
        app.execute("select * from memex.upsert_summaries('2025-06-25__orage', %s)",
                    (json.dumps(artefact),))  # fmt: skip
    assert counts(app) == before


def test_truncated_json_text_is_refused_by_the_server(app: Conn) -> None:
    with pytest.raises(psycopg.errors.InvalidTextRepresentation):
        app.execute("select * from memex.upsert_summaries('s', %s::jsonb)",
                    (json.dumps(ARTEFACT)[:40],))  # fmt: skip


def test_unknown_role_names_the_field_and_writes_nothing(app: Conn) -> None:
    app.execute("select memex.upsert_conversation('c')")
    before = counts(app)
    good = {"role": "user", "content": "fine"}
    with pytest.raises(psycopg.errors.InvalidParameterValue, match=r"messages\[1\]\.role"):
        app.execute("select memex.upsert_messages('c', %s)",
                    (json.dumps([good, {"role": "robot", "content": "x"}]),))  # fmt: skip
    assert counts(app) == before


def test_nul_bytes_are_refused(app: Conn) -> None:
    with pytest.raises(psycopg.errors.UntranslatableCharacter):
        app.execute("select memex.upsert_document('d', %s::jsonb ->> 'c')", ('{"c": "a\\u0000b"}',))
    with pytest.raises(psycopg.DataError, match="NUL"):
        app.execute("select memex.upsert_document('d', %s)", ("a\x00b",))
    assert counts(app)["documents"] == 0


def test_unknown_conversation_for_messages(app: Conn) -> None:
    with pytest.raises(psycopg.errors.NoDataFound, match="unknown conversation: nope"):
        app.execute("select memex.upsert_messages('nope', '[]')")


@pytest.mark.slow
def test_a_10_mb_document_is_chunked_not_refused(app: Conn) -> None:
    paragraph = "PostgreSQL stores each tenant's rows; the policy compares tenant ids. " * 20 + "\n"
    body = paragraph * (10 * 2**20 // len(paragraph))
    assert len(body) > 9.9 * 2**20
    app.execute("select memex.upsert_document('big', %s)", (body,))
    n, biggest = app.execute("select count(*), max(token_count) from memex.chunks").fetchone()  # type: ignore[misc]
    assert n > 10_000
    assert biggest <= 200
    rss = app.execute("select (memex.status()->'backend'->>'backend_rss_mb')::float").fetchone()
    assert rss is not None and float(rss[0]) < 1500  # type: ignore[arg-type]


@pytest.mark.slow
def test_sixteen_concurrent_sessions_store_one_copy_without_deadlock(db: str, conn: Conn) -> None:
    make_tenants(conn, "acme")
    errors: list[BaseException] = []
    barrier = threading.Barrier(16)

    def worker() -> None:
        try:
            with psycopg.connect(db) as c:
                c.execute("set role memex_app")
                c.execute("select memex.set_tenant('acme')")
                barrier.wait()
                c.execute("select * from memex.upsert_summaries('2025-06-25__orage', %s)",
                          (json.dumps(ARTEFACT),))  # fmt: skip
                for i in range(5):
                    c.execute("select memex.upsert_document(%s, %s)", (f"doc-{i}", f"text {i}"))
                messages = [{"role": "user", "content": f"m{i}"} for i in range(8)]
                c.execute(
                    "select memex.upsert_messages('2025-06-25__orage', %s)", (json.dumps(messages),)
                )
                c.commit()
        except BaseException as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    as_role(conn, "memex_app")
    conn.execute("select memex.set_tenant('acme', false)")
    found = counts(conn)
    assert found["conversations"] == 1
    assert found["summaries"] == 2
    assert found["documents"] == 5
    assert found["messages"] == 8
    assert found["chunks"] == 2 + 5 + 8


def test_a_bulk_load_in_one_transaction_never_reads_a_whole_tenant_per_row(app: Conn) -> None:
    """The tables are new and empty when a session's first plans are made: a cached generic
    plan then looked chunks up by tenant alone (the delete of a document's extra chunks) and so
    did the foreign-key check on documents, and the text index's compaction check read every
    segment this transaction had folded. Each row's cost grew with the load: 3,633 abstracts
    took 49-52 s instead of 42-44 (docs/architecture.md). Counted by the index statistics."""
    words = [f"w{n}" for n in range(3000)]
    rng = random.Random(7)
    with app.transaction():
        for n in range(160):
            text = " ".join(rng.choice(words) for _ in range(450))  # about three chunks each
            app.execute("select memex.upsert_document(%s, %s)", (f"doc-{n}", text))
    app.execute("select pg_stat_force_next_flush()")
    app.execute("select 1")  # the end of this transaction flushes the counters
    app.execute("select pg_stat_clear_snapshot()")
    reads = {
        name: (scans, tuples)
        for name, scans, tuples in app.execute(
            "select indexrelname, idx_scan, idx_tup_read from pg_stat_user_indexes"
            " where schemaname = 'memex' and relname in ('chunks', 'documents', 'text_segments')"
        )
    }
    # Measured on the old sql/: 716 chunk rows read per delete, 39 document rows per lookup (and
    # none through documents_pkey), 81 segments per check: each assertion below failed.
    assert reads["chunks_text_doc"][1] <= 1000  # the first calls, while the table is tiny
    for index in ("documents_uri_prefix", "documents_pkey", "text_segments_pkey"):
        scans, tuples = reads[index]
        assert scans > 100 and tuples <= 20 * scans, (index, scans, tuples)
