"""Remote embedding endpoints (OpenAI-compatible /v1/embeddings), against a real server on
loopback: infinity-emb serving the bundled MiniLM from its local directory (its own venv,
`make setup` builds it). A small fault proxy in front of it (this process, loopback) injects
the failures a real server gives under load: 429s, and a model that changed its dimensions."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from memex.devcluster import Cluster
from tests.db.helpers import admin, as_role, load_documents, make_tenants
from tests.servers import FaultProxy, free_port, infinity_server

Conn = psycopg.Connection[tuple[object, ...]]

KEY = "test-key-7f3a"
SERVED = "all-MiniLM-L6-v2"
TEXTS = [
    "hello world",
    "How do I rotate the signing keys without downtime?",
    "Le chat dort sur le canapé pendant que la pluie tombe.",
    "def handler(event):\n    return {'status': 200}",
    "PostgreSQL row-level security isolates each tenant's rows. " * 10,
]


@pytest.fixture(scope="module")
def infinity() -> Iterator[str]:
    """The API base of an infinity-emb server on loopback (stopped after the module)."""
    try:
        with infinity_server(KEY, SERVED) as base:
            yield base
    except RuntimeError as exc:
        pytest.fail(str(exc))


@pytest.fixture
def proxy(infinity: str) -> Iterator[FaultProxy]:
    fault = FaultProxy(infinity)
    yield fault
    fault.close()


def _remote_space(conn: Conn, url: str, options: str = "{}") -> None:
    as_role(conn, "memex_admin")
    conn.execute("select memex.create_endpoint('inf', %s, %s, %s)", (url, SERVED, options))
    conn.execute("select memex.set_endpoint_key('inf', %s)", (KEY,))
    conn.execute("select memex.create_space('remote', 'endpoint:inf')")
    conn.execute("reset role")


def _cosine(a: list[float], b: list[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    return dot / ((sum(x * x for x in a) ** 0.5) * (sum(y * y for y in b) ** 0.5))


def _vectors(conn: Conn, texts: list[str], space: str | None) -> list[list[float]]:
    rows = conn.execute(
        "select embedding::text from memex.embed_batch(%s, %s) order by ord", (texts, space)
    ).fetchall()
    return [json.loads(str(r[0])) for r in rows]


def test_remote_vectors_equal_the_local_runtimes(conn: Conn, infinity: str) -> None:
    # Small requests, four in flight: order and content must survive the concurrency.
    _remote_space(conn, infinity, '{"batch_size": 2, "concurrency": 4}')
    row = conn.execute("select provider, dimensions from memex.spaces where name = 'remote'")
    assert row.fetchone() == ("openai", 384)
    texts = TEXTS * 4
    remote, local = _vectors(conn, texts, "remote"), _vectors(conn, texts, None)
    for got, expected, text in zip(remote, local, texts, strict=True):
        assert _cosine(got, expected) >= 0.999, text


def test_embed_pending_and_the_worker_fill_a_remote_space(conn: Conn, db: str,
                                                          infinity: str) -> None:  # fmt: skip
    _remote_space(conn, infinity)
    ids = make_tenants(conn, "a", "b")
    load_documents(db, ids["a"], 40)
    load_documents(db, ids["b"], 30)
    with admin(db) as run:
        run.execute("call memex.embed_pending('remote', max_rows => 50)")
        assert run.execute("select memex.pending_count('remote')").fetchone() == (20,)
    # The worker takes the key from its environment, not from the server's file.
    result = subprocess.run(
        [sys.executable, "-m", "memex.cli", "worker", "--dsn", db, "--once", "--space", "remote"],
        capture_output=True, text=True, timeout=300, check=False,
        env={**os.environ, "MEMEX_ENDPOINT_KEY_INF": KEY},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "done, 20 chunks embedded" in result.stdout
    with admin(db) as run:
        run.execute("call memex.embed_pending()")
    worst = conn.execute(
        "select min(1 - (r.embedding <=> l.embedding)::float8), count(*)"
        " from memex.embeddings r"
        " join memex.embeddings l on l.chunk_id = r.chunk_id and l.space_id <> r.space_id"
        " join memex.spaces s on s.id = r.space_id and s.name = 'remote'"
    ).fetchone()
    assert worst is not None and worst[1] == 70 and float(worst[0]) >= 0.999  # type: ignore[arg-type]
    # An application embeds its queries through the endpoint without ever seeing the key.
    as_role(conn, "memex_app")
    conn.execute("select memex.set_tenant(%s)", (ids["a"],))
    hit = conn.execute("select memex.embed('rotate the keys', 'remote') is not null").fetchone()
    assert hit == (True,)


def test_the_api_key_is_out_of_the_applications_reach(conn: Conn, db: str,
                                                      infinity: str) -> None:  # fmt: skip
    _remote_space(conn, infinity)
    data_dir = Path(str(conn.execute("show data_directory").fetchone()[0]))  # type: ignore[index]
    key_file = data_dir / "memex_endpoint_keys" / "inf"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert key_file.read_text() == KEY
    columns = conn.execute(
        "select string_agg(column_name, ',' order by column_name) from information_schema.columns"
        " where table_schema = 'memex' and table_name = 'endpoints'"
    ).fetchone()
    assert columns == ("created_at,model,name,options,url",)
    as_role(conn, "memex_app")
    for statement, args in (
        ("select memex.set_endpoint_key('inf', 'stolen')", ()),
        ("select memex.create_endpoint('evil', 'http://127.0.0.1:1/v1', 'm')", ()),
        ("select pg_read_file(%s)", (str(key_file),)),
        ("update memex.endpoints set url = 'http://attacker.example/v1'", ()),
    ):
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute(statement, args)
    conn.execute("reset role")
    assert key_file.read_text() == KEY
    # Without the key the server refuses, and the error says which URL did.
    with admin(db) as run:
        run.execute("select memex.set_endpoint_key('inf', '')")
    assert not key_file.exists()
    fresh = psycopg.connect(db, autocommit=True)
    with fresh, pytest.raises(psycopg.errors.SystemError) as failed:
        fresh.execute("select memex.embed('x', 'remote')")
    assert f"{infinity}/embeddings" in str(failed.value) and "401" in str(failed.value)


def _pending_and_vectors(dsn: str) -> tuple[int, int]:
    with admin(dsn) as run:
        pending = run.execute("select memex.pending_count('remote')").fetchone()
        vectors = run.execute(
            "select count(*) from memex.embeddings e join memex.spaces s on s.id = e.space_id"
            " where s.name = 'remote'"
        ).fetchone()
    assert pending is not None and vectors is not None
    return int(pending[0]), int(vectors[0])  # type: ignore[call-overload]


def test_the_worker_keeps_concurrency_requests_in_flight(conn: Conn, db: str,
                                                          proxy: FaultProxy) -> None:  # fmt: skip
    _remote_space(conn, proxy.url, '{"batch_size": 2, "concurrency": 1}')
    ids = make_tenants(conn, "a", "b")

    def worker(*flags: str) -> None:
        result = subprocess.run(
            [sys.executable, "-m", "memex.cli", "worker", "--dsn", db, "--once", "--space",
             "remote", "--batch-size", "32", *flags],
            capture_output=True, text=True, timeout=300, check=False,
            env={**os.environ, "MEMEX_ENDPOINT_KEY_INF": KEY},
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        assert "done, 40 chunks embedded" in result.stdout

    load_documents(db, ids["a"], 40)
    worker("--concurrency", "4", "--requests-per-minute", "600000",
           "--tokens-per-minute", "100000000")  # fmt: skip
    assert 2 <= proxy.most_in_flight <= 4  # 16 requests a batch, 4 at a time
    proxy.most_in_flight = 0
    load_documents(db, ids["b"], 40)
    worker()  # the endpoint's own option: one at a time
    assert proxy.most_in_flight == 1
    stored = conn.execute(
        "select count(*) from memex.embeddings e join memex.spaces s on s.id = e.space_id"
        " where s.name = 'remote'"
    ).fetchone()
    assert stored == (80,)


def test_an_unreachable_endpoint_names_its_url_and_stores_nothing(
    conn: Conn, db: str, infinity: str
) -> None:
    _remote_space(conn, infinity, '{"retries": 1}')
    ids = make_tenants(conn, "a")
    load_documents(db, ids["a"], 10)
    dead = f"http://127.0.0.1:{free_port()}/v1"
    with admin(db) as run:
        run.execute(
            "select memex.create_endpoint('inf', %s, %s, '{\"retries\": 1}')", (dead, SERVED)
        )
        with pytest.raises(psycopg.errors.SystemError) as failed:
            run.execute("call memex.embed_pending('remote')")
    message = str(failed.value)
    assert f"{dead}/embeddings" in message and "unreachable" in message
    assert _pending_and_vectors(db) == (10, 0)  # the chunks stay pending
    with pytest.raises(psycopg.errors.SystemError):
        conn.execute("select memex.create_space('remote2', 'endpoint:inf')")
    assert conn.execute("select count(*) from memex.spaces where name = 'remote2'").fetchone() == (
        0,
    )


def test_a_wrong_dimension_from_the_server_is_a_data_exception(
    conn: Conn, db: str, proxy: FaultProxy
) -> None:
    _remote_space(conn, proxy.url)
    ids = make_tenants(conn, "a")
    load_documents(db, ids["a"], 10)
    proxy.truncate = 100  # the model behind the endpoint changed
    with admin(db) as run, pytest.raises(psycopg.errors.DataException) as failed:
        run.execute("call memex.embed_pending('remote')")
    assert failed.value.sqlstate == "22000" and "produced 100 dimensions" in str(failed.value)
    assert _pending_and_vectors(db) == (10, 0)
    # An endpoint that asks for dimensions the server ignores is refused when the space is made.
    with admin(db) as run:
        run.execute("select memex.create_endpoint('small', %s, %s, '{\"dimensions\": 256}')",
                    (proxy.url, SERVED))  # fmt: skip
        run.execute("select memex.set_endpoint_key('small', %s)", (KEY,))
        proxy.truncate = 0
        with pytest.raises(psycopg.errors.DataException):
            run.execute("select memex.create_space('small', 'endpoint:small')")


def test_429s_are_retried_with_backoff(conn: Conn, db: str, proxy: FaultProxy) -> None:
    _remote_space(conn, proxy.url)
    proxy.fail_next, proxy.requests = 2, 0
    vectors = _vectors(psycopg.connect(db, autocommit=True), TEXTS[:2], "remote")
    # The load's probe (429, 429, 200), then the batch.
    assert len(vectors) == 2 and proxy.requests == 4
    proxy.fail_next = 100  # more than its retries: a clear error, not a hang
    fresh = psycopg.connect(db, autocommit=True)
    with fresh, pytest.raises(psycopg.errors.SystemError) as failed:
        fresh.execute("select memex.embed('again', 'remote')")
    assert proxy.url in str(failed.value)


@pytest.mark.parametrize(
    ("statement", "args", "error"),
    [
        ("select memex.create_space('x', 'endpoint:nope')", (), "unknown endpoint 'nope'"),
        ("select memex.create_space('x', 'cohere:embed-v3')", (), "unknown model"),
        ("select memex.create_endpoint('Bad Name', 'http://h/v1', 'm')", (),
         "invalid endpoint name"),
        ("select memex.create_endpoint('e', 'ftp://h/v1', 'm')", (), "invalid endpoint url"),
        ("select memex.create_endpoint('e', 'https://h/v1', 'm', '{\"batch_size\": 0}')", (),
         "batch_size must be an integer in 1..2048"),
        ("select memex.create_endpoint('e', 'https://h/v1', 'm', '{\"colour\": 1}')", (),
         "unknown endpoint options: colour"),
        ("select memex.set_endpoint_key('nope', 'k')", (), "unknown endpoint 'nope'"),
        ("select memex.drop_endpoint('nope')", (), "unknown endpoint"),
        ("select memex.create_endpoint('e', 'https://user:s3cret@h/v1', 'm')", (),
         "must not carry credentials"),
        ("select memex.create_endpoint('e', 'https://h/v1?api_key=s3cret', 'm')", (),
         "must not carry a query string"),
        ("select memex.create_endpoint('e', 'http://10.0.0.7:7997/v1', 'm')", (),
         "plain http to another machine"),
    ],
)  # fmt: skip
def test_bad_endpoint_input_is_refused(conn: Conn, statement: str, args: tuple[Any, ...],
                                       error: str) -> None:  # fmt: skip
    as_role(conn, "memex_admin")
    with pytest.raises(psycopg.errors.InvalidParameterValue) as failed:
        conn.execute(statement, args)
    assert error in str(failed.value)
    assert "s3cret" not in str(failed.value), "a secret in a URL is not echoed"
    assert conn.execute("select count(*) from memex.endpoints").fetchone() == (0,)
    assert conn.execute("select count(*) from memex.spaces where name = 'x'").fetchone() == (0,)


def test_plain_http_to_another_machine_needs_allow_insecure(conn: Conn) -> None:
    as_role(conn, "memex_admin")
    conn.execute("select memex.create_endpoint('lan', 'http://10.0.0.7:7997/v1', 'm',"
                 " allow_insecure => true)")  # fmt: skip
    for loopback in ("http://127.0.0.1:1/v1", "http://localhost:1/v1", "http://[::1]:1/v1"):
        conn.execute("select memex.create_endpoint('lo', %s, 'm')", (loopback,))
    assert conn.execute("select count(*) from memex.endpoints").fetchone() == (2,)


def test_a_key_given_by_set_local_is_in_no_logged_statement(
    conn: Conn, pg_cluster: Cluster, infinity: str
) -> None:
    """With log_min_error_statement = error (the default), a failed set_endpoint_key wrote its
    statement, key included, to the server log."""
    canary = f"sk-canary-{uuid.uuid4().hex}"
    as_role(conn, "memex_admin")
    conn.execute("select memex.create_endpoint('inf', %s, %s)", (infinity, SERVED))
    with conn.transaction():
        conn.execute(f"set local memex.endpoint_key = '{KEY}'")
        assert conn.execute("select memex.set_endpoint_key('inf')").fetchone() == (True,)
        assert conn.execute("select current_setting('memex.endpoint_key')").fetchone() == ("",)
    with pytest.raises(psycopg.errors.InvalidParameterValue), conn.transaction():
        conn.execute(f"set local memex.endpoint_key = '{canary}'")
        conn.execute("select memex.set_endpoint_key('nope')")
    conn.execute("select pg_catalog.pg_sleep(0.2)")  # the log file is written as errors happen
    log = Path(pg_cluster.log_file).read_text(errors="replace")
    assert "set_endpoint_key('nope')" in log, "the failure was logged"
    assert canary not in log
    conn.execute("reset role")  # the key went in: the server takes the space's probe request
    conn.execute("select memex.create_space('remote', 'endpoint:inf')")


def test_an_endpoint_in_use_cannot_be_dropped(conn: Conn, infinity: str) -> None:
    _remote_space(conn, infinity)
    as_role(conn, "memex_admin")
    with pytest.raises(psycopg.errors.ObjectInUse):
        conn.execute("select memex.drop_endpoint('inf')")
    conn.execute("select memex.drop_space('remote')")
    conn.execute("select memex.drop_endpoint('inf')")
    assert conn.execute("select count(*) from memex.endpoints").fetchone() == (0,)


# -- A chunk that cannot be embedded (docs/embedding.md, "Failures") --------------------------
POISON = "POISON-PILL"


def _failures(conn: Conn) -> list[tuple[object, ...]]:
    """(tenant name, chunk content, attempts, sqlstate, parked) of every failure record."""
    return conn.execute(
        "select t.name, c.content, f.attempts, f.sqlstate, f.retry_at is null"
        " from memex.embedding_failures f join memex.tenants t on t.id = f.tenant_id"
        " join memex.chunks c on c.tenant_id = f.tenant_id and c.id = f.chunk_id order by 1, 2"
    ).fetchall()


def _remote_vectors(conn: Conn) -> dict[str, int]:
    rows = conn.execute(
        "select t.name, count(*) from memex.embeddings e join memex.spaces s on s.id = e.space_id"
        " join memex.tenants t on t.id = e.tenant_id where s.name = 'remote' group by t.name"
    ).fetchall()
    return {str(name): int(n) for name, n in rows}  # type: ignore[call-overload]


def test_a_poison_chunk_is_isolated_reported_retried_then_parked(
    conn: Conn, db: str, proxy: FaultProxy
) -> None:
    """It stopped embed_pending for every tenant with the same error at every run."""
    _remote_space(conn, proxy.url)
    ids = make_tenants(conn, "a", "b")
    load_documents(db, ids["a"], 20)
    load_documents(db, ids["b"], 15)
    with psycopg.connect(db, autocommit=True) as writer:
        writer.execute("select memex.set_tenant(%s, false)", (ids["a"],))
        writer.execute("select memex.upsert_document('poison.md', %s)",
                       (f"A text the server refuses: {POISON}",))  # fmt: skip
    proxy.refuse_containing = POISON
    notices: list[str] = []
    with admin(db) as run:
        run.add_notice_handler(lambda d: notices.append(d.message_primary or ""))
        run.execute("call memex.embed_pending('remote', batch_size => 16)")
        assert run.execute("select memex.pending_count('remote')").fetchone() == (0,)
    assert _remote_vectors(conn) == {"a": 20, "b": 15}, "the neighbours and the other tenant"
    assert _failures(conn) == [("a", f"A text the server refuses: {POISON}", 1, "54000", False)]
    failed = next(n for n in notices if "failed to embed" in n)
    chunk = conn.execute("select chunk_id::text from memex.embedding_failures").fetchone()
    assert chunk is not None and str(chunk[0]) in failed and "tenant a" in failed
    assert "HTTP 413" in failed and "retried after" in failed
    assert "1 failed" in next(n for n in notices if "done," in n)
    status = subprocess.run(
        [sys.executable, "-m", "memex.cli", "status", "--dsn", db],
        capture_output=True, text=True, timeout=120, check=True,
    ).stdout  # fmt: skip
    assert "Failed chunks" in status and str(chunk[0]) in status and "[54000]" in status
    remote = next(x.split() for x in status.splitlines() if x.strip().startswith("remote "))
    assert remote[-1] == "1", "the space's failed count"

    # Waiting for its retry, it is skipped: the next run asks the server nothing.
    before = proxy.requests
    with admin(db) as run:
        run.execute("call memex.embed_pending('remote')")
    assert proxy.requests == before
    status = conn.execute("select pending, failed from memex.space_status where name = 'remote'")
    assert status.fetchone() == (0, 1)

    # Each retry that fails counts; the 4th parks it.
    for attempt in (2, 3, 4):
        conn.execute("update memex.embedding_failures set retry_at = now() - interval '1 s'")
        with admin(db) as run:
            run.execute("call memex.embed_pending('remote')")
        assert _failures(conn)[0][2:] == (attempt, "54000", attempt == 4)
    conn.execute("update memex.embedding_failures set last_failed_at = now() - interval '1 day'")
    with admin(db) as run:
        run.execute("call memex.embed_pending('remote')")
    assert _failures(conn)[0][2:] == (4, "54000", True), "parked: never retried by itself"

    # memex.retry_failed() queues it again; once the server takes it, the record goes.
    proxy.refuse_containing = None
    with admin(db) as run:
        assert run.execute("select memex.retry_failed('remote')").fetchone() == (1,)
        run.execute("call memex.embed_pending('remote')")
    assert _failures(conn) == []
    assert _remote_vectors(conn) == {"a": 21, "b": 15}


def test_a_failing_endpoint_parks_nothing_and_stops_the_run(
    conn: Conn, db: str, proxy: FaultProxy
) -> None:
    """Every text refused (or the server down) is embedding failing, not 35 poison chunks:
    the run stops with the error, as before, and records nothing."""
    _remote_space(conn, proxy.url)
    ids = make_tenants(conn, "a")
    load_documents(db, ids["a"], 10)
    proxy.refuse_containing = " "  # every text, the harmless probe included
    with admin(db) as run, pytest.raises(psycopg.errors.ProgramLimitExceeded, match="HTTP 413"):
        run.execute("call memex.embed_pending('remote')")
    assert _failures(conn) == []


def test_the_worker_records_a_poison_chunk_and_goes_on(
    conn: Conn, db: str, proxy: FaultProxy
) -> None:
    """`memex worker` exited 2 on such a chunk; a supervisor restarted it into the same one."""
    _remote_space(conn, proxy.url)
    ids = make_tenants(conn, "a", "b")
    load_documents(db, ids["a"], 12)
    load_documents(db, ids["b"], 12)
    with psycopg.connect(db, autocommit=True) as writer:
        writer.execute("select memex.set_tenant(%s, false)", (ids["b"],))
        writer.execute("select memex.upsert_document('poison.md', %s)", (f"bad {POISON}",))
    proxy.refuse_containing = POISON
    result = subprocess.run(
        [sys.executable, "-m", "memex.cli", "worker", "--dsn", db, "--once", "--space", "remote",
         "--batch-size", "8"],
        capture_output=True, text=True, timeout=300, check=False,
        env={**os.environ, "MEMEX_ENDPOINT_KEY_INF": KEY},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert _remote_vectors(conn) == {"a": 12, "b": 12}
    assert _failures(conn) == [("b", f"bad {POISON}", 1, "54000", False)]


def test_a_write_with_embed_on_write_succeeds_when_its_chunk_cannot_be_embedded(
    conn: Conn, db: str, proxy: FaultProxy
) -> None:
    _remote_space(conn, proxy.url)
    as_role(conn, "memex_admin")
    conn.execute("select memex.activate_space('remote')")
    conn.execute("reset role")
    ids = make_tenants(conn, "a")
    proxy.refuse_containing = POISON
    with psycopg.connect(db, autocommit=True) as app:
        app.execute("set role memex_app")
        app.execute("set memex.embed_on_write = on")
        app.execute("select memex.set_tenant(%s, false)", (ids["a"],))
        app.execute("select memex.upsert_document('ok.md', 'a fine text')")
        app.execute("select memex.upsert_document('bad.md', %s)", (f"bad {POISON}",))
        assert app.execute("select count(*) from memex.documents").fetchone() == (2,)
    assert _remote_vectors(conn) == {"a": 1}
    assert [f[1] for f in _failures(conn)] == [f"bad {POISON}"]


def test_an_answer_over_64_mb_is_refused_not_read_whole(
    conn: Conn, db: str, proxy: FaultProxy
) -> None:
    _remote_space(conn, proxy.url)
    proxy.oversize = True
    with pytest.raises(psycopg.errors.DataException, match="more than 64 MB"):
        conn.execute("select memex.embed('hello', 'remote')")
