"""The PL/Python bridge: version, checks, status, version mismatch, settings guard."""

from __future__ import annotations

import psycopg
import pytest

from memex import __version__


def test_version(conn: psycopg.Connection[tuple[object, ...]]) -> None:
    assert conn.execute("select memex.version()").fetchone() == (__version__,)


def test_python_check_all_ok(conn: psycopg.Connection[tuple[object, ...]]) -> None:
    rows = conn.execute("select check_name, ok, detail from memex.python_check()").fetchall()
    names = {r[0] for r in rows}
    assert {
        "server venv",
        "memex_db",
        "import onnxruntime",
        "import torch",
        "bundled model",
    } <= names
    assert all(r[1] for r in rows), [r for r in rows if not r[1]]


def test_python_check_leaves_torch_out_of_the_calling_backend(
    conn: psycopg.Connection[tuple[object, ...]],
) -> None:
    """It imported torch in the backend: 558 MB and 6 s for a session that then embeds with
    the ONNX runtime, which needs neither torch nor sentence-transformers."""
    rows = dict(conn.execute("select check_name, detail from memex.python_check()").fetchall())
    assert "(in a child process)" in str(rows["import torch"])
    modules: list[str] = []
    conn.add_notice_handler(lambda d: modules.append(d.message_primary or ""))
    conn.execute(
        "do $$ import sys; plpy.notice(','.join(m for m in ('torch', 'sentence_transformers')"
        " if m in sys.modules) or 'none') $$ language plpython3u"
    )
    assert modules == ["none"]


def test_status_reports_versions_and_backend(conn: psycopg.Connection[tuple[object, ...]]) -> None:
    row = conn.execute("select memex.status()").fetchone()
    assert row is not None
    status = row[0]
    assert isinstance(status, dict)
    assert status["memex_version"] == __version__
    assert status["vector_version"].startswith("0.8")
    assert status["backend"]["memex_db_version"] == __version__
    assert status["backend"]["backend_rss_mb"] > 0


def test_version_mismatch_asks_for_a_new_session(
    conn: psycopg.Connection[tuple[object, ...]],
) -> None:
    # SQL installed by another memex version calling into this backend's memex_db.
    conn.execute(
        """
        create function memex._test_other_version() returns text language plpython3u as $py$
        if "memex_db" not in GD:
            plpy.execute("select memex._python_init()")
        return GD["memex_db"].entry.call(plpy, GD, "0.0.0-other", "status")
        $py$
        """
    )
    with pytest.raises(psycopg.errors.ObjectNotInPrerequisiteState) as info:
        conn.execute("select memex._test_other_version()")
    assert "new database session" in (info.value.diag.message_hint or "")


def test_a_session_cannot_choose_where_python_code_comes_from(db: str) -> None:
    # The lib dir comes from the server's environment only: a setting would let a caller choose
    # which Python code the backend imports.
    with psycopg.connect(db, autocommit=True) as fresh:
        fresh.execute("set memex.home = '/tmp/elsewhere'")
        fresh.execute("select memex.embed('x')")
        row = fresh.execute("select memex.status()->'backend'->'paths'->>'lib'").fetchone()
        assert row is not None
        assert not str(row[0]).startswith("/tmp/elsewhere")


def test_memory_budget_too_small_is_a_clear_error(db: str) -> None:
    with psycopg.connect(db, autocommit=True) as fresh:
        fresh.execute("set memex.memory_budget_mb = 20")
        with pytest.raises(psycopg.errors.OutOfMemory, match=r"memex\.memory_budget_mb"):
            fresh.execute("select memex.embed('x')")


@pytest.mark.parametrize(
    ("call", "message"),
    [("select memex.embed(repeat('x', 100001))", "memex.embed: the input has 100001 characters"),
     ("select * from memex.embed_batch(array_fill('x'::text, array[4097]))",
      "memex.embed_batch: 4097 texts"),
     ("select * from memex.embed_batch(array_fill(repeat('x', 5000000), array[3]))",
      "the limits are 4096 texts and 10,000,000 characters"),
     ("select memex.count_tokens(repeat('x', 50000001))", "the limit is 50,000,000"),
     ("select count(*) from memex.chunk_text(repeat('x', 50000001))", "the limit is 50,000,000")],
)  # fmt: skip
def test_inputs_that_reach_the_model_are_capped_before_it_loads(
    db: str, call: str, message: str
) -> None:
    with psycopg.connect(db, autocommit=True) as app:  # a new backend: nothing loaded yet
        app.execute("set role memex_app")
        with pytest.raises(psycopg.errors.ProgramLimitExceeded, match=message):
            app.execute(call)
        loaded = app.execute("select memex.status() -> 'backend' -> 'loaded_models'").fetchone()
        assert loaded == ([],), "refused before any model was loaded"


def test_the_app_role_cannot_run_the_environment_check(db: str) -> None:
    with psycopg.connect(db) as app:
        app.execute("set role memex_app")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            app.execute("select * from memex.python_check()")


def test_limits_are_the_administrators_and_a_session_cannot_lift_them(db: str) -> None:
    with psycopg.connect(db, autocommit=True) as admin:
        admin.execute("set role memex_admin")
        admin.execute("insert into memex.limits (name, value) values ('embed_runtime', 'onnx')")
    with psycopg.connect(db, autocommit=True) as app:
        app.execute("set role memex_app")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            app.execute("delete from memex.limits")
        app.execute("set memex.embed_runtime = 'sentence-transformers'")
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="fixed the runtime"):
            app.execute("select memex.embed('x')")
        app.execute("reset memex.embed_runtime")
        assert app.execute("select vector_dims(memex.embed('x'))").fetchone() == (384,)
