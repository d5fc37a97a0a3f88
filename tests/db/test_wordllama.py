"""wordllama, the second real offline model (the static model inside its wheel, 256 dimensions):
its vectors in the database equal the package's own, and reembed moves a corpus from MiniLM@384
to it and back while searches run, with no failed search and one vector per chunk."""

from __future__ import annotations

import json
import subprocess
import threading
from collections.abc import Iterator

import psycopg
import pytest

from tests.conftest import server_python
from tests.db.helpers import admin, load_documents, make_tenants, wait_until

Conn = psycopg.Connection[tuple[object, ...]]

TEXTS = [
    "hello world",
    "How do I rotate the signing keys without downtime?",
    "Le chat dort sur le canapé pendant que la pluie tombe.",
    "def handler(event):\n    return {'status': 200, 'body': event['id']}",
    "PostgreSQL row-level security isolates each tenant's rows. " * 12,
    "?!",
]

REFERENCE = """
import json, logging, pathlib, sys
logging.disable(logging.INFO)
import wordllama
from wordllama import WordLlama
# Offline: the wheel's own files (its tokenizer is looked up under cache_dir/tokenizers).
model = WordLlama.load(config="l2_supercat", dim=256, disable_download=True,
                       cache_dir=pathlib.Path(wordllama.__file__).parent)
print(json.dumps(model.embed(json.load(sys.stdin), norm=True).tolist()))
"""


def _cosine(a: list[float], b: list[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    return dot / ((sum(x * x for x in a) ** 0.5) * (sum(y * y for y in b) ** 0.5))


def test_wordllama_vectors_equal_the_packages_own(conn: Conn) -> None:
    conn.execute("select memex.create_space('wl', 'wordllama')")
    row = conn.execute("select provider, dimensions from memex.spaces where name = 'wl'").fetchone()
    assert row == ("wordllama", 256)
    rows = conn.execute(
        "select embedding::text from memex.embed_batch(%s, 'wl') order by ord", (TEXTS,)
    ).fetchall()
    reference = json.loads(
        subprocess.run(
            [server_python(), "-c", REFERENCE], input=json.dumps(TEXTS), capture_output=True,
            text=True, check=True,
        ).stdout
    )  # fmt: skip
    for (vector,), expected, text in zip(rows, reference, TEXTS, strict=True):
        got = json.loads(str(vector))
        assert len(got) == 256
        assert _cosine(got, expected) >= 0.9999, text
    # Chunks are counted with wordllama's own tokenizer when its space is asked for.
    count = conn.execute("select memex.count_tokens('hello world', 'wl')").fetchone()
    assert count is not None and int(count[0]) > 0  # type: ignore[call-overload]


@pytest.fixture
def embedded(conn: Conn, db: str) -> Iterator[tuple[str, dict[str, str]]]:
    ids = make_tenants(conn, "a", "b")
    load_documents(db, ids["a"], 160)
    load_documents(db, ids["b"], 80)
    with admin(db) as run:
        run.execute("call memex.embed_pending(batch_size => 64)")
    yield db, ids


def _space_rows(dsn: str) -> dict[str, tuple[str, int, int]]:
    """space name -> (status, vectors, distinct chunks whose vector matches their content)."""
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            """
            select s.name, s.status, count(e.chunk_id)
                 , count(distinct c.id) filter (where c.content_hash = e.content_hash)
              from memex.spaces as s
              left join memex.embeddings as e on e.space_id = s.id
              left join memex.chunks as c on c.tenant_id = e.tenant_id and c.id = e.chunk_id
             group by s.name, s.status
            """
        ).fetchall()
    return {str(r[0]): (str(r[1]), int(r[2]), int(r[3])) for r in rows}  # type: ignore[call-overload]


@pytest.mark.slow
def test_reembed_to_wordllama_and_back_while_searches_run(
    embedded: tuple[str, dict[str, str]],
) -> None:
    dsn, ids = embedded
    searches = 0
    errors: list[BaseException] = []
    stop = threading.Event()

    def search_loop() -> None:
        nonlocal searches
        with psycopg.connect(dsn, autocommit=True) as reader:
            reader.execute("set role memex_app")
            reader.execute("select memex.set_tenant(%s, false)", (ids["a"],))
            while not stop.is_set():
                try:
                    for mode in ("vector", "hybrid"):
                        rows = reader.execute(
                            "select count(*) from memex.rag_search('rotate the keys', k => 5,"
                            " mode => %s)", (mode,),
                        ).fetchone()  # fmt: skip
                        assert rows is not None and rows[0] == 5
                    searches += 1
                except (psycopg.Error, AssertionError) as exc:  # the assertion below reports it
                    errors.append(exc)

    loop = threading.Thread(target=search_loop)
    loop.start()
    try:
        with admin(dsn) as run:
            run.execute("call memex.reembed('wordllama', 256, batch_size => 32)")
            halfway = searches
            wait_until(lambda: searches > halfway + 2 or bool(errors), "searches on wordllama")
            assert _space_rows(dsn)["wordllama@256"] == ("active", 240, 240)
            run.execute("call memex.reembed('all-MiniLM-L6-v2', 384, batch_size => 32)")
        back = searches
        wait_until(lambda: searches > back + 2 or bool(errors), "searches back on MiniLM")
    finally:
        stop.set()
        loop.join(60)
    assert errors == []
    spaces = _space_rows(dsn)
    assert spaces["all-MiniLM-L6-v2@384"] == ("active", 240, 240)
    assert spaces["wordllama@256"] == ("retired", 240, 240)


TEXT = (
    "PostgreSQL keeps each tenant's rows apart with row-level security; a policy compares the "
    "row's tenant with the session's. Backups run nightly and a restore is tested monthly. "
) * 40  # about 7,000 characters


@pytest.mark.parametrize("space", [None, "wl"])
def test_chunks_hold_the_text_about_once_whatever_the_tokenizer_says(
    conn: Conn, space: str | None
) -> None:
    """wordllama's tokenizer reports a whole segment as one word: each chunk moved on by one
    token (6k characters gave 802 chunks, 9,000 gave 2,202 chunks and 1.65M characters), and
    overlap => max_tokens - 1 did the same with any tokenizer. Each chunk now moves on by at
    least max_tokens - overlap (overlap at most half a chunk): the chunks of a text hold at
    most max_tokens / (max_tokens - overlap) times its characters, plus one chunk."""
    conn.execute("select memex.create_space('wl', 'wordllama')")
    for max_tokens, overlap in ((None, None), (120, 119), (64, 16)):
        rows = conn.execute(
            "select count(*), sum(length(content)), max(length(content))"
            " from memex.chunk_text(%s, %s, %s, %s)",
            (TEXT, max_tokens, overlap, space),
        ).fetchone()
        assert rows is not None
        n, total, biggest = (int(v) for v in rows)  # type: ignore[call-overload]
        size = max_tokens or 200
        lap = min(overlap if overlap is not None else 32, size // 2)
        assert total <= len(TEXT) * size / (size - lap) + biggest, (space, max_tokens, overlap)
        assert n < len(TEXT) / 10, "not one chunk per token"


def test_a_chunk_never_holds_more_than_16_characters_a_token(conn: Conn) -> None:
    """A 10,000-character "word" is one token ([UNK]) to WordPiece: 200 of them made a 2 MB
    chunk. Chunks are cut to max_tokens x 16 characters."""
    text = ("x" * 10_000 + " ") * 30
    rows = conn.execute(
        "select count(*), max(length(content)), sum(length(content)) from memex.chunk_text(%s)",
        (text,),
    ).fetchone()
    assert rows is not None
    n, biggest, total = (int(v) for v in rows)  # type: ignore[call-overload]
    assert biggest <= 200 * 16
    assert total >= 30 * 10_000 - n, "every character is still in a chunk"
