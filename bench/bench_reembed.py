"""CALL memex.reembed: throughput against a raw encode of the same texts, the switch duration,
and the longest wait a concurrent writer sees.

    .venv/bin/python bench/bench_reembed.py [--chunks 5000] [--dsn DSN]

One run, one scratch database, the real model (all-MiniLM-L6-v2 384 -> 256 dims):
  1. raw encode: memex.embed_batch over every chunk text in batches of 128, in one backend
     (the same ONNX encoder reembed uses, nothing stored): the baseline rows/s;
  2. CALL memex.reembed(..., 256) alone: rows/s of its embedding pass and end to end, against
     (1); the switch transaction's duration (memex.reembed_progress.activation_ms);
  3. the same again (384 -> 128) while a writer upserts documents with memex.embed_on_write =
     on (it inserts vectors into the active space): its write latency before and during the run,
     with the index built in the procedure, then (384 -> 192) with --concurrent-index.
"""

from __future__ import annotations

import argparse
import statistics
import threading
import time

import psycopg

from memex.dsn import resolve_dsn
from memex.install import install
from memex.reembed import Target, reembed
from scratch import scratch_database
from synthetic import Corpus  # bench/ is on sys.path: it is the script's directory
from synthetic import load as load_documents

Conn = psycopg.Connection[tuple[object, ...]]


def load(conn: Conn, chunks: int, corpus: Corpus) -> str:
    tenant = str(conn.execute("select memex.create_tenant('bench')").fetchone()[0])  # type: ignore[index]
    load_documents(conn, "bench", 0, chunks, corpus, "doc")
    return tenant


def raw_encode_rate(conn: Conn, tenant: str) -> float:
    conn.execute("select memex.set_tenant(%s, false)", (tenant,))
    texts = [r[0] for r in conn.execute("select content from memex.chunks order by id")]
    conn.execute("select memex.embed_batch(array['warm up'])")  # model load: not timed
    started = time.perf_counter()
    for lo in range(0, len(texts), 128):
        conn.execute(
            "select count(*) from memex.embed_batch(%s)", (texts[lo : lo + 128],)
        ).fetchone()
    conn.execute("select set_config('memex.tenant_id', '', false)")
    return len(texts) / (time.perf_counter() - started)


class Writer(threading.Thread):
    """Upserts one new document every 20 ms, embedded on write, and records each latency."""

    def __init__(self, dsn: str, tenant: str, prefix: str):
        super().__init__(daemon=True)
        self.dsn, self.tenant, self.prefix = dsn, tenant, prefix
        self.latencies: list[tuple[float, float]] = []  # (start, seconds)
        self.stop = threading.Event()
        self.ready = threading.Event()
        self.pid = 0

    def run(self) -> None:
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            self.pid = conn.info.backend_pid
            conn.execute("set role memex_app")
            conn.execute("set memex.embed_on_write = on")
            conn.execute("select memex.set_tenant(%s, false)", (self.tenant,))
            conn.execute("select memex.embed('warm up')")  # model load: not a write
            self.ready.set()
            i = 0
            while not self.stop.is_set():
                started = time.perf_counter()
                uri, text = f"{self.prefix}/{i}", f"note {i} written while re-embedding"
                conn.execute("select memex.upsert_document(%s, %s)", (uri, text))
                self.latencies.append((started, time.perf_counter() - started))
                i += 1
                time.sleep(0.02)

    def between(self, start: float, end: float) -> list[float]:
        return [s for t, s in self.latencies if start <= t <= end]


class LockWatch(threading.Thread):
    """Samples the writer's wait event every 5 ms: the longest stretch spent waiting on a
    heavyweight lock (pg_stat_activity.wait_event_type = 'Lock')."""

    def __init__(self, dsn: str, pid: int):
        super().__init__(daemon=True)
        self.dsn, self.pid = dsn, pid
        self.longest = 0.0
        self.stop = threading.Event()

    def run(self) -> None:
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            since: float | None = None
            while not self.stop.is_set():
                row = conn.execute(
                    "select wait_event_type from pg_stat_activity where pid = %s", (self.pid,)
                ).fetchone()
                now = time.perf_counter()
                if row and row[0] == "Lock":
                    since = now if since is None else since
                    self.longest = max(self.longest, now - since)
                else:
                    since = None
                time.sleep(0.005)


def timed_reembed(dsn: str, dims: int, concurrent: bool) -> tuple[float, float, float]:
    """(seconds end to end, main-pass rate, switch ms) of one reembed through the CLI code."""
    started = time.perf_counter()
    reembed(dsn, Target("all-MiniLM-L6-v2", dims, None, 128), activate=True, dry_run=False,
            concurrent_index=concurrent)  # fmt: skip
    took = time.perf_counter() - started
    with psycopg.connect(dsn) as conn:
        row = conn.execute(
            "select rate, activation_ms from memex.reembed_progress where space = %s",
            (f"all-MiniLM-L6-v2@{dims}",),
        ).fetchone()
    assert row is not None
    return took, float(row[0]), float(row[1])  # type: ignore[arg-type]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--chunks", type=int, default=5000)
    parser.add_argument("--dsn")
    args = parser.parse_args()
    dsn = scratch_database(resolve_dsn(args.dsn), "memex_bench_reembed")
    install(dsn, say=lambda _m: None)
    with psycopg.connect(dsn, autocommit=True) as conn:
        tenant = load(conn, args.chunks, Corpus())
        conn.execute("call memex.embed_pending(batch_size => 128)")
        chunks = conn.execute("select count(*) from memex.chunks").fetchone()[0]  # type: ignore[index]
        raw = raw_encode_rate(conn, tenant)
    print(f"{chunks} chunks (synthetic topical corpus), all-MiniLM-L6-v2, batch size 128")
    print(f"raw encode (memex.embed_batch, nothing stored): {raw:7.1f} rows/s")

    took, rate, switch_ms = timed_reembed(dsn, 256, concurrent=False)
    print(f"reembed 384 -> 256, embedding pass:         {rate:7.1f} rows/s  "
          f"{rate / raw:.2f}x raw (goal >= 0.85)")  # fmt: skip
    print(f"reembed end to end (+ catch-up, index):     {chunks / took:7.1f} rows/s  "
          f"{chunks / took / raw:.2f}x raw, {took:.1f} s")  # fmt: skip
    print(f"switch transaction:                         {switch_ms:7.2f} ms (goal < 100 ms)")

    for dims, concurrent in ((128, False), (192, True)):
        writer = Writer(dsn, tenant, f"live-{dims}")
        writer.start()
        writer.ready.wait(60)
        watch = LockWatch(dsn, writer.pid)
        watch.start()
        time.sleep(3)
        started = time.perf_counter()
        took, rate, switch_ms = timed_reembed(dsn, dims, concurrent=concurrent)
        ended = time.perf_counter()
        time.sleep(1)
        writer.stop.set()
        watch.stop.set()
        writer.join()
        watch.join()
        before = writer.between(0, started)
        during = sorted(writer.between(started, ended))
        how = (
            "index built CONCURRENTLY by the CLI" if concurrent else "index built in the procedure"
        )
        print(f"with a writer (embed on write), 384 -> {dims}, {how}:")
        print(f"  write latency before: p50 {statistics.median(before) * 1000:6.1f} ms, "
              f"max {max(before) * 1000:6.1f} ms ({len(before)} writes)")  # fmt: skip
        print(f"  write latency during: p50 {statistics.median(during) * 1000:6.1f} ms, "
              f"p99 {during[int(len(during) * 0.99)] * 1000:6.1f} ms, "
              f"max {during[-1] * 1000:6.1f} ms ({len(during)} writes)")  # fmt: skip
        print(f"  longest lock wait of the writer: {watch.longest * 1000:.0f} ms")
        print(
            f"  reembed {took:.1f} s, embedding pass {rate:.1f} rows/s, switch {switch_ms:.2f} ms"
        )
    with psycopg.connect(resolve_dsn(args.dsn), autocommit=True) as conn:
        conn.execute("drop database if exists memex_bench_reembed with (force)")


if __name__ == "__main__":
    main()
