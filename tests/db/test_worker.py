"""`memex worker`: the same memex_db outside the database gives the same vectors, and shares
the queue with CALL memex.embed_pending without doing a row twice."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import psycopg

from tests.db.helpers import admin, load_documents, make_tenants, stop_process
from tests.db.helpers import embedding_state as state

Conn = psycopg.Connection[tuple[object, ...]]


def run_worker(dsn: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "memex.cli", "worker", "--dsn", dsn, "--once", *args],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip


def test_worker_drains_the_queue_with_the_databases_own_vectors(conn: Conn, db: str) -> None:
    ids = make_tenants(conn, "a", "b")
    load_documents(db, ids["a"], 30)
    load_documents(db, ids["b"], 20)

    result = run_worker(db, "--batch-size", "16")

    assert result.returncode == 0, result.stderr
    assert "done, 50 chunks embedded" in result.stdout
    assert state(db) == (50, 50, 50, 0)
    rows = conn.execute(
        "select 1 - (e.embedding <=> memex.embed(c.content)) from memex.embeddings e"
        " join memex.chunks c on c.id = e.chunk_id and c.tenant_id = e.tenant_id"
    ).fetchall()
    assert min(float(r[0]) for r in rows) >= 0.9999  # type: ignore[arg-type]


def test_worker_and_embed_pending_share_the_queue(conn: Conn, db: str) -> None:
    ids = make_tenants(conn, "a")
    load_documents(db, ids["a"], 300)
    worker = subprocess.Popen(
        [sys.executable, "-m", "memex.cli", "worker", "--dsn", db, "--once", "--batch-size", "8"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    notices: list[str] = []
    with admin(db) as run:
        run.add_notice_handler(lambda d: notices.append(d.message_primary or ""))
        run.execute("call memex.embed_pending(batch_size => 8)")
    out, err = worker.communicate(timeout=300)
    assert worker.returncode == 0, err
    by_worker = int(out.split("done, ")[1].split()[0])
    in_db = int(notices[-1].split("done, ")[1].split()[0])
    assert by_worker + in_db == 300, json.dumps({"worker": by_worker, "in_db": in_db})
    assert state(db) == (300, 300, 300, 0)


def test_worker_names_an_unknown_space(db: str) -> None:
    result = run_worker(db, "--space", "nope")
    assert result.returncode != 0
    assert "unknown embedding space" in result.stderr


def test_the_worker_keeps_its_dsn_off_the_command_line(conn: Conn, db: str) -> None:
    """`memex worker` started the server venv's Python with `--dsn <dsn>`, a password
    included, readable by every user of the machine in `ps`."""
    worker = subprocess.Popen(
        [sys.executable, "-m", "memex.cli", "worker"],
        env={**os.environ, "MEMEX_DSN": db}, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            command = Path(f"/proc/{worker.pid}/cmdline").read_bytes().split(b"\0")
            if b"memex_db.worker" in command:  # the exec into the server venv happened
                break
            time.sleep(0.1)
        assert b"memex_db.worker" in command, command
        assert not any(db.encode() in part for part in command), command
        assert b"--dsn" not in command
    finally:
        stop_process(worker, timeout=20)
