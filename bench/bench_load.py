"""Concurrent clients on a realistic mix, across tenants, with and without a worker draining:
throughput, latency per operation, errors; and the sizing figures of docs/scale.md.

    .venv/bin/python bench/bench_load.py [--tenants 20] [--documents 550] [--clients 1,4,16]
                                         [--seconds 30] [--reuse] [--dsn DSN]

A scratch database (memex_bench_load): `--tenants` tenants of `--documents` one-chunk synthetic
documents each (bench/synthetic.py; 11,000 chunks by default) and a conversation each, embedded
by CALL memex.embed_pending (its rate is the embedding figure). Then, for each client count,
N asyncio clients (one psycopg connection each, as memex_app, closed loop: the next operation
when the last returns) run for `--seconds`:
  80%  rag_search, hybrid, k 10, a synthetic query, a random tenant
  15%  upserts: two thirds a new document (upsert_document), one third two messages appended
       to the tenant's conversation (upsert_messages)
   5%  delete_document of a document this run wrote (or, before there is one, an original one)
once with nothing embedding the new chunks, once with one `memex worker` draining them.
Prints operations/s (and the ratio to one client), p50/p95/p99 per operation, errors by
SQLSTATE (deadlocks are 40P01), then sizes per chunk (tables, HNSW, BM25), embedding rate and
backend memory (USS of the clients' backends, the model loaded in each).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import statistics
import subprocess
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

import psutil
import psycopg

import synthetic
from memex.dsn import resolve_dsn
from memex.install import install
from scratch import percentile, scratch_database

MEMEX = str(Path(sys.executable).parent / "memex")
MIX = (("search", 0.80), ("upsert_document", 0.10), ("upsert_messages", 0.05), ("delete", 0.05))
SEARCH_ONLY = (("search", 1.0),)


class Run:
    """One load run's record: latencies per operation, errors by SQLSTATE."""

    def __init__(self) -> None:
        self.latency: dict[str, list[float]] = defaultdict(list)
        self.errors: Counter[str] = Counter()
        self.written: dict[str, list[str]] = defaultdict(list)


def pick(rng: random.Random, mix: tuple[tuple[str, float], ...]) -> str:
    roll = rng.random()
    for name, share in mix:
        if roll < share:
            return name
        roll -= share
    return mix[0][0]


async def client(dsn: str, tenants: list[str], documents: int, corpus: synthetic.Corpus,
                 run: Run, stop_at: float, seed: int, pids: list[int],
                 mix: tuple[tuple[str, float], ...]) -> None:  # fmt: skip
    rng = random.Random(seed)
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        await conn.execute("set role memex_app")
        pids.append(conn.info.backend_pid)
        n = 0
        while time.perf_counter() < stop_at:
            n += 1
            tenant = rng.choice(tenants)
            operation = pick(rng, mix)
            started = time.perf_counter()
            try:
                async with conn.transaction():
                    await conn.execute("select memex.set_tenant(%s)", (tenant,))
                    await operate(conn, operation, tenant, documents, corpus, run, rng, seed, n)
                run.latency[operation].append((time.perf_counter() - started) * 1000)
            except psycopg.Error as exc:
                run.errors[f"{operation}: {exc.sqlstate} {str(exc).splitlines()[0][:80]}"] += 1


async def operate(conn: psycopg.AsyncConnection, operation: str, tenant: str, documents: int,
                  corpus: synthetic.Corpus, run: Run, rng: random.Random, seed: int,
                  n: int) -> None:  # fmt: skip
    if operation == "search":
        query = corpus.query(rng.randrange(10**6))
        cur = await conn.execute("select count(*) from memex.rag_search(%s, k => 10)", (query,))
        await cur.fetchall()
    elif operation == "upsert_document":
        uri = f"load/{seed}/{n}"
        await conn.execute("select memex.upsert_document(%s, %s)",
                           (uri, corpus.document(rng.randrange(10**6))))  # fmt: skip
        run.written[tenant].append(uri)
    elif operation == "upsert_messages":
        text = corpus.document(rng.randrange(10**6))
        messages = [{"role": "user", "content": text[:200]},
                    {"role": "assistant", "content": text[200:400] or "noted"}]  # fmt: skip
        await conn.execute("select memex.upsert_messages('chat', %s)", (json.dumps(messages),))
    else:
        mine = run.written[tenant]
        uri = mine.pop(rng.randrange(len(mine))) if mine else f"doc/{rng.randrange(documents)}"
        await conn.execute("select memex.delete_document(%s)", (uri,))


def backend_uss_mb(pids: list[int]) -> list[float]:
    sizes = []
    for pid in pids:
        with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
            sizes.append(psutil.Process(pid).memory_full_info().uss / 2**20)
    return sizes


async def load(dsn: str, tenants: list[str], documents: int, clients: int, seconds: float,
               corpus: synthetic.Corpus,
               mix: tuple[tuple[str, float], ...]) -> tuple[Run, float, list[float]]:  # fmt: skip
    run = Run()
    pids: list[int] = []
    started = time.perf_counter()
    stop_at = started + seconds
    tasks = [client(dsn, tenants, documents, corpus, run, stop_at, 1000 * clients + i, pids, mix)
             for i in range(clients)]  # fmt: skip

    # the backends' memory is read while they are alive: just before the end
    async def sample() -> list[float]:
        await asyncio.sleep(max(seconds - 2, 0.5))
        return backend_uss_mb(pids)

    *_, memory = await asyncio.gather(*tasks, sample())
    return run, time.perf_counter() - started, memory


def report(label: str, run: Run, elapsed: float, single: float | None) -> float:
    total = sum(len(v) for v in run.latency.values())
    rate = total / elapsed
    ratio = f"  ({rate / single:.2f}x one client)" if single else ""
    print(f"{label}: {rate:.1f} operations/s{ratio}, {sum(run.errors.values())} errors")
    for name, _ in MIX:  # every operation the run made
        values = run.latency.get(name, [])
        if values:
            p50, p95 = statistics.median(values), percentile(values, 0.95)
            print(f"    {name:16} {len(values) / elapsed:7.1f}/s  p50 {p50:7.1f}  p95 {p95:7.1f}"
                  f"  p99 {percentile(values, 0.99):7.1f} ms")  # fmt: skip
    for error, count in run.errors.most_common():
        print(f"    error x{count}: {error}")
    return rate


# Bytes per chunk, by structure. The HNSW index is told apart by its access method.
SIZES_SQL = """
with vector_indexes as (
    select coalesce(sum(pg_relation_size(i.indexrelid)) filter (where a.amname = 'hnsw'), 0)
             as hnsw,
           coalesce(sum(pg_relation_size(i.indexrelid)) filter (where a.amname <> 'hnsw'), 0)
             as other
      from pg_index as i join pg_class as c on c.oid = i.indexrelid
      join pg_am as a on a.oid = c.relam
     where i.indrelid = 'memex.embeddings'::regclass
)
select 'chunks, documents, messages (heap, btrees, tsvector)',
       pg_total_relation_size('memex.chunks') + pg_total_relation_size('memex.documents')
       + pg_total_relation_size('memex.messages')
       + pg_total_relation_size('memex.conversations')
union all select 'embeddings (heap and keys)', pg_table_size('memex.embeddings') + other
  from vector_indexes
union all select 'HNSW index', hnsw from vector_indexes
union all select 'BM25 postings and segments',
       pg_total_relation_size('memex.text_postings') + pg_total_relation_size('memex.text_segments')
"""


def sizes(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("vacuum analyze")
        chunks = conn.execute("select count(*) from memex.chunks").fetchone()[0]  # type: ignore[index]
        rows = conn.execute(SIZES_SQL).fetchall()
    per_chunk = sum(int(r[1]) for r in rows) / chunks
    print(f"sizes over {chunks:,} chunks (384 dimensions; documents of 20-60 words, one chunk):")
    for name, size in rows:
        print(f"    {name:56} {int(size) / chunks:8.0f} bytes/chunk")
    print(f"    {'all':56} {per_chunk:8.0f} bytes/chunk: {2**30 / per_chunk:,.0f} chunks/GB")


def setup(dsn: str, tenants: int, documents: int, corpus: synthetic.Corpus) -> list[str]:
    install(dsn, say=lambda _m: None)
    names = [f"t{i:02}" for i in range(tenants)]
    with psycopg.connect(dsn, autocommit=True) as conn:
        for i, name in enumerate(names):
            conn.execute("select memex.create_tenant(%s)", (name,))
            synthetic.load(conn, name, i * documents, documents, corpus, "doc")
            with conn.transaction():
                conn.execute("select memex.set_tenant(%s)", (name,))
                conn.execute("select memex.upsert_conversation('chat', 'load')")
        chunks = conn.execute("select count(*) from memex.chunks").fetchone()[0]  # type: ignore[index]
        started = time.perf_counter()
        conn.execute("call memex.embed_pending()")
        elapsed = time.perf_counter() - started
    cores = os.cpu_count() or 1
    print(f"embedded {chunks:,} chunks in {elapsed:.1f} s: {chunks / elapsed:.0f}/s "
          f"({chunks / elapsed / cores:.0f}/s per core, {cores} cores, one backend)")  # fmt: skip
    return names


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tenants", type=int, default=20)
    parser.add_argument("--documents", type=int, default=550)
    parser.add_argument("--clients", default="1,4,16")
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--reuse", action="store_true", help="keep a loaded scratch database")
    parser.add_argument("--search-only", action="store_true",
                        help="hybrid searches only, no worker: searches/s per core")  # fmt: skip
    parser.add_argument("--dsn")
    args = parser.parse_args()
    corpus = synthetic.Corpus()
    dsn = scratch_database(resolve_dsn(args.dsn), "memex_bench_load", reuse=args.reuse)
    if args.reuse:
        with psycopg.connect(dsn) as conn:
            names = [r[0] for r in conn.execute("select name from memex.tenants order by name")]
    else:
        names = setup(dsn, args.tenants, args.documents, corpus)
    with psycopg.connect(dsn) as conn:
        found = conn.execute("select id from memex.tenants where name = any(%s)", (names,))
        ids = [str(r[0]) for r in found]
    counts = [int(c) for c in args.clients.split(",")]
    mix = SEARCH_ONLY if args.search_only else MIX
    for draining in (False,) if args.search_only else (False, True):
        worker = None
        if draining:
            worker = subprocess.Popen(
                [MEMEX, "worker"], env={**os.environ, "MEMEX_DSN": dsn},
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )  # fmt: skip
            time.sleep(3)  # its model loaded
        print(f"\n{'one memex worker draining' if draining else 'nothing embedding the writes'}"
              f" ({len(ids)} tenants, {args.seconds:.0f} s a run):")  # fmt: skip
        single = None
        try:
            for clients in counts:
                run, elapsed, memory = asyncio.run(
                    load(dsn, ids, args.documents, clients, args.seconds, corpus, mix))  # fmt: skip
                rate = report(f"  {clients:2} clients", run, elapsed, single)
                single = single or rate
                if memory and not draining:
                    each = statistics.median(memory)
                    print(f"    backend memory (USS, model loaded): {each:.0f} MB each, "
                          f"{sum(memory):.0f} MB for {len(memory)}")  # fmt: skip
        finally:
            if worker:
                worker.terminate()
                worker.wait(60)
        with psycopg.connect(dsn) as conn:
            left = conn.execute("select memex.pending_count()").fetchone()[0]  # type: ignore[index]
        print(f"  pending after the runs: {left:,}")
    sizes(dsn)


if __name__ == "__main__":
    main()
