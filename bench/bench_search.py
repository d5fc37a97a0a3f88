"""rag_search latency per mode vs a raw pgvector query, and HNSW recall@10 vs exact search.

    .venv/bin/python bench/bench_search.py [--corpus synthetic|wikipedia] [--chunks 10000]
                                           [--queries 50] [--dsn DSN]

Documents in two tenants (99% / 1%): synthetic topical texts (bench/synthetic.py) or real
English Wikipedia paragraphs with their titles (bench/wikipedia.py, queries of 5 to 20 words
cut from paragraphs that are not loaded). Vectors come from the deterministic hash:384 provider
in a space of its own (scale, not meaning: the real model's quality is what `memex eval`
measures); the text leg always ranks the real text with BM25. In this one run: rag_search
p50/p95 per mode against a raw `ORDER BY (embedding::vector(384)) <=> $1 LIMIT k` on the same
partial HNSW index with a precomputed vector, hybrid p50 / vector p50, and the recall@10 of
vector mode against an exact scan, for both tenants.
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

import psycopg

import synthetic
import wikipedia
from memex.dsn import resolve_dsn
from memex.install import install
from scratch import scratch_database

K = 10
RAW = ("select chunk_id from memex.embeddings where space_id = {sid} and tenant_id = %s "
       "order by embedding::vector(384) <=> %s::vector(384) limit %s")  # fmt: skip


def load(
    conn: psycopg.Connection[tuple[object, ...]], chunks: int, corpus: Any, loader: Any
) -> dict[str, str]:
    ids, first = {}, 0
    for name, count in (("big", chunks - chunks // 100), ("small", chunks // 100)):
        ids[name] = str(conn.execute("select memex.create_tenant(%s)", (name,)).fetchone()[0])  # type: ignore[index]
        loader(conn, name, first, count, corpus, name)
        first += count
    return ids


def timed(
    conn: psycopg.Connection[tuple[object, ...]], sql: str, args: tuple[object, ...]
) -> float:
    started = time.perf_counter()
    conn.execute(sql, args).fetchall()
    return (time.perf_counter() - started) * 1000


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


def measure_recall(
    conn: psycopg.Connection[tuple[object, ...]],
    tenant: str,
    space_id: int,
    space: str,
    queries: list[str],
) -> dict[str, float]:
    """Mean recall@10 against an exact scan: raw pgvector queries (relaxed and strict iterative
    scans, LIMIT 10 straight from the index) and rag_search's vector mode."""
    conn.execute("select memex.set_tenant(%s, false)", (tenant,))
    sql = RAW.format(sid=space_id)
    found: dict[str, list[float]] = {"raw relaxed": [], "raw strict": [], "rag_search": []}
    for q in queries:
        v = conn.execute("select memex.embed(%s, %s)::text", (q, space)).fetchone()[0]  # type: ignore[index]
        with conn.transaction():
            conn.execute("set local enable_indexscan = off")
            exact = {r[0] for r in conn.execute(sql, (tenant, v, K))}
        results = {}
        for how, order in (("raw relaxed", "relaxed_order"), ("raw strict", "strict_order")):
            with conn.transaction():
                conn.execute(f"set local hnsw.iterative_scan = {order}")
                results[how] = {r[0] for r in conn.execute(sql, (tenant, v, K))}
        results["rag_search"] = {r[0] for r in conn.execute(
            "select chunk_id from memex.rag_search(%s, k => %s, mode => 'vector', space => %s)",
            (q, K, space))}  # fmt: skip
        for how, approx in results.items():
            found[how].append(len(approx & exact) / max(1, len(exact)))
    return {how: statistics.fmean(values) for how, values in found.items()}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--corpus", choices=["synthetic", "wikipedia"], default="synthetic")
    parser.add_argument("--wikipedia", help="corpus.jsonl of the Wikipedia paragraphs")
    parser.add_argument("--chunks", type=int, default=10_000)
    parser.add_argument("--queries", type=int, default=50)
    parser.add_argument("--dsn")
    parser.add_argument("--no-real-recall", dest="real_recall", action="store_false",
                        help="skip the real model's vectors (slow at 100k)")  # fmt: skip
    parser.add_argument("--keep", action="store_true", help="keep the memex_bench_search database")
    parser.add_argument("--reuse", action="store_true",
                        help="search what a --keep run left (same --corpus, --chunks)")  # fmt: skip
    args = parser.parse_args()
    dsn = scratch_database(resolve_dsn(args.dsn), "memex_bench_search", args.reuse)
    install(dsn, say=lambda _m: None)
    with psycopg.connect(dsn, autocommit=True) as conn:
        started = time.perf_counter()
        corpus: Any = (
            wikipedia.Corpus(args.wikipedia) if args.corpus == "wikipedia" else synthetic.Corpus()
        )
        known = dict(conn.execute("select name, id::text from memex.tenants").fetchall())
        if args.reuse and {"big", "small"} <= known.keys():
            ids = {"big": known["big"], "small": known["small"]}
            sid = conn.execute("select id from memex.spaces where name = 'hash-384'").fetchone()[0]  # type: ignore[index]
        else:
            loader = wikipedia.load if args.corpus == "wikipedia" else synthetic.load
            ids = load(conn, args.chunks, corpus, loader)
            sid = conn.execute("select memex.create_space('hash-384', 'hash:384')").fetchone()[0]  # type: ignore[index]
            conn.execute("call memex.embed_pending('hash-384', batch_size => 512)")
            if args.real_recall:  # the real model's vectors too, for a meaningful recall figure
                conn.execute("call memex.embed_pending('all-MiniLM-L6-v2@384', batch_size => 64)")
            conn.execute("select memex.activate_space('hash-384', force => true)")
            conn.execute("call memex.optimize_text_index()")  # as after a bulk load
            conn.execute("vacuum analyze")
        chunks = conn.execute("select count(*) from memex.chunks").fetchone()[0]  # type: ignore[index]
        print(f"{args.chunks} {args.corpus} documents ({chunks} chunks) loaded and embedded "
              f"(hash:384) in {time.perf_counter() - started:.0f} s")  # fmt: skip
        queries = [corpus.query(i) for i in range(args.queries)]
        conn.execute("select memex.set_tenant(%s, false)", (ids["big"],))
        raw_sql = RAW.format(sid=sid)
        vectors = [
            conn.execute("select memex.embed(%s)::text", (q,)).fetchone()[0] for q in queries
        ]  # type: ignore[index]
        raw = [timed(conn, raw_sql, (ids["big"], v, K)) for v in vectors]
        print(f"{'query':28} {'p50 ms':>7} {'p95 ms':>7} {'p50 vs raw':>10}")
        label = "raw pgvector (precomputed)"
        print(f"{label:28} {pct(raw, 0.5):7.2f} {pct(raw, 0.95):7.2f} {1.0:10.2f}")
        overload = [timed(conn, "select * from memex.rag_search(%s::vector, k => %s)", (v, K))
                    for v in vectors]  # fmt: skip
        label = "rag_search(vector) overload"
        print(f"{label:28} {pct(overload, .5):7.2f} {pct(overload, .95):7.2f} "
              f"{pct(overload, .5) / pct(raw, .5):10.2f}")  # fmt: skip
        p50 = {}
        for mode in ("vector", "text", "hybrid"):
            lat = [timed(conn, "select * from memex.rag_search(%s, k => %s, mode => %s)",
                         (q, K, mode)) for q in queries]  # fmt: skip
            p50[mode] = pct(lat, 0.5)
            print(f"{'rag_search ' + mode:28} {pct(lat, .5):7.2f} {pct(lat, .95):7.2f} "
                  f"{pct(lat, .5) / pct(raw, .5):10.2f}")  # fmt: skip
        print(f"hybrid p50 / vector p50: {p50['hybrid'] / p50['vector']:.2f} (goal <= 1.5)")
        spaces = [("hash:384, random vectors (no structure: the worst case)", sid, "hash-384")]
        if args.real_recall:
            spaces.append(("all-MiniLM-L6-v2, real vectors", 1, "all-MiniLM-L6-v2@384"))
        for label, space_id, space_name in spaces:
            print(f"HNSW recall@10 vs an exact scan, {label} (goal >= 0.95):")
            for name in ("big", "small"):
                recall = measure_recall(conn, ids[name], space_id, space_name, queries)
                share = "99%" if name == "big" else "1%"
                figures = ", ".join(f"{how} {value:.3f}" for how, value in recall.items())
                print(f"  tenant with {share} of the chunks: {figures}")
    if args.keep:
        return
    with psycopg.connect(resolve_dsn(args.dsn), autocommit=True) as conn:
        conn.execute("drop database if exists memex_bench_search with (force)")


if __name__ == "__main__":
    main()
