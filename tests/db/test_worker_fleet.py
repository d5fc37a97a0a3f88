"""`memex worker` as a queue consumer (docs/worker.md): it wakes on NOTIFY, survives a server
restart, stops cleanly on SIGTERM, loses nothing to kill -9, and shows itself in memex.workers.
Real worker processes against the test cluster; every wait is bounded."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
import pytest

from memex.devcluster import Cluster
from tests.db.helpers import admin, load_documents, make_tenants, stop_process, wait_until
from tests.db.helpers import embedding_state as state

Conn = psycopg.Connection[tuple[object, ...]]


class RunningWorker:
    """A `memex worker` process whose output is read as it comes (stdout and stderr merged)."""

    def __init__(self, dsn: str, *args: str):
        self.process = subprocess.Popen(
            [sys.executable, "-m", "memex.cli", "worker", *args],
            env={**os.environ, "MEMEX_DSN": dsn}, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
        self.lines: list[str] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line.rstrip("\n"))

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def wait_for(self, text: str, timeout: float = 120.0) -> None:
        wait_until(lambda: text in self.output or self.process.poll() is not None,
                   f"the worker printed {text!r}", timeout)  # fmt: skip
        assert text in self.output, self.output

    def exit_code(self, timeout: float = 60.0) -> int:
        code = self.process.wait(timeout=timeout)
        self.reader.join(10)
        return code


@contextmanager
def worker(dsn: str, *args: str) -> Iterator[RunningWorker]:
    running = RunningWorker(dsn, *args)
    try:
        yield running
    finally:
        if running.process.poll() is None:
            stop_process(running.process, timeout=30)


def workers(dsn: str) -> list[dict[str, object]]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        cur = conn.cursor(row_factory=psycopg.rows.dict_row)
        return cur.execute("select * from memex.workers order by id").fetchall()


def pending(dsn: str) -> int:
    return state(dsn)[3]


def idle(running: RunningWorker, dsn: str) -> None:
    """The worker is connected, has registered and is waiting for work."""
    running.wait_for("listening on memex_pending")
    wait_until(lambda: any(w["state"] == "running" for w in workers(dsn)), "its heartbeat")


def test_one_notification_per_transaction_and_none_for_a_rollback(conn: Conn, db: str) -> None:
    ids = make_tenants(conn, "a")
    with psycopg.connect(db, autocommit=True) as listener:
        listener.execute("listen memex_pending")
        load_documents(db, ids["a"], 40)  # 40 upserts, one transaction
        with psycopg.connect(db) as writer:
            writer.execute("select memex.set_tenant(%s)", (ids["a"],))
            writer.execute("select memex.upsert_document('gone.md', 'never committed')")
            writer.rollback()
        got = list(listener.notifies(timeout=1.0))
    assert [(n.channel, n.payload) for n in got] == [("memex_pending", "")]


def test_a_committed_write_wakes_the_idle_worker(conn: Conn, db: str) -> None:
    ids = make_tenants(conn, "a")
    # --poll 600: only the notification can make it look again within the test's bounds
    with worker(db, "--poll", "600") as running:
        idle(running, db)
        load_documents(db, ids["a"], 20)
        wait_until(lambda: state(db) == (20, 20, 20, 0), "the worker embedded the write", 60)
        load_documents(db, ids["a"], 25, prefix="more")
        wait_until(lambda: state(db) == (45, 45, 45, 0), "the second write too", 60)


def test_sigterm_finishes_the_batch_and_exits_0(conn: Conn, db: str) -> None:
    ids = make_tenants(conn, "a")
    load_documents(db, ids["a"], 600)
    with worker(db, "--batch-size", "8") as running:
        wait_until(lambda: state(db)[1] > 0, "a first batch stored")
        running.process.send_signal(signal.SIGTERM)
        assert running.exit_code() == 0, running.output
    said = running.output.split("stopped by SIGTERM, ")[1].split()[0]
    chunks, vectors, exact, left = state(db)
    assert int(said) == vectors == exact  # what it said it stored, whole batches only
    assert vectors % 8 == 0 and left == chunks - vectors > 0
    (row,) = workers(db)
    assert (row["state"], row["stop_reason"], row["embedded"]) == (
        "stopped", "stopped by SIGTERM", vectors,
    )  # fmt: skip


def test_sigterm_stops_an_idle_worker(db: str) -> None:
    with worker(db, "--poll", "600") as running:
        idle(running, db)
        running.process.send_signal(signal.SIGTERM)
        assert running.exit_code(timeout=30) == 0, running.output
    assert "stopped by SIGTERM, 0 chunks embedded" in running.output


def test_kill_9_mid_batch_loses_nothing_and_the_other_worker_finishes(conn: Conn, db: str) -> None:
    ids = make_tenants(conn, "a", "b")
    load_documents(db, ids["a"], 300)
    load_documents(db, ids["b"], 200)
    with worker(db, "--batch-size", "8", "--heartbeat", "0.5") as doomed, \
            worker(db, "--batch-size", "8", "--poll", "1") as survivor:  # fmt: skip
        doomed.wait_for("listening on memex_pending")
        stored = lambda: any(w["pid"] == doomed.process.pid and w["embedded"] != 0  # noqa: E731
                             for w in workers(db))  # fmt: skip
        wait_until(stored, "the doomed worker stored a batch")
        doomed.process.kill()  # SIGKILL, likely between a claim and its commit
        assert doomed.exit_code() == -signal.SIGKILL
        wait_until(lambda: pending(db) == 0, "the survivor embedded the rest", 180)
        # exactly one up-to-date vector per chunk: nothing skipped, nothing twice
        assert state(db) == (500, 500, 500, 0)
        wait_until(
            lambda: {w["pid"]: w["state"] for w in workers(db)}.get(doomed.process.pid) == "lost",
            "the killed worker shows as lost", 30,
        )  # fmt: skip
        assert survivor.process.poll() is None


def test_the_worker_survives_a_restart_of_the_server(
    conn: Conn, db: str, pg_cluster: Cluster
) -> None:
    ids = make_tenants(conn, "a")
    conn.close()
    with worker(db, "--poll", "600", "--heartbeat", "1") as running:
        idle(running, db)
        pg_cluster.stop()
        time.sleep(1)
        pg_cluster.start()  # returns once the server accepts connections
        # the bound: resumed within 10 s of the server accepting connections
        running.wait_for("connected again; resuming", timeout=10)
        load_documents(db, ids["a"], 30)  # and its LISTEN came back with it
        wait_until(lambda: state(db) == (30, 30, 30, 0), "the worker embedded after", 60)
        assert running.process.poll() is None
        (row,) = workers(db)
        assert row["state"] == "running"
        assert "connection lost" in str(row["last_error"])


def test_memex_workers_shows_each_worker(conn: Conn, db: str) -> None:
    ids = make_tenants(conn, "a")
    with worker(db, "--heartbeat", "0.5") as running:
        idle(running, db)
        load_documents(db, ids["a"], 40)
        wait_until(lambda: state(db)[3] == 0, "embedded")
        wait_until(lambda: float(workers(db)[0]["rows_per_s"]) > 0, "a rate in the heartbeat")  # type: ignore[arg-type]
        (row,) = workers(db)
        assert row["pid"] == running.process.pid
        assert (row["space"], row["model"], row["state"]) == (
            "all-MiniLM-L6-v2@384", "all-MiniLM-L6-v2", "running",
        )  # fmt: skip
        assert row["provider"] and row["host"] and row["last_batch_at"]
        assert row["embedded"] == 40
        status = subprocess.run(
            [sys.executable, "-m", "memex.cli", "status", "--dsn", db],
            capture_output=True, text=True, timeout=120, check=True,
        ).stdout  # fmt: skip
        assert "Workers (1 running" in status and str(running.process.pid) in status
    # the application role reads none of it
    with psycopg.connect(db, autocommit=True) as app:
        app.execute("set role memex_app")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            app.execute("select * from memex.workers")


def test_a_worker_whose_space_is_retired_finishes_and_says_why(conn: Conn, db: str) -> None:
    ids = make_tenants(conn, "a")
    load_documents(db, ids["a"], 12)
    with admin(db) as run:
        run.execute("select memex.create_space('static', 'wordllama')")
        run.execute("call memex.embed_pending('static')")
    with worker(db, "--space", "all-MiniLM-L6-v2@384", "--poll", "0.5") as running:
        wait_until(lambda: pending(db) == 0, "the worker embedded its space")
        with admin(db) as run:
            run.execute("select memex.activate_space('static')")
        assert running.exit_code() == 4, running.output
    assert "space all-MiniLM-L6-v2@384 was retired at" in running.output
    assert workers(db)[0]["stop_reason"].startswith("space all-MiniLM-L6-v2@384 was retired")  # type: ignore[union-attr]


def test_a_database_without_memex_is_named(empty_db: str) -> None:
    with worker(empty_db) as running:
        assert running.exit_code() == 3, running.output
    assert "memex is not installed in database" in running.output


@pytest.mark.parametrize(
    ("option", "said"),
    [
        (["--concurrency", "0"], "--concurrency: must be an integer from 1 to 64 (got 0)"),
        (["--batch-size", "0"], "--batch-size: must be an integer from 1 to 4096 (got 0)"),
        (["--poll", "nope"], "--poll: must be a number from 0.1 to 3600 (got nope)"),
    ],
)
def test_bad_options_are_named(db: str, option: list[str], said: str) -> None:
    with worker(db, *option) as running:
        assert running.exit_code() == 1, running.output
    assert said in running.output
    assert workers(db) == []


def test_concurrency_is_refused_for_a_local_model(db: str) -> None:
    with worker(db, "--concurrency", "2") as running:
        assert running.exit_code() == 1, running.output
    assert "--concurrency: for spaces on an embedding endpoint" in running.output


def test_help_documents_signals_exit_codes_and_the_dsn(db: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "memex.cli", "worker", "--help"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    for text in ("SIGTERM", "SIGKILL", "exit status", "$MEMEX_DSN", "backoff", "memex.workers"):
        assert text in result.stdout


def test_a_password_in_dsn_is_refused_without_echoing_it(db: str) -> None:
    with_password = db.replace("postgres@", "postgres:s3cret-pw@")
    result = subprocess.run(
        [sys.executable, "-m", "memex.cli", "worker", "--once", "--dsn", with_password],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 1
    assert "--dsn holds a password" in result.stderr and "MEMEX_DSN" in result.stderr
    assert "s3cret-pw" not in result.stderr + result.stdout
