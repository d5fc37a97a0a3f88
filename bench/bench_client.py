"""What memex.Client adds to a search: Client.search against the same rag_search from psycopg.

    .venv/bin/python bench/bench_client.py [--documents 2000] [--queries 200] [--rounds 3]
                                           [--dsn DSN]

A scratch database (memex_bench_client) with one tenant of synthetic topical documents
(bench/synthetic.py), embedded by the bundled model. Each query runs three ways, interleaved
in every round so that the machine's drift hits all alike:
  psycopg    one connection, what an application writes by hand: a transaction, set_tenant,
             rag_search (4 round trips with BEGIN and COMMIT)
  pipelined  the same statements in one psycopg pipeline (what the client sends)
  client     memex.Client(tenant=...).search(query): pool checkout, pipeline, typed rows
Prints p50/p95 per way and the client's p50 minus psycopg's (the goal: at most 1 ms).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import psycopg

import synthetic
from memex import Client
from memex.dsn import resolve_dsn
from memex.install import install
from scratch import percentile, scratch_database

TENANT = "bench"
SEARCH = "select * from memex.rag_search(%s, k => 8)"


def load(dsn: str, documents: int, corpus: synthetic.Corpus) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("select memex.create_tenant(%s)", (TENANT,))
        synthetic.load(conn, TENANT, 0, documents, corpus, "doc")
        conn.execute("call memex.embed_pending()")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--documents", type=int, default=2000)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--dsn")
    args = parser.parse_args()
    dsn = scratch_database(resolve_dsn(args.dsn), "memex_bench_client")
    install(dsn, say=lambda _m: None)
    corpus = synthetic.Corpus()
    load(dsn, args.documents, corpus)
    queries = [corpus.query(i) for i in range(args.queries)]
    timings: dict[str, list[float]] = {"psycopg": [], "pipelined": [], "client": []}
    with psycopg.connect(dsn) as plain, psycopg.connect(dsn) as piped, \
            Client(dsn, tenant=TENANT, max_size=1) as client:  # fmt: skip
        for conn in (plain, piped):
            conn.prepare_threshold = None  # as the client: no server-side prepared statements

        def by_hand(query: str) -> None:
            with plain.transaction():
                plain.execute("select memex.set_tenant(%s)", (TENANT,))
                plain.execute(SEARCH, (query,)).fetchall()

        def in_pipeline(query: str) -> None:
            with piped.pipeline(), piped.transaction():
                piped.execute("select memex.set_tenant(%s)", (TENANT,))
                piped.execute(SEARCH, (query,)).fetchall()

        ways: dict[str, Callable[[str], object]] = {
            "psycopg": by_hand, "pipelined": in_pipeline, "client": client.search,
        }  # fmt: skip
        for query in queries[:10]:  # warm every backend's model and plans
            for run in ways.values():
                run(query)
        for round_ in range(args.rounds):
            order = list(ways) if round_ % 2 == 0 else list(reversed(ways))
            for query in queries:
                for name in order:
                    started = time.perf_counter()
                    ways[name](query)
                    timings[name].append((time.perf_counter() - started) * 1000)
    print(f"{args.documents} documents, {args.queries} queries x {args.rounds} rounds, "
          f"hybrid rag_search k=8, one tenant")  # fmt: skip
    for name, values in timings.items():
        print(f"{name:10} p50 {statistics.median(values):6.2f} ms   "
              f"p95 {percentile(values, 0.95):6.2f} ms")  # fmt: skip
    added = statistics.median(timings["client"]) - statistics.median(timings["psycopg"])
    print(
        f"client p50 - psycopg p50: {added:+.2f} ms (goal <= 1 ms); "
        f"ratio {statistics.median(timings['client']) / statistics.median(timings['psycopg']):.3f}"
    )


if __name__ == "__main__":
    main()
