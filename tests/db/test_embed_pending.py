"""CALL memex.embed_pending: exactly one up-to-date vector per chunk, whatever happens.

Real model (the default space): these tests embed a few hundred short chunks."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator

import psycopg
import pytest
from psycopg import sql

from memex.embedding import embed_figures
from tests.db.helpers import admin, load_documents, make_tenants, wait_until
from tests.db.helpers import embedding_state as state

Conn = psycopg.Connection[tuple[object, ...]]


@pytest.fixture
def two_tenants_loaded(conn: Conn, db: str) -> Iterator[str]:
    ids = make_tenants(conn, "a", "b")
    load_documents(db, ids["a"], 240)
    load_documents(db, ids["b"], 120)
    yield db


def test_embed_pending_leaves_nothing_pending_and_one_vector_per_chunk(
    two_tenants_loaded: str,
) -> None:
    dsn = two_tenants_loaded
    notices: list[str] = []
    figures: list[dict[str, object]] = []  # what `memex embed`'s progress bar reads

    def on_notice(diag: psycopg.errors.Diagnostic) -> None:
        notices.append(diag.message_primary or "")
        found = embed_figures(diag)
        if found is not None:
            figures.append(found)

    with admin(dsn) as conn:
        conn.add_notice_handler(on_notice)
        assert conn.execute("select memex.pending_count()").fetchone() == (360,)
        conn.execute("call memex.embed_pending(batch_size => 32)")
        assert conn.execute("select memex.pending_count()").fetchone() == (0,)
    assert state(dsn) == (360, 360, 360, 0)
    assert notices[0] == "memex.embed_pending: 360 chunks to embed into space all-MiniLM-L6-v2@384"
    assert re.match(r"memex\.embed_pending: done, 360 chunks embedded", notices[-1])
    # the bar starts at 0 (not at the total the first NOTICE names) and ends at the total
    assert figures[0] == {"event": "start", "done": 0, "total": 360,
                          "space": "all-MiniLM-L6-v2@384"}  # fmt: skip
    done = [int(f["done"]) for f in figures]  # type: ignore[call-overload]
    assert done == sorted(done) and figures[-1]["event"] == "done" and done[-1] == 360

    with admin(dsn) as conn:  # nothing left: a second run embeds nothing
        conn.execute("call memex.embed_pending()")
    assert state(dsn) == (360, 360, 360, 0)


def test_max_rows_stops_early_and_the_next_call_finishes(two_tenants_loaded: str) -> None:
    with admin(two_tenants_loaded) as conn:
        conn.execute("call memex.embed_pending(batch_size => 16, max_rows => 50)")
        assert conn.execute("select memex.pending_count()").fetchone() == (310,)
        conn.execute("call memex.embed_pending()")
    assert state(two_tenants_loaded)[1:] == (360, 360, 0)


def _run_until_interrupted(dsn: str, interrupt: str) -> psycopg.Error | None:
    """Start embed_pending in a thread, stop it with pg_cancel_backend / pg_terminate_backend
    once some batches are committed; return the error the CALL ended with."""
    outcome: list[psycopg.Error | None] = []
    conn = admin(dsn)
    pid = conn.info.backend_pid

    def run() -> None:
        try:
            conn.execute("call memex.embed_pending(batch_size => 4)")
            outcome.append(None)
        except psycopg.Error as exc:
            outcome.append(exc)

    worker = threading.Thread(target=run)
    worker.start()
    with psycopg.connect(dsn, autocommit=True) as watcher:

        def embedded() -> int:
            row = watcher.execute("select count(*) from memex.embeddings").fetchone()
            return int(row[0]) if row else 0  # type: ignore[call-overload]

        try:
            wait_until(lambda: embedded() >= 20, "20 vectors are committed")
        finally:  # interrupt it whatever happened, so the thread ends
            watcher.execute(f"select {interrupt}(%s::integer)", (pid,))
    worker.join(60)
    conn.close()
    return outcome[0]


@pytest.mark.slow
@pytest.mark.parametrize(
    ("interrupt", "error"),
    [("pg_cancel_backend", psycopg.errors.QueryCanceled),
     ("pg_terminate_backend", psycopg.OperationalError)],
)  # fmt: skip
def test_an_interrupted_run_resumes_to_exactly_one_vector_per_chunk(
    two_tenants_loaded: str, interrupt: str, error: type[BaseException]
) -> None:
    """On Citus a cancel ends the session instead, about one run in three: FATAL
    "RollbackAndReleaseCurrentSubTransaction: unexpected state SUBBEGIN", in the cleanup of a
    batch's exception block (docs/scale.md). What was committed is kept all the same, and a
    new run finishes exactly."""
    dsn = two_tenants_loaded
    ended_with = _run_until_interrupted(dsn, interrupt)
    with psycopg.connect(dsn) as conn:
        distributed = conn.execute("select memex._distributed()").fetchone() == (True,)
    subbegin = isinstance(ended_with, psycopg.errors.InternalError_) and (
        interrupt == "pg_cancel_backend" and "state SUBBEGIN" in str(ended_with)
    )
    assert isinstance(ended_with, error) or (distributed and subbegin), ended_with
    chunks, vectors, good, pending = state(dsn)
    assert 20 <= vectors < chunks, "committed batches are kept, the rest is still pending"
    assert good == vectors and pending == chunks - vectors

    with admin(dsn) as conn:
        conn.execute("call memex.embed_pending()")
    assert state(dsn) == (360, 360, 360, 0)


@pytest.mark.slow
@pytest.mark.parametrize("bulk_index_rows", [None, 100])
def test_two_concurrent_runs_never_embed_a_row_twice(
    two_tenants_loaded: str, bulk_index_rows: int | None
) -> None:
    """With 100, both runs start an initial load without the index: the first to finish
    builds it while the other still writes, which then grows it."""
    dsn = two_tenants_loaded
    if bulk_index_rows is not None:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(sql.SQL("alter database {} set memex.bulk_index_rows = {}").format(
                sql.Identifier(conn.info.dbname), bulk_index_rows))  # fmt: skip
    done: list[int] = []
    start = threading.Barrier(2, timeout=60)

    def run() -> None:
        notices: list[str] = []
        with admin(dsn) as conn:
            conn.add_notice_handler(lambda d: notices.append(d.message_primary or ""))
            conn.execute("select memex.embed('warm up')")  # both with a loaded model, then
            start.wait()  # both CALLs start together
            conn.execute("call memex.embed_pending(batch_size => 8)")
        found = re.search(r"done, (\d+) chunks embedded", notices[-1])
        assert found
        done.append(int(found.group(1)))

    runners = [threading.Thread(target=run) for _ in range(2)]
    for runner in runners:
        runner.start()
    for runner in runners:
        runner.join(120)
    assert len(done) == 2
    assert sum(done) == 360, f"rows went through the model {sum(done)} times for 360 chunks"
    assert state(dsn) == (360, 360, 360, 0)
    assert _vectors_the_index_returns(dsn) == 360


def test_metadata_changes_re_embed_nothing_and_text_changes_only_their_chunks(
    conn: Conn, db: str
) -> None:
    ids = make_tenants(conn, "a")
    sections = (f"Section {i}. " + " ".join(["runbook"] * 150) + f" end {i}." for i in range(4))
    body = "\n\n".join(sections)
    with psycopg.connect(db) as writer:
        writer.execute("select memex.set_tenant(%s)", (ids["a"],))
        writer.execute("select memex.upsert_document('big.md', %s, 'Big')", (body,))
    with admin(db) as run:
        run.execute("call memex.embed_pending()")
    before = dict(conn.execute("select chunk_id, embedded_at from memex.embeddings").fetchall())
    assert len(before) >= 3

    with psycopg.connect(db) as writer:
        writer.execute("select memex.set_tenant(%s)", (ids["a"],))
        writer.execute(
            "select memex.upsert_document('big.md', %s, 'Big', '{\"owner\": \"ops\"}')", (body,)
        )
    assert state(db)[3] == 0, "a metadata change leaves nothing pending"
    with psycopg.connect(db) as writer:
        writer.execute("select memex.set_tenant(%s)", (ids["a"],))
        writer.execute("select memex.upsert_document('big.md', %s, 'Big, renamed')", (body,))
    assert state(db)[3] == 1, "a new title changes the first chunk only (its heading)"

    changed = body.replace("end 3.", "end three, rewritten.")
    with psycopg.connect(db) as writer:
        writer.execute("select memex.set_tenant(%s)", (ids["a"],))
        writer.execute("select memex.upsert_document('big.md', %s, 'Big, renamed')", (changed,))
    assert state(db)[3] == 2, "and the text change only the last chunk"
    with admin(db) as run:
        run.execute("call memex.embed_pending()")
    after = dict(conn.execute("select chunk_id, embedded_at from memex.embeddings").fetchall())
    assert sum(1 for k, v in after.items() if before.get(k) != v) == 2
    assert state(db)[1:] == (len(after), len(after), 0)


def test_embed_on_write_leaves_nothing_pending(conn: Conn, db: str) -> None:
    ids = make_tenants(conn, "a")
    with psycopg.connect(db) as writer:
        writer.execute("set role memex_app")
        writer.execute("set memex.embed_on_write = on")
        writer.execute("select memex.set_tenant(%s)", (ids["a"],))
        writer.execute("select memex.upsert_document('a.md', 'Rotate the keys every quarter.')")
        writer.execute("select memex.upsert_document('a.md', 'Rotate the keys every month.')")
    assert state(db) == (1, 1, 1, 0)


def test_bad_arguments_are_named(conn: Conn) -> None:
    conn.execute("set role memex_admin")
    for call, message in [
        ("call memex.embed_pending(batch_size => 0)", "batch_size must be between"),
        ("call memex.embed_pending(max_rows => 0)", "max_rows must be at least 1"),
        ("call memex.embed_pending('nope')", "unknown embedding space"),
    ]:
        with pytest.raises(psycopg.errors.InvalidParameterValue, match=message):
            conn.execute(call)


def test_the_app_role_cannot_run_the_cross_tenant_job(conn: Conn) -> None:
    conn.execute("set role memex_app")
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        conn.execute("call memex.embed_pending()")


def _index_oid(dsn: str, space_id: int = 1) -> int | None:
    with psycopg.connect(dsn) as conn:
        row = conn.execute(
            "select to_regclass('memex.' || memex._space_index_name(%s))::oid", (space_id,)
        ).fetchone()
    return None if row is None or row[0] is None else int(row[0])


def _vectors_the_index_returns(dsn: str) -> int:
    """How many of the default space's vectors a scan of its HNSW index reaches (ef_search at
    its maximum, more than the chunks: a missing vector would be missing here). On Citus, the
    vectors (the plan of a scan over every shard is not checked there)."""
    with psycopg.connect(dsn, autocommit=True) as conn:  # on its own (Citus: not on a shard)
        keys = conn.execute("select memex.embed('keys')::text").fetchone()
        if conn.execute("select memex._distributed()").fetchone() == (True,):
            found = conn.execute("select count(*) from memex.embeddings where space_id = 1")
            return int(found.fetchone()[0])  # type: ignore[index]
    with psycopg.connect(dsn) as conn:  # SET LOCAL: on Citus they reach the workers' scans
        conn.execute(
            "select set_config('citus.propagate_set_commands', 'local', true)"
            " where current_setting('citus.propagate_set_commands', true) is not null"
        )
        for setting in ("enable_seqscan", "enable_bitmapscan", "enable_sort"):
            conn.execute(f"set local {setting} = off")  # only the HNSW index gives that order
        conn.execute("set local hnsw.ef_search = 1000")
        query = """
            select count(*) from (
                select 1 from memex.embeddings
                 where space_id = 1
                 order by embedding::vector(384) <=> %(keys)s::vector(384)
                 limit 1000) as hits
        """
        args = {"keys": keys[0] if keys else None}
        plan = "\n".join(str(r[0]) for r in conn.execute("explain " + query, args))
        assert "embeddings_space_1_hnsw" in plan, plan
        row = conn.execute(query, args).fetchone()
    assert row is not None
    return int(row[0])  # type: ignore[call-overload]


def _embed_pending_notices(dsn: str, call: str, *settings: str) -> list[str]:
    notices: list[str] = []
    with admin(dsn) as conn:
        conn.add_notice_handler(lambda d: notices.append(d.message_primary or ""))
        for setting in settings:
            conn.execute(setting)
        conn.execute(call)
    return notices


@pytest.mark.single_node("a bulk load defers the HNSW index on one node only (docs/scale.md)")
def test_a_large_load_into_an_empty_space_builds_its_index_once_at_the_end(
    two_tenants_loaded: str,
) -> None:
    dsn = two_tenants_loaded
    before = _index_oid(dsn)
    assert before is not None, "create_space built the empty index"
    notices = _embed_pending_notices(
        dsn, "call memex.embed_pending(batch_size => 32)", "set memex.bulk_index_rows = 100"
    )
    assert state(dsn) == (360, 360, 360, 0)
    assert any("has no vectors yet: its hnsw index is built once at the end" in n for n in notices)
    assert any("building the hnsw index of space all-MiniLM-L6-v2@384" in n for n in notices)
    assert re.match(r"memex\.embed_pending: done, 360 chunks embedded", notices[-1])
    after = _index_oid(dsn)
    assert after is not None and after != before, "the index was dropped and built again"
    assert _vectors_the_index_returns(dsn) == 360


def test_a_load_into_a_space_applications_search_keeps_its_index(two_tenants_loaded: str) -> None:
    dsn = two_tenants_loaded
    with admin(dsn) as conn:  # a few vectors first: the space is active and searchable
        conn.execute("call memex.embed_pending(max_rows => 40)")
    before = _index_oid(dsn)
    notices = _embed_pending_notices(
        dsn, "call memex.embed_pending()", "set memex.bulk_index_rows = 100"
    )
    assert not any("built" in n or "building" in n for n in notices), notices
    assert _index_oid(dsn) == before
    assert state(dsn) == (360, 360, 360, 0)
    assert _vectors_the_index_returns(dsn) == 360


def test_the_default_threshold_and_zero_keep_the_index(two_tenants_loaded: str) -> None:
    dsn = two_tenants_loaded
    before = _index_oid(dsn)
    # 360 chunks: under the default 1000; then 0 turns it off whatever the size
    _embed_pending_notices(dsn, "call memex.embed_pending(max_rows => 100)")
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("truncate memex.embeddings")
    _embed_pending_notices(dsn, "call memex.embed_pending()", "set memex.bulk_index_rows = 0")
    assert _index_oid(dsn) == before
    assert _vectors_the_index_returns(dsn) == 360


@pytest.mark.single_node("a bulk load defers the HNSW index on one node only (docs/scale.md)")
@pytest.mark.slow
def test_an_interrupted_load_leaves_its_index_to_the_next_call(
    two_tenants_loaded: str, conn: Conn
) -> None:
    dsn = two_tenants_loaded
    conn.execute(sql.SQL("alter database {} set memex.bulk_index_rows = 100").format(
        sql.Identifier(conn.info.dbname)))  # fmt: skip
    ended_with = _run_until_interrupted(dsn, "pg_cancel_backend")
    assert isinstance(ended_with, psycopg.errors.QueryCanceled)
    assert _index_oid(dsn) is None, "cancelled mid-load: the index is not there yet"
    chunks, vectors, _, _ = state(dsn)
    assert 20 <= vectors < chunks
    # the space now has vectors and is active: no second drop; the missing index is built
    notices = _embed_pending_notices(dsn, "call memex.embed_pending()")
    assert not any("has no vectors yet" in n for n in notices)
    assert any("building the hnsw index" in n for n in notices)
    assert state(dsn) == (360, 360, 360, 0)
    assert _vectors_the_index_returns(dsn) == 360


@pytest.mark.single_node("a bulk load defers the HNSW index on one node only (docs/scale.md)")
@pytest.mark.slow
def test_a_load_waits_at_most_a_second_for_the_index_and_then_grows_it(
    two_tenants_loaded: str,
) -> None:
    dsn = two_tenants_loaded
    before = _index_oid(dsn)
    with psycopg.connect(dsn) as reader:  # an open transaction that read the table
        reader.execute("select count(*) from memex.embeddings")
        notices = _embed_pending_notices(
            dsn, "call memex.embed_pending()", "set memex.bulk_index_rows = 100"
        )
        reader.rollback()
    assert any("is in use: growing it row by row" in n for n in notices), notices
    assert _index_oid(dsn) == before
    assert state(dsn) == (360, 360, 360, 0)


def test_a_space_that_defers_its_index_is_left_to_its_owner(conn: Conn, db: str) -> None:
    ids = make_tenants(conn, "a")
    load_documents(db, ids["a"], 120)
    conn.execute("""select memex.create_space('later', 'all-MiniLM-L6-v2', 384,
                                              options => '{"defer_index": true}')""")  # fmt: skip
    space = conn.execute("select id from memex.spaces where name = 'later'").fetchone()
    assert space is not None
    notices = _embed_pending_notices(
        db, "call memex.embed_pending('later')", "set memex.bulk_index_rows = 10"
    )
    assert not any("index" in n for n in notices), notices
    assert _index_oid(db, int(space[0])) is None, "reembed or activate_space builds it"  # type: ignore[call-overload]


@pytest.mark.parametrize("value", ["many", "-1", "1e3", "99999999999"])
def test_a_bad_bulk_index_setting_is_named_and_embeds_nothing(
    two_tenants_loaded: str, value: str
) -> None:
    with admin(two_tenants_loaded) as conn:
        conn.execute("select set_config('memex.bulk_index_rows', %s, false)", (value,))
        with pytest.raises(
            psycopg.errors.InvalidParameterValue, match=r"memex\.bulk_index_rows must be a number"
        ):
            conn.execute("call memex.embed_pending()")
    assert state(two_tenants_loaded) == (360, 0, 0, 360)
    assert _index_oid(two_tenants_loaded) is not None


def test_claims_come_shortest_first_so_each_batch_holds_one_length(conn: Conn, db: str) -> None:
    ids = make_tenants(conn, "a")
    with psycopg.connect(db) as writer:
        writer.execute("select memex.set_tenant(%s)", (ids["a"],))
        for i in range(40):  # lengths in no order: 1 to 40 words, shuffled by the modulus
            words = (i * 17) % 40 + 1
            writer.execute("select memex.upsert_document(%s, %s)",
                           (f"d{i}.md", " ".join(["word"] * words)))  # fmt: skip
    steps: list[list[int]] = []
    place: str | None = None  # memex.drain_position, as text
    with admin(db) as run:
        while True:
            with run.transaction():  # the tenant _drain_step acts for, for both statements
                row = run.execute(
                    "select d.finished, d.place::text, d.ids"
                    " from memex._drain_step(1, 8, false, %s::memex.drain_position) as d", (place,),
                ).fetchone()  # fmt: skip
                assert row is not None
                if row[0]:
                    break
                place = row[1]
                lengths = run.execute(
                    "select c.token_count from memex.chunks as c where c.id = any(%s) order by 1",
                    (row[2],),
                ).fetchall()
            steps.append([int(r[0]) for r in lengths])  # type: ignore[call-overload]
    assert [len(s) for s in steps] == [8] * 5
    flat = [t for s in steps for t in s]
    assert flat == sorted(flat) and len(set(flat)) == 40, "every chunk once, shortest first"


def test_a_load_gives_its_working_memory_back_at_its_end(conn: Conn, db: str) -> None:
    """Inside a load (memex.in_load, set by memex._drain_step for its transaction) embed_batch
    keeps up to 96 MB of freed heap mapped for the next claim instead of 48 MB; the CALL
    trims it at its end, and the setting does not outlive the claim's transaction."""
    tenant = make_tenants(conn, "a")["a"]
    with psycopg.connect(db) as writer:
        writer.execute("select memex.set_tenant(%s)", (tenant,))
        for i in range(96):
            text = f"{i} " + "the storage of vectors in a database keeps its index warm " * 12
            writer.execute("select memex.upsert_document(%s, %s)", (f"p/{i}.md", text))
    rss = "select (memex._backend_status()->>'backend_rss_mb')::float"
    with psycopg.connect(db, autocommit=True) as session:
        session.execute("select memex.embed('warm up')")
        loaded = session.execute(rss).fetchone()
        session.execute("call memex.embed_pending(batch_size => 32)")
        after = session.execute(rss).fetchone()
        setting = session.execute("select current_setting('memex.in_load', true)").fetchone()
    assert setting in ((None,), ("",))
    assert loaded is not None and after is not None
    assert float(after[0]) - float(loaded[0]) < 60, (loaded, after)  # type: ignore[arg-type]
    assert state(db)[3] == 0


def test_claims_serve_the_tenants_in_turn(conn: Conn, db: str) -> None:
    """Tenants were drained one after the other in id order, so one that kept writing could
    keep the queue on itself while the others waited. Claims now take one batch from each
    tenant with chunks left, in turn; a tenant done is skipped; the run ends when all are."""
    ids = make_tenants(conn, "a", "b", "c")
    load_documents(db, ids["a"], 30)
    load_documents(db, ids["b"], 6)
    load_documents(db, ids["c"], 6)
    order = sorted(ids.values())
    served: list[str] = []
    with admin(db) as run:
        cursors: object = None
        while True:
            with run.transaction():
                row = run.execute(
                    "select finished, cursors, tenant::text, ids, contents, hashes"
                    " from memex._claim_step(1, 4, %s::jsonb)",
                    (None if cursors is None else json.dumps(cursors),),
                ).fetchone()
                assert row is not None
                if row[0]:
                    break
                cursors = row[1]
                served.append(str(row[2]))
                run.execute("select memex._embed_and_store(1, %s, %s, %s)", row[3:])
    assert served[:6] == order * 2, "one batch of each tenant, in turn"
    counts = {t: served.count(t) for t in order}
    assert counts == {ids["a"]: 8, ids["b"]: 2, ids["c"]: 2}, "30 chunks in 4s, 6 in 4s"
    assert state(db)[3] == 0
