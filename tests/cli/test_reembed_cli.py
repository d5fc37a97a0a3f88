"""`memex reembed`: dry run, the full run with a progress bar, and --concurrent-index (with an
INVALID index left by an interrupted build detected and rebuilt)."""

from __future__ import annotations

import json
import sys

import psycopg
import pytest

from memex.cli import main
from tests.db.helpers import load_documents, make_tenants

Conn = psycopg.Connection[tuple[object, ...]]
NEW = "all-MiniLM-L6-v2@128"


@pytest.fixture
def loaded(conn: Conn, db: str) -> str:
    ids = make_tenants(conn, "a")
    load_documents(db, ids["a"], 40)
    return db


def index_state(conn: Conn) -> tuple[object, ...] | None:
    return conn.execute(
        "select s.status, i.indisvalid from memex.spaces as s"
        " left join pg_index as i on i.indexrelid = to_regclass("
        "     'memex.' || memex._space_index_name(s.id))"
        " where s.name = %s",
        (NEW,),
    ).fetchone()


def test_dry_run_prints_the_plan_and_writes_nothing(
    loaded: str, conn: Conn, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["reembed", "--model", "all-MiniLM-L6-v2", "--dimensions", "128", "--dsn", loaded]
    assert main([*args, "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert f"target space: {NEW} (new)" in out
    assert "dimensions: 384 -> 128 (changes)" in out
    assert "chunks to embed: 40 of 40" in out
    assert "dry run: nothing was written" in out
    assert main([*args, "--dry-run", "--json"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert plan["batches"] == 1 and plan["no_op"] is False
    assert conn.execute("select count(*) from memex.spaces").fetchone() == (1,)


def test_full_run_then_no_op(
    loaded: str, conn: Conn, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)  # bars are for terminals only
    args = ["reembed", "--model", "all-MiniLM-L6-v2", "--dimensions", "128", "--dsn", loaded]
    assert main([*args, "--batch-size", "16"]) == 0
    err = capsys.readouterr().err
    assert "re-embedding: 100%" in err and "40/40" in err
    assert f"space {NEW} is active (switch:" in err
    assert index_state(conn) == ("active", True)
    assert main(args) == 0
    assert "nothing to do" in capsys.readouterr().err


def test_concurrent_index_builds_it_from_the_client_and_rebuilds_an_invalid_one(
    loaded: str, conn: Conn, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["reembed", "--model", "all-MiniLM-L6-v2", "--dimensions", "128", "--dsn", loaded]
    assert main([*args, "--no-activate", "--concurrent-index"]) == 0
    err = capsys.readouterr().err
    assert "concurrently (writers do not wait)" in err
    assert index_state(conn) == ("building", True)

    # what an interrupted CREATE INDEX CONCURRENTLY leaves behind
    conn.execute(
        "update pg_index set indisvalid = false"
        " where indexrelid = to_regclass('memex.' || memex._space_index_name("
        "     (select id from memex.spaces where name = %s)))",
        (NEW,),
    )
    assert index_state(conn) == ("building", False)
    assert main([*args, "--concurrent-index"]) == 0
    err = capsys.readouterr().err
    assert "is INVALID (an interrupted build): rebuilding it" in err
    assert index_state(conn) == ("active", True)


def test_concurrent_index_needs_the_table_owner(
    loaded: str, conn: Conn, capsys: pytest.CaptureFixture[str]
) -> None:
    conn.execute("create role reembed_tester login in role memex_admin")
    try:
        dsn = psycopg.conninfo.make_conninfo(loaded, user="reembed_tester")
        args = ["reembed", "--model", "all-MiniLM-L6-v2", "--dsn", dsn, "--dimensions", "128"]
        assert main([*args, "--concurrent-index"]) == 1
        assert "needs the owner of memex.embeddings (memex_owner)" in capsys.readouterr().err
        assert conn.execute("select count(*) from memex.spaces").fetchone() == (1,)
    finally:
        conn.execute("drop role reembed_tester")


def test_progress_bars_are_for_terminals_and_quiet_turns_them_off(
    loaded: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    args = ["reembed", "--model", "all-MiniLM-L6-v2", "--dimensions", "128", "--dsn", loaded]
    assert main([*args, "--no-activate"]) == 0  # stderr is not a terminal here: no bar
    assert "re-embedding:" not in capsys.readouterr().err
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    conn_args = [*args, "--space-name", "again", "--quiet"]
    assert main(conn_args) == 0
    assert "re-embedding:" not in capsys.readouterr().err
