"""CALL memex.reembed: a new space beside the active one, resumable, one run per space, one
short switch, rollback. Real model (all-MiniLM-L6-v2 384 -> 256, truncated), 360 chunks in two
tenants, run as memex_admin (no BYPASSRLS)."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator

import psycopg
import pytest

from tests.db.helpers import admin, load_documents, make_tenants, wait_until

Conn = psycopg.Connection[tuple[object, ...]]
OLD, NEW = "all-MiniLM-L6-v2@384", "all-MiniLM-L6-v2@256"
REEMBED = "call memex.reembed('all-MiniLM-L6-v2', 256, batch_size => {batch})"
QUERY = "how do I rotate the keys"


@pytest.fixture
def embedded(conn: Conn, db: str) -> Iterator[tuple[str, dict[str, str]]]:
    """360 chunks in tenants a and b, all embedded in the default (old) space."""
    ids = make_tenants(conn, "a", "b")
    load_documents(db, ids["a"], 240)
    load_documents(db, ids["b"], 120)
    with admin(db) as run:
        run.execute("call memex.embed_pending(batch_size => 64)")
    yield db, ids


def space_state(dsn: str, space: str) -> tuple[int, int, int]:
    """(vectors, distinct chunks, vectors matching their chunk's content) in a space."""
    with psycopg.connect(dsn) as conn:
        row = conn.execute(
            """
            select count(*), count(distinct e.chunk_id)
                 , count(*) filter (where c.content_hash = e.content_hash)
              from memex.embeddings as e join memex.spaces as s on s.id = e.space_id
              left join memex.chunks as c on c.tenant_id = e.tenant_id and c.id = e.chunk_id
             where s.name = %s
            """,
            (space,),
        ).fetchone()
        assert row is not None
        return tuple(int(v) for v in row)  # type: ignore[return-value]


def old_space_snapshot(dsn: str) -> list[tuple[object, ...]]:
    with psycopg.connect(dsn) as conn:
        return conn.execute(
            "select chunk_id, content_hash, embedded_at, embedding::text from memex.embeddings"
            " where space_id = 1 order by chunk_id"
        ).fetchall()


def top(conn: Conn, space: str | None = None) -> list[tuple[str, float]]:
    rows = conn.execute(
        "select chunk_id::text, similarity"
        " from memex.rag_search(%s, k => 5, mode => 'vector', space => %s)",
        (QUERY, space),
    ).fetchall()
    return [(str(r[0]), round(float(r[1]), 4)) for r in rows]  # type: ignore[arg-type]


def app(dsn: str, tenant: str) -> Conn:
    conn = psycopg.connect(dsn, autocommit=True)
    conn.execute("set role memex_app")
    conn.execute("select memex.set_tenant(%s, false)", (tenant,))
    return conn


def same(a: list[tuple[str, float]], b: list[tuple[str, float]]) -> bool:
    return [c for c, _ in a] == [c for c, _ in b] and all(
        abs(x - y) < 2e-4 for (_, x), (_, y) in zip(a, b, strict=True)
    )


@pytest.mark.slow
def test_dimension_change_while_searches_run_sees_old_then_new_and_no_error(
    embedded: tuple[str, dict[str, str]],
) -> None:
    dsn, ids = embedded
    with app(dsn, ids["a"]) as reader:
        old_top = top(reader)
    before = old_space_snapshot(dsn)
    seen: list[list[tuple[str, float]]] = []
    errors: list[BaseException] = []
    stop = threading.Event()

    def search_loop() -> None:
        with app(dsn, ids["a"]) as reader:
            while not stop.is_set():
                try:
                    seen.append(top(reader))
                    reader.execute("select count(*) from memex.rag_search(%s)", (QUERY,))  # hybrid
                except psycopg.Error as exc:  # pragma: no cover - the assertion reports it
                    errors.append(exc)

    loop = threading.Thread(target=search_loop)
    loop.start()
    notices: list[str] = []
    try:
        with admin(dsn) as run:
            run.add_notice_handler(lambda d: notices.append(d.message_primary or ""))
            run.execute(REEMBED.format(batch=16))
        after_switch = len(seen)
        wait_until(lambda: len(seen) >= after_switch + 3 or bool(errors),
                   "three searches ran after the switch", timeout=30)  # fmt: skip
    finally:
        stop.set()
        loop.join(30)
    with app(dsn, ids["a"]) as reader:
        new_top = top(reader)
        assert same(top(reader, OLD), old_top), "the old space still answers when named"
    assert not same(old_top, new_top), "256 dimensions rank or score differently"
    assert errors == []
    kinds = ["old" if same(s, old_top) else "new" if same(s, new_top) else "other" for s in seen]
    assert "other" not in kinds, "a search mixed the spaces"
    assert kinds[0] == "old" and kinds[-1] == "new"
    switch = kinds.index("new")
    assert set(kinds[switch:]) == {"new"}, "never back to the old space after the switch"
    assert kinds.count("old") >= 3, "searches ran during the re-embedding"
    assert space_state(dsn, NEW) == (360, 360, 360)
    assert old_space_snapshot(dsn) == before, "the old space is untouched"
    assert any(
        re.match(r"memex\.reembed: \d+/360 chunks \(.*%\), \d+ chunks/s, ETA \d+ s", n)
        for n in notices
    )
    assert re.search(r"is active \(switch: [\d.]+ ms", notices[-1])
    with psycopg.connect(dsn) as conn:
        status = conn.execute("select name, status from memex.spaces order by id").fetchall()
        progress = conn.execute(
            "select phase, rows_done, rows_total, from_space, activation_ms >= 0"
            " from memex.reembed_progress"
        ).fetchone()
    assert status == [(OLD, "retired"), (NEW, "active")]
    assert progress == ("done", 360, 360, OLD, True)


def _reembed_until_terminated(dsn: str) -> None:
    conn = admin(dsn)
    pid = conn.info.backend_pid
    failed: list[BaseException] = []

    def run() -> None:
        try:
            conn.execute(REEMBED.format(batch=8))
        except psycopg.OperationalError as exc:
            failed.append(exc)

    worker = threading.Thread(target=run)
    worker.start()
    with psycopg.connect(dsn, autocommit=True) as watcher:

        def done() -> int:
            row = watcher.execute("select rows_done from memex.reembeds").fetchone()
            return int(row[0]) if row else 0  # type: ignore[call-overload]

        try:
            wait_until(lambda: done() >= 180, "half the chunks are re-embedded", timeout=120)
        finally:  # terminate it whatever happened, so the thread ends
            watcher.execute("select pg_terminate_backend(%s::integer)", (pid,))
    worker.join(60)
    conn.close()
    assert failed, "the CALL was terminated"


@pytest.mark.slow
def test_terminated_half_way_the_same_call_resumes_to_exactly_one_vector_per_chunk(
    embedded: tuple[str, dict[str, str]],
) -> None:
    dsn, _ids = embedded
    before = old_space_snapshot(dsn)
    _reembed_until_terminated(dsn)
    vectors, _distinct, _fresh = space_state(dsn, NEW)
    assert 180 <= vectors < 360
    with psycopg.connect(dsn) as conn:
        row = conn.execute(
            "select phase, running_pid, rows_done from memex.reembed_progress"
        ).fetchone()
        assert row is not None and row[0] == "embedding" and row[1] is None and int(row[2]) >= 180  # type: ignore[call-overload]

    notices: list[str] = []
    with admin(dsn) as run:
        run.add_notice_handler(lambda d: notices.append(d.message_primary or ""))
        run.execute(REEMBED.format(batch=8))
    assert any(n.startswith(f"memex.reembed: resuming space {NEW} (run 2)") for n in notices)
    first = next(n for n in notices if re.match(r"memex\.reembed: \d+/", n))
    assert int(first.split(": ")[1].split("/")[0]) > 180, "it went on from where it stopped"
    assert space_state(dsn, NEW) == (360, 360, 360)
    assert old_space_snapshot(dsn) == before, "the old space is untouched"
    with psycopg.connect(dsn) as conn:
        progress = conn.execute(
            "select phase, rows_done, rows_total, runs from memex.reembed_progress"
        ).fetchone()
    assert progress == ("done", 360, 360, 2)


@pytest.mark.slow
def test_a_second_concurrent_call_returns_at_once_saying_who_runs_it(
    embedded: tuple[str, dict[str, str]],
) -> None:
    dsn, _ids = embedded
    first = admin(dsn)
    pid = first.info.backend_pid
    worker = threading.Thread(target=lambda: first.execute(REEMBED.format(batch=4)))
    worker.start()
    try:
        with psycopg.connect(dsn, autocommit=True) as watcher:

            def running() -> bool:
                row = watcher.execute(
                    "select running_pid, rows_done from memex.reembed_progress"
                ).fetchone()
                return bool(row and row[0] == pid and int(row[1]) > 0)  # type: ignore[call-overload]

            wait_until(running, "the first call has embedded a batch")
        notices: list[str] = []
        with admin(dsn) as second:
            second.add_notice_handler(lambda d: notices.append(d.message_primary or ""))
            second.execute(REEMBED.format(batch=4))
        # it returned without waiting: the first call is still at work (90 batches of 4)
        assert worker.is_alive()
        assert len(notices) == 1
        assert re.fullmatch(
            rf"memex\.reembed: a reembed into space {re.escape(NEW)} is already running in "
            rf"backend {pid} \(user \w+(, [\w ()]+ since .+)?\); this call does nothing",
            notices[0],
        ), notices[0]
    finally:
        worker.join(120)
        first.close()
    assert space_state(dsn, NEW) == (360, 360, 360)


def test_dry_run_writes_nothing_and_a_repeated_call_is_a_fast_no_op_and_rollback_works(
    embedded: tuple[str, dict[str, str]],
) -> None:
    dsn, ids = embedded

    def everything() -> list[object]:
        with psycopg.connect(dsn) as conn:
            return [conn.execute(q).fetchall() for q in (
                "select * from memex.spaces order by id", "select * from memex.reembeds",
                "select count(*), max(embedded_at) from memex.embeddings")]  # fmt: skip

    before = everything()
    notices: list[str] = []
    with admin(dsn) as run:
        run.add_notice_handler(lambda d: notices.append(d.message_primary or ""))
        run.execute("call memex.reembed('all-MiniLM-L6-v2', 256, dry_run => true)")
        plan = run.execute(
            "select memex.reembed_plan('all-MiniLM-L6-v2', 256, batch_size => 100)"
        ).fetchone()
    assert everything() == before, "a dry run writes nothing"
    assert notices[0].startswith("memex.reembed (dry run, nothing written): {")
    assert plan is not None
    got = plan[0]
    assert isinstance(got, dict)
    keys = ("target_space", "no_op", "dimension_change", "chunks_to_embed", "batches")
    assert {k: got[k] for k in keys} == {
        "target_space": NEW, "no_op": False, "dimension_change": True, "chunks_to_embed": 360,
        "batches": 4,
    }  # fmt: skip
    assert got["measured_rate"] > 0 and got["estimated_seconds"] > 0 and got["rate_sample"] == 64
    assert json.loads(notices[0].split(": ", 1)[1])["chunks_to_embed"] == 360

    with app(dsn, ids["a"]) as reader:
        old_top = top(reader)
    with admin(dsn) as run:
        run.execute(REEMBED.format(batch=128))
    with app(dsn, ids["a"]) as reader:
        assert not same(top(reader), old_top)

    notices.clear()
    with admin(dsn) as run:  # a new session: nothing cached
        run.add_notice_handler(lambda d: notices.append(d.message_primary or ""))
        run.execute(REEMBED.format(batch=128))
        # a no-op loads no model: this backend's Python has none in its cache
        loaded = run.execute("select memex.status() -> 'backend' -> 'loaded_models'").fetchone()
        assert loaded == ([],)
        assert notices[-1].startswith(
            f"memex.reembed: the active space {NEW} already has this signature"
        )
        run.execute("select memex.activate_space(%s)", (OLD,))  # rollback
    with app(dsn, ids["a"]) as reader:
        assert same(top(reader), old_top), "old-space results again after the rollback"
    with admin(dsn) as run:  # going forward again needs no embedding: the space is kept
        notices.clear()
        run.add_notice_handler(lambda d: notices.append(d.message_primary or ""))
        run.execute(REEMBED.format(batch=128))
        assert not any(re.match(r"memex\.reembed: \d+/", n) for n in notices)
        run.execute("select memex.activate_space(%s)", (OLD,))
        run.execute("select memex.drop_space(%s)", (NEW,))
    assert space_state(dsn, NEW) == (0, 0, 0)


@pytest.mark.parametrize(
    ("call", "sqlstate", "message"),
    [
        ("call memex.reembed(null)", "22023", "reembed needs a model"),
        ("call memex.reembed('  ')", "22023", "reembed needs a model"),
        ("call memex.reembed('no-such-model')", "22023", "unknown model 'no-such-model'"),
        ("call memex.reembed('all-MiniLM-L6-v2', 0)", "22023", "dimensions 0 for model"),
        ("call memex.reembed('all-MiniLM-L6-v2', 999)", "22023", "dimensions 999 for model"),
        ("call memex.reembed('all-MiniLM-L6-v2', 256, batch_size => 0)", "22023",
         "batch_size must be"),
        ("call memex.reembed('all-MiniLM-L6-v2', 256, space_name => 'bad name')", "22023",
         "invalid space name"),
        ("call memex.reembed('/nonexistent/model')", "42501",
         "outside the model roots"),
    ],
)  # fmt: skip
def test_bad_arguments_name_the_problem_and_change_nothing(
    conn: Conn, db: str, call: str, sqlstate: str, message: str
) -> None:
    ids = make_tenants(conn, "a")
    load_documents(db, ids["a"], 3)
    before = conn.execute(
        "select (select count(*) from memex.spaces), (select count(*) from memex.reembeds)"
    ).fetchone()
    with admin(db) as run, pytest.raises(psycopg.Error) as caught:
        run.execute(call)
    assert caught.value.sqlstate == sqlstate
    assert message in str(caught.value)
    assert (
        conn.execute(
            "select (select count(*) from memex.spaces), (select count(*) from memex.reembeds)"
        ).fetchone()
        == before
    )
    assert conn.execute(
        "select count(*) from pg_locks where locktype = 'advisory' and classid = 1835363705"
    ).fetchone() == (0,)


def test_applications_cannot_reembed(conn: Conn) -> None:
    conn.execute("set role memex_app")
    for statement in ("call memex.reembed('all-MiniLM-L6-v2', 256)",
                      "select * from memex.reembed_progress",
                      "select memex.reembed_plan('all-MiniLM-L6-v2')"):  # fmt: skip
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute(statement)


def test_inside_a_transaction_block_it_fails_before_locking_or_writing(conn: Conn) -> None:
    conn.execute("set role memex_admin")
    with pytest.raises(psycopg.errors.InvalidTransactionTermination), conn.transaction():
        conn.execute("call memex.reembed('all-MiniLM-L6-v2', 256)")
    conn.execute("reset role")
    assert conn.execute("select count(*) from memex.spaces").fetchone() == (1,)
    locks = "select count(*) from pg_locks where locktype = 'advisory' and classid = 1835363705"
    assert conn.execute(locks).fetchone() == (0,)


def test_a_name_taken_by_another_signature_fails_and_lets_the_lock_go(conn: Conn, db: str) -> None:
    with admin(db) as run:
        run.execute("select memex.create_space('taken', 'all-MiniLM-L6-v2', 128)")
        with pytest.raises(psycopg.errors.DuplicateObject, match="already exists with another"):
            run.execute("call memex.reembed('all-MiniLM-L6-v2', 256, space_name => 'taken')")
        locks = "select count(*) from pg_locks where locktype = 'advisory' and classid = 1835363705"
        assert run.execute(locks).fetchone() == (0,)
    assert conn.execute("select count(*) from memex.reembeds").fetchone() == (0,)
