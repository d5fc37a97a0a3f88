"""`memex worker` filling a space on an OpenAI-compatible endpoint with 1, 2 and 4 requests in
flight (--concurrency).

    .venv/bin/python bench/bench_remote.py [--chunks 1200] [--request-size 16] [--rounds 2]
                                           [--latency-ms 50] [--dsn DSN]

A real infinity-emb (the suite's: its own venv, the bundled MiniLM on CPU, loopback) serves the
endpoint; a scratch database (memex_bench_remote) holds one tenant of `--chunks` synthetic
one-chunk documents. Each run empties a space and runs `memex worker --once --space S
--batch-size 256 --concurrency N` (requests of `--request-size` inputs), taking the rate the
worker prints for its pass; rounds alternate the order of N. Two spaces: `near`, the server
itself, and `far`, the same server behind a loopback proxy that holds each request
`--latency-ms` first (a server across a network). Prints chunks/s per N (median over rounds)
and the ratio to N = 1. On a 2-core machine the server, the worker and PostgreSQL share the
cores: `near` shows what concurrency buys against a CPU-bound server, `far` what it buys
against latency.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
from pathlib import Path

import psycopg

import synthetic
from memex.dsn import resolve_dsn
from memex.install import install
from scratch import scratch_database

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.servers import FaultProxy, infinity_server  # the suite's own servers

KEY = "bench-key"
SERVED = "all-MiniLM-L6-v2"
MEMEX = str(Path(sys.executable).parent / "memex")


def fill(dsn: str, space: str, concurrency: int) -> float:
    """Chunks/s of a worker embedding every chunk into the remote space, from empty: the rate
    it prints for its pass (its start, imports and probe request left out)."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("delete from memex.embeddings where space_id ="
                     " (select id from memex.spaces where name = %s)", (space,))  # fmt: skip
    done = subprocess.run(
        [MEMEX, "worker", "--once", "--space", space, "--batch-size", "256",
         "--concurrency", str(concurrency)],
        env={**os.environ, "MEMEX_DSN": dsn, f"MEMEX_ENDPOINT_KEY_{space.upper()}": KEY},
        check=True, capture_output=True, text=True, timeout=1800,
    ).stdout  # fmt: skip
    return float(done.split(" chunks (")[1].split("/s)")[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--chunks", type=int, default=1200)
    parser.add_argument("--request-size", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--latency-ms", type=float, default=50)
    parser.add_argument("--dsn")
    args = parser.parse_args()
    dsn = scratch_database(resolve_dsn(args.dsn), "memex_bench_remote")
    install(dsn, say=lambda _m: None)
    corpus = synthetic.Corpus()
    with infinity_server(KEY, SERVED) as base, psycopg.connect(dsn, autocommit=True) as conn:
        proxy = FaultProxy(base)
        proxy.delay = args.latency_ms / 1000
        conn.execute("select memex.create_tenant('bench')")
        synthetic.load(conn, "bench", 0, args.chunks, corpus, "doc")
        options = f'{{"batch_size": {args.request_size}}}'
        for space, url in (("near", base), ("far", proxy.url)):
            conn.execute("select memex.create_endpoint(%s, %s, %s, %s)",
                         (space, url, SERVED, options))  # fmt: skip
            conn.execute("select memex.set_endpoint_key(%s, %s)", (space, KEY))
            conn.execute("select memex.create_space(%s, %s)", (space, f"endpoint:{space}"))
        fill(dsn, "near", 1)  # warm: the server's first batches
        rates: dict[tuple[str, int], list[float]] = {}
        for r in range(args.rounds):
            for space in ("near", "far"):
                for n in (1, 2, 4) if r % 2 == 0 else (4, 2, 1):
                    rates.setdefault((space, n), []).append(fill(dsn, space, n))
        proxy.close()
    print(f"{args.chunks} chunks, requests of {args.request_size} inputs, infinity-emb on CPU:")
    for space, label in (("near", "the server itself"),
                         ("far", f"+{args.latency_ms:.0f} ms a request")):  # fmt: skip
        single = statistics.median(rates[(space, 1)])
        for n in (1, 2, 4):
            rate = statistics.median(rates[(space, n)])
            print(f"  {label:20} --concurrency {n}: {rate:6.1f} chunks/s"
                  f"  ({rate / single:.2f}x one in flight)")  # fmt: skip


if __name__ == "__main__":
    main()
