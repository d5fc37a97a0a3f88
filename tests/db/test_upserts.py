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


def _messages(conn: Conn, slug: str = "c") -> list[tuple[object, ...]]:
    return conn.execute(
        "select g.seq, g.role::text, g.content from memex.messages as g"
        " join memex.conversations as c on c.id = g.conversation_id and c.tenant_id ="
        " g.tenant_id where c.slug = %s"
        " order by g.seq",
        (slug,),
    ).fetchall()


def _totals_match_a_recount(conn: Conn, slug: str = "c") -> None:
    row = conn.execute(
        "select c.total_chars, c.total_lines, coalesce(sum(length(g.content)), 0),"
        " coalesce(sum(array_length(regexp_split_to_array(g.content, E'\\n'), 1)), 0)"
        " from memex.conversations as c left join memex.messages as g"
        " on g.tenant_id = c.tenant_id and g.conversation_id = c.id"
        " where c.slug = %s group by c.total_chars, c.total_lines",
        (slug,),
    ).fetchone()
    assert row is not None
    assert row[:2] == row[2:], "running totals drifted from the messages"


def test_messages_without_seq_are_appended_one_call_at_a_time(app: Conn) -> None:
    """How an agent logs its turns: one call per message. Each call used to take seq 0 (the
    array position), so every turn overwrote the one before."""
    app.execute("select memex.upsert_conversation('c')")
    for role, text in (("user", "I use Helix"), ("assistant", "Helix it is.\nNoted.")):
        changed = app.execute(
            "select memex.upsert_messages('c', %s)",
            (json.dumps([{"role": role, "content": text}]),),
        ).fetchone()
        assert changed == (1,)
    assert _messages(app) == [(1, "user", "I use Helix"), (2, "assistant", "Helix it is.\nNoted.")]
    # Several at once continue from the last; an explicit seq still updates in place.
    app.execute("select memex.upsert_messages('c', %s)", (json.dumps([
        {"role": "user", "content": "and Zed?"}, {"role": "assistant", "content": "Also fine."},
    ]),))  # fmt: skip
    app.execute(
        "select memex.upsert_messages('c', %s)",
        (json.dumps([{"seq": 1, "role": "user", "content": "I use Helix daily"}]),),
    )
    assert [r[0] for r in _messages(app)] == [1, 2, 3, 4]
    assert _messages(app)[0] == (1, "user", "I use Helix daily")
    # Without seq after explicit ones in the same payload: after the highest of both.
    app.execute("select memex.upsert_messages('c', %s)", (json.dumps([
        {"seq": 9, "role": "user", "content": "nine"}, {"role": "assistant", "content": "ten"},
    ]),))  # fmt: skip
    assert [r[0] for r in _messages(app)][-2:] == [9, 10]
    assert app.execute("select count(*) from memex.chunks where source_kind = 'message'"
                       ).fetchone() == (6,)  # fmt: skip
    _totals_match_a_recount(app)


def test_concurrent_appends_keep_every_message(db: str, conn: Conn) -> None:
    make_tenants(conn, "acme")
    with psycopg.connect(db, autocommit=True) as setup:
        setup.execute("set role memex_app")
        setup.execute("select memex.set_tenant('acme', false)")
        setup.execute("select memex.upsert_conversation('c')")
    errors: list[BaseException] = []
    barrier = threading.Barrier(4)

    def agent(n: int) -> None:
        try:
            with psycopg.connect(db, autocommit=True) as c:
                c.execute("set role memex_app")
                c.execute("select memex.set_tenant('acme', false)")
                barrier.wait()
                for turn in range(5):
                    c.execute(
                        "select memex.upsert_messages('c', %s)",
                        (json.dumps([{"role": "user", "content": f"agent {n} turn {turn}"}]),),
                    )
        except BaseException as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=agent, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    as_role(conn, "memex_app")
    conn.execute("select memex.set_tenant('acme', false)")
    found = _messages(conn)
    assert [r[0] for r in found] == list(range(1, 21))
    assert len({r[2] for r in found}) == 20
    for n in range(4):  # each agent's turns keep their order
        mine = [r[2] for r in found if str(r[2]).startswith(f"agent {n} ")]
        assert mine == [f"agent {n} turn {t}" for t in range(5)]


def test_replace_makes_the_payload_the_whole_conversation(app: Conn) -> None:
    """A re-imported chat export whose thread moved to another branch: the stored thread must
    become the new one, not the new messages mixed into the old thread."""
    app.execute("select memex.upsert_conversation('c')")
    old_thread = [
        {"role": "user", "content": "m1"},
        {"role": "assistant", "content": "m2"},
        {"role": "user", "content": "m3"},
        {"role": "assistant", "content": "m4\nend"},
    ]
    app.execute("select memex.upsert_messages('c', %s, replace => true)", (json.dumps(old_thread),))
    assert [r[0] for r in _messages(app)] == [1, 2, 3, 4], "seq counts from 1"
    new_branch = [{"role": "user", "content": "m1"}, {"role": "assistant", "content": "m2b"}]
    outcome = app.execute(
        "select inserted, updated, unchanged, removed"
        " from memex.upsert_messages_outcome('c', %s, true)",
        (json.dumps(new_branch),),
    ).fetchone()
    assert outcome == (0, 1, 1, 2)
    assert _messages(app) == [(1, "user", "m1"), (2, "assistant", "m2b")]
    contents = app.execute("select content from memex.chunks where source_kind = 'message'"
                           " order by content").fetchall()  # fmt: skip
    assert contents == [("m1",), ("m2b",)], "the removed turns' chunks go with them"
    _totals_match_a_recount(app)
    assert app.execute("select memex.upsert_messages('c', %s, true)",
                       (json.dumps(new_branch),)).fetchone() == (0,)  # fmt: skip


def test_replace_must_be_a_boolean_and_integers_must_fit(app: Conn) -> None:
    app.execute("select memex.upsert_conversation('c')")
    app.execute('select memex.upsert_messages(\'c\', \'[{"role": "user", "content": "x"}]\')')
    before = counts(app)
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="replace must be true or false"):
        app.execute("select memex.upsert_messages('c', '[]', null)")
    big = 2**31
    with pytest.raises(
        psycopg.errors.InvalidParameterValue,
        match=r"messages\[0\]\.seq: expected an integer from 0 to 2147",
    ):
        app.execute("select memex.upsert_messages('c', %s)",
                    (json.dumps([{"seq": big, "role": "user", "content": "x"}]),))  # fmt: skip
    for field, where in (("level", "artefact.level"), ("index", r"summaries\[0\]\.index")):
        artefact = json.loads(json.dumps(ARTEFACT))
        if field == "level":
            artefact["level"] = big
        else:
            artefact["summaries"][0]["index"] = big
        with pytest.raises(
            psycopg.errors.InvalidParameterValue, match=where + ": expected an integer"
        ):
            app.execute("select * from memex.upsert_summaries('2025-06-25__orage', %s)",
                        (json.dumps(artefact),))  # fmt: skip
    assert counts(app) == before


def test_payload_errors_read_as_message_and_hint_without_a_python_traceback(app: Conn) -> None:
    """psql shows an error's message, hint and context: a payload error raised in PL/Python read
    `plpy.Error: ...` followed by a Python traceback."""
    app.execute("select memex.upsert_conversation('c')")
    with pytest.raises(psycopg.errors.InvalidParameterValue) as raised:
        app.execute("select memex.upsert_messages('c', %s)",
                    (json.dumps([{"role": "robot", "content": "x"}]),))  # fmt: skip
    diag = raised.value.diag
    assert diag.message_primary == (
        "messages[0].role: unknown role 'robot' (expected one of user, assistant, system, tool)"
    )
    assert diag.message_hint and "docs/data-model.md" in diag.message_hint
    assert "Traceback" not in (diag.context or "")
    with pytest.raises(psycopg.errors.InvalidParameterValue) as raised:
        app.execute("select * from memex.upsert_summaries('s', %s)",
                    (json.dumps({**ARTEFACT, "version": 1}),))  # fmt: skip
    assert raised.value.diag.message_primary == "artefact.version: expected 2, got 1"
    assert "Traceback" not in (raised.value.diag.context or "")


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
                messages = [{"seq": i, "role": "user", "content": f"m{i}"} for i in range(8)]
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


@pytest.mark.single_node(
    "counts index scans in pg_stat_user_indexes, which Citus keeps per shard on the workers"
)
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


def test_titles_are_bounded(app: Conn) -> None:
    """A document's title heads its first chunk: a 10,000,001-character title made a chunk the
    model refused, first in every run's queue, and no tenant's chunks were embedded again."""
    before = counts(app)
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="title has 10000001 char"):
        app.execute("select memex.upsert_document('evil.md', 'hello', repeat('a', 10000001))")
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="conversation title has 1001"):
        app.execute("select memex.upsert_conversation('c', repeat('t', 1001))")
    artefact = {**ARTEFACT, "title": "t" * 1001}
    with pytest.raises(psycopg.errors.InvalidParameterValue, match=r"artefact\.title: 1001"):
        app.execute("select * from memex.upsert_summaries('2025-06-25__orage', %s)",
                    (json.dumps(artefact),))  # fmt: skip
    assert counts(app) == before
    app.execute("select memex.upsert_document('ok.md', 'hello', repeat('a', 1000))")


def _contexts(app: Conn) -> list[tuple[object, ...]]:
    return app.execute(
        "select m.seq, k.content, k.context, k.content_hash"
        "     = sha256(convert_to(memex._embedding_text(k.content, k.context), 'UTF8'))"
        "  from memex.chunks as k join memex.messages as m on m.id = k.message_id and"
        " m.tenant_id = k.tenant_id"
        " order by m.seq, k.ord"
    ).fetchall()


def test_messages_are_embedded_with_the_turn_before_them_and_their_content_stays(
    app: Conn,
) -> None:
    """A short reply means little alone: each message chunk carries the turn before it as its
    context (what is embedded after the content; the content, searched and cited, stays as
    written), and a neighbour's change makes the chunk pending again."""
    app.execute("select memex.upsert_conversation('c')")
    app.execute("select memex.upsert_messages('c', %s)", (json.dumps([
        {"role": "user", "content": "Did you finish the book?"},
        {"role": "assistant", "content": "Yes! Last week."},
    ]),))  # fmt: skip
    assert _contexts(app) == [
        (1, "Did you finish the book?", None, True),
        (2, "Yes! Last week.", "In reply to user: Did you finish the book?", True),
    ]
    before = app.execute("select content_hash from memex.chunks where context is not null"
                         ).fetchone()  # fmt: skip
    # an unchanged payload changes nothing; a changed neighbour changes the reply's context
    app.execute("select memex.upsert_messages('c', %s)", (json.dumps([
        {"seq": 1, "role": "user", "content": "Did you finish the book?"}]),))  # fmt: skip
    assert app.execute("select content_hash from memex.chunks where context is not null"
                       ).fetchone() == before  # fmt: skip
    app.execute("select memex.upsert_messages('c', %s)", (json.dumps([
        {"seq": 1, "role": "user", "content": "Did you finish the " + "long " * 80 + "novel?"}
    ]),))  # fmt: skip
    rows = _contexts(app)
    context = str(rows[1][2])
    assert rows[1][1] == "Yes! Last week." and rows[1][3] is True
    assert context.startswith("In reply to user: Did you finish the long") and context.endswith(
        " ..."
    )
    assert len(context) <= len("In reply to user: ") + 300 + 4
    assert app.execute("select content_hash from memex.chunks where context is not null"
                       ).fetchone() != before, "the reply is pending again"  # fmt: skip
    # replace removes the first turn: the reply is now the first message, with no context
    app.execute("select memex.upsert_messages('c', %s, replace => true)", (json.dumps([
        {"seq": 2, "role": "assistant", "content": "Yes! Last week."}]),))  # fmt: skip
    assert _contexts(app) == [(2, "Yes! Last week.", None, True)]
    # search returns the message as written, not its context
    found = app.execute(
        "select content from memex.rag_search('last week', mode => 'text')"
    ).fetchall()
    assert found == [("Yes! Last week.",)]


def test_what_is_embedded_for_a_reply_is_its_text_then_the_turn_before(app: Conn) -> None:
    app.execute("set memex.embed_on_write = on")
    app.execute("select memex.upsert_conversation('c')")
    app.execute("select memex.upsert_messages('c', %s)", (json.dumps([
        {"role": "user", "content": "Did you finish the book?"},
        {"role": "assistant", "content": "Yes! Last week."},
    ]),))  # fmt: skip
    stored = app.execute(
        "select m.seq, e.embedding::text, memex._embedding_text(k.content, k.context)"
        "  from memex.embeddings as e"
        "  join memex.chunks as k on k.tenant_id = e.tenant_id and k.id = e.chunk_id"
        "  join memex.messages as m on m.tenant_id = k.tenant_id and m.id = k.message_id"
        " where e.content_hash = k.content_hash order by m.seq"
    ).fetchall()
    assert [seq for seq, _v, _t in stored] == [1, 2], "both stored, and up to date"

    def distance(
        vector: object, text: str
    ) -> float:  # memex.embed on its own (Citus: not on a shard)
        found = app.execute("select %s::vector <=> memex.embed(%s)", (vector, text)).fetchone()
        return float(found[0])  # type: ignore[index,arg-type]

    assert all(distance(v, str(t)) < 1e-6 for _s, v, t in stored)
    assert distance(stored[1][1], "Yes! Last week.") > 0.05, "not the reply's text alone"


def test_a_write_gives_contexts_to_its_turns_and_the_turns_after_them(app: Conn) -> None:
    """An upsert recomputes the contexts of the messages it wrote and of the message after each
    (seq may skip numbers: the turn before is the one with the highest lower seq); no other
    chunk is touched."""
    app.execute("select memex.upsert_conversation('c')")
    app.execute("select memex.upsert_messages('c', %s)", (json.dumps([
        {"seq": 1, "role": "user", "content": "one"},
        {"seq": 5, "role": "assistant", "content": "five"},
        {"seq": 9, "role": "user", "content": "nine"},
    ]),))  # fmt: skip
    versions = (
        "select m.seq, k.xmin::text from memex.chunks as k"
        " join memex.messages as m on m.id = k.message_id and m.tenant_id = k.tenant_id"
        " where m.seq in (1, 5) order by m.seq"
    )
    first = app.execute(versions).fetchall()
    # a turn written between 5 and 9: 9 now replies to it, 1 and 5 are untouched
    app.execute("select memex.upsert_messages('c', %s)", (json.dumps([
        {"seq": 7, "role": "assistant", "name": "Mel", "content": "seven"}]),))  # fmt: skip
    assert [(r[0], r[2]) for r in _contexts(app)] == [
        (1, None), (5, "In reply to user: one"), (7, "In reply to assistant: five"),
        (9, "In reply to Mel: seven"),
    ]  # fmt: skip
    assert all(r[3] for r in _contexts(app)), "every hash covers what is embedded"
    assert app.execute(versions).fetchall() == first, "turns 1 and 5 were not rewritten"
    # an appended turn (no seq) replies to the last one
    app.execute(
        """select memex.upsert_messages('c', '[{"role": "assistant", "content": "ten"}]')"""
    )
    assert _contexts(app)[-1][:3] == (10, "ten", "In reply to user: nine")


def test_a_folder_that_holds_documents_is_not_deleted(app: Conn) -> None:
    """A plain foreign key (migration 0030, no ON DELETE SET NULL (column): docs/scale.md):
    deleting a folder that still holds a document is refused and changes nothing."""
    app.execute("select memex.upsert_document('notes/a.md', 'alpha', folder => 'notes')")
    with pytest.raises(psycopg.errors.ForeignKeyViolation), app.transaction():
        app.execute("delete from memex.folders")
    assert app.execute("select d.uri, f.path from memex.documents as d "
                       "join memex.folders as f on f.id = d.folder_id and f.tenant_id ="
                       " d.tenant_id").fetchall() == [
        ("notes/a.md", "notes")]  # fmt: skip
    app.execute("select memex.delete_document('notes/a.md')")
    app.execute("delete from memex.folders")
    assert app.execute("select count(*) from memex.folders").fetchone() == (0,)
