"""How soon an idle `memex worker` stores the vector of a committed write, and what the NOTIFY
that wakes it costs the write.

    .venv/bin/python bench/bench_worker.py [--writes 60] [--upserts 400] [--rounds 3] [--dsn DSN]

A scratch database (memex_bench_worker), one tenant, the bundled model (local provider).
  latency  one short document upserted and committed, then the time until its vector is in
           memex.embeddings (read every 2 ms from another session), with one idle `memex
           worker` (--poll 600: only the notification wakes it); one write at a time, 0.3 s
           apart. Baseline in the same run: the same upsert with memex.embed_on_write on (the
           writing statement embeds it), commit included: the floor of any path.
  write    single-document upserts, each its own transaction, with the NOTIFY of
           memex._chunks_written against the same function without it (swapped in this scratch
           database between rounds, which alternate): the price of waking workers on the write
           path.
Prints p50/p95 and the ratios.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import psycopg

import synthetic
from memex.dsn import resolve_dsn
from memex.install import install
from scratch import percentile, scratch_database

TENANT = "bench"
MEMEX = str(Path(sys.executable).parent / "memex")
# memex._chunks_written without its NOTIFY: the baseline of the write rounds
QUIET = (
    "create or replace function memex._chunks_written(chunk_ids uuid[]) returns void"
    " language plpgsql set search_path = pg_catalog, pg_temp"
    " as $$ begin perform memex._embed_on_write(chunk_ids); end $$"
)


def report(name: str, values: list[float]) -> None:
    print(f"  {name:40} p50 {statistics.median(values):8.2f} ms   "
          f"p95 {percentile(values, 0.95):8.2f} ms")  # fmt: skip


def stored_after_commit(conn: psycopg.Connection, watcher: psycopg.Connection, uri: str,
                        text: str) -> float:  # fmt: skip
    """ms from the commit of an upsert to its vector stored (read by `watcher`)."""
    conn.execute("select memex.upsert_document(%s, %s)", (uri, text))
    conn.commit()
    committed = time.perf_counter()
    while not watcher.execute(
        "select exists (select from memex.embeddings e join memex.chunks c on c.id = e.chunk_id"
        " join memex.documents d on d.id = c.document_id where d.uri = %s"
        " and e.content_hash = c.content_hash)",
        (uri,),
    ).fetchone()[0]:  # type: ignore[index]
        time.sleep(0.002)
    return (time.perf_counter() - committed) * 1000


def embedded_in_write(conn: psycopg.Connection, uri: str, text: str) -> float:
    started = time.perf_counter()
    conn.execute("select memex.upsert_document(%s, %s)", (uri, text))
    conn.commit()
    return (time.perf_counter() - started) * 1000


def upserts(conn: psycopg.Connection, prefix: str, texts: list[str]) -> list[float]:
    times = []
    for i, text in enumerate(texts):
        started = time.perf_counter()
        conn.execute("select memex.upsert_document(%s, %s)", (f"{prefix}/{i}", text))
        conn.commit()
        times.append((time.perf_counter() - started) * 1000)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--writes", type=int, default=60)
    parser.add_argument("--upserts", type=int, default=400)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--dsn")
    args = parser.parse_args()
    dsn = scratch_database(resolve_dsn(args.dsn), "memex_bench_worker")
    install(dsn, say=lambda _m: None)
    corpus = synthetic.Corpus()
    texts = [" ".join(corpus.document(i).split()[:60]) for i in range(args.writes)]

    with psycopg.connect(dsn, autocommit=True) as admin:
        admin.execute("select memex.create_tenant(%s)", (TENANT,))
        tenant = admin.execute("select id from memex.tenants where name = %s", (TENANT,)).fetchone()
    with psycopg.connect(dsn) as conn, psycopg.connect(dsn, autocommit=True) as watcher:
        conn.execute("select memex.set_tenant(%s, false)", (str(tenant[0]),))  # type: ignore[index]
        conn.commit()
        conn.execute("set memex.embed_on_write = on")
        embedded_in_write(conn, "warm", "a first write loads the model in this backend")
        in_write = [embedded_in_write(conn, f"w/{i}", t) for i, t in enumerate(texts)]
        conn.execute("set memex.embed_on_write = off")
        worker = subprocess.Popen(
            [MEMEX, "worker", "--poll", "600"], env={**os.environ, "MEMEX_DSN": dsn},
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        try:
            assert worker.stderr is not None
            for line in worker.stderr:
                if "listening on memex_pending" in line:
                    break
            stored_after_commit(conn, watcher, "warm/worker", "the worker's first batch")
            latency = []
            for i, text in enumerate(texts):
                time.sleep(0.3)  # the worker is idle again, waiting
                latency.append(stored_after_commit(conn, watcher, f"n/{i}", text))
        finally:
            worker.terminate()
            worker.wait(30)

        print(f"one write at a time, {args.writes} writes, worker idle (local model):")
        report("committed -> stored by the worker", latency)
        report("embedded in the write (embed_on_write)", in_write)
        ratio = statistics.median(latency) / statistics.median(in_write)
        print(f"  ratio worker / in-write (p50): {ratio:.2f}x")

        with_notify: list[float] = []
        without: list[float] = []
        up_texts = [" ".join(corpus.document(5000 + i).split()[:60]) for i in range(args.upserts)]
        found = conn.execute(
            "select pg_get_functiondef('memex._chunks_written(uuid[])'::regprocedure)"
        ).fetchone()
        assert found is not None
        notifying = str(found[0])
        for r in range(args.rounds):
            for enabled in (r % 2 == 0, r % 2 == 1):
                conn.execute(notifying if enabled else QUIET)
                conn.commit()
                times = upserts(conn, f"u{r}{int(enabled)}", up_texts)
                (with_notify if enabled else without).extend(times)
        conn.execute(notifying)
        conn.commit()
        print(f"single-document upserts, each committed ({args.upserts} x {args.rounds} rounds):")
        report("with the NOTIFY", with_notify)
        report("without", without)
        ratio = statistics.median(with_notify) / statistics.median(without)
        print(f"  ratio with / without (p50): {ratio:.3f}x")


if __name__ == "__main__":
    main()
