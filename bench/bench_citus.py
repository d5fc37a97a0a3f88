"""memex distributed on Citus against a single node, same machine, same run.

    .venv/bin/python bench/bench_citus.py [--docs 2000] [--queries 40] [--rounds 3] [--dsn DSN]

The Citus side is the test harness's loopback cluster (tests/citus.py: a coordinator and two
workers on this machine, started and removed here; Citus must be installed, `make citus`);
the single node is a scratch database (memex_bench_citus) on --dsn's cluster (the dev
cluster by default). Each gets the same --docs synthetic one-chunk documents of one tenant,
embedded by `CALL memex.embed_pending()`. Per round, on each side in turn (the order
alternates): --queries searches in each mode (`rag_search`, k 10, the tenant set in each
transaction, as applications do) and --queries single-document upserts. Prints p50/p95 per
operation and side, and the ratio Citus / single node of the p50s. On one machine the workers
share its cores: this prices Citus's routing and round trips, not what more machines buy.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

import psycopg

import synthetic
from memex.citus import distribute
from memex.dsn import resolve_dsn
from memex.install import install
from scratch import percentile, scratch_database

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.citus import citus_cluster, citus_missing

MODES = ("vector", "text", "hybrid")
Conn = psycopg.Connection[tuple[object, ...]]


def prepare(dsn: str, docs: int, corpus: synthetic.Corpus) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("select memex.create_tenant('bench')")
        synthetic.load(conn, "bench", 0, docs, corpus, "doc")
        conn.execute("call memex.embed_pending()")


def timed(conn: Conn, statement: str, args: tuple[object, ...]) -> float:
    started = time.perf_counter()
    with conn.transaction():
        conn.execute("select memex.set_tenant('bench')")
        conn.execute(statement, args).fetchall()
    return (time.perf_counter() - started) * 1000


def one_round(dsn: str, corpus: synthetic.Corpus, queries: int, r: int) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {}
    with psycopg.connect(dsn, autocommit=True) as conn:
        timed(conn, "select memex.embed('warm up')", ())
        for mode in MODES:
            times[mode] = [
                timed(
                    conn,
                    "select chunk_id from memex.rag_search(%s, k => 10, mode => %s)",
                    (corpus.query(i), mode),
                )
                for i in range(queries)
            ]
        times["upsert"] = [
            timed(
                conn,
                "select memex.upsert_document(%s, %s)",
                (f"new/{r}/{i}", corpus.document(100_000 + r * queries + i)),
            )
            for i in range(queries)
        ]
    return times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--docs", type=int, default=2000)
    parser.add_argument("--queries", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--dsn", default=None, help="the single node's cluster (default: dev)")
    args = parser.parse_args()
    if (missing := citus_missing()) is not None:
        print(missing, file=sys.stderr)
        return 2
    corpus = synthetic.Corpus()
    single = scratch_database(resolve_dsn(args.dsn), "memex_bench_citus")
    quiet: Callable[[str], None] = lambda _m: None  # noqa: E731
    install(single, say=quiet)
    prepare(single, args.docs, corpus)
    with citus_cluster() as cluster:
        install(cluster.dsn(), say=quiet)
        distribute(cluster.dsn(), say=quiet)
        prepare(cluster.dsn(), args.docs, corpus)
        sides = {"citus": cluster.dsn(), "single": single}
        found: dict[str, dict[str, list[float]]] = {s: {} for s in sides}
        for r in range(args.rounds):
            order = list(sides) if r % 2 == 0 else list(reversed(sides))
            for side in order:
                for op, values in one_round(sides[side], corpus, args.queries, r).items():
                    found[side].setdefault(op, []).extend(values)
    print(f"{args.docs} documents, {args.queries} per operation and round, {args.rounds} rounds;"
          " p50 / p95 ms")  # fmt: skip
    print(f"{'operation':<10} {'single':>16} {'citus':>16} {'citus/single':>13}")
    for op in (*MODES, "upsert"):
        s, c = found["single"][op], found["citus"][op]
        ratio = percentile(c, 0.5) / percentile(s, 0.5)
        print(f"{op:<10} {percentile(s, 0.5):7.2f} / {percentile(s, 0.95):6.2f} "
              f"{percentile(c, 0.5):7.2f} / {percentile(c, 0.95):6.2f} {ratio:12.2f}x")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
