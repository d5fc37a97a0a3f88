"""Embedding throughput and memory on real text: in the database vs the runtimes outside it.

    .venv/bin/python bench/bench_embedding.py [--rounds 3] [--short 2000] [--passages 400]
                                              [--batch-size 64] [--claim 64] [--dsn DSN]
                                              [--parts runtimes,pending] [--baseline COMMIT]

In one run, on this machine, on the same texts (NFCorpus from ../shared/datasets: first
sentences of abstracts, 8-40 words; and abstracts of 150-256 tokens):
  - plain sentence-transformers `encode` (a process of the server venv, torch on every core),
  - raw onnxruntime on memex's exported fp32 graph (same process; the runtime's own limit),
  - `memex.embed_batch` in one backend (same batch size),
  - `CALL memex.embed_pending` (claim, embed, store, HNSW insert, commit per batch), against
    embed_batch on the very chunk texts it stored, with the backend's peak and settled RSS.
Rounds alternate the runners; ratios are medians over rounds. A scratch database
`memex_bench` is created and dropped. With --baseline, the pending part also runs memex as of
COMMIT (its sql/ and memex_db, from a git worktree, into `memex_bench_base`) in the same
rounds, and prints embed_pending now / baseline.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from memex.dsn import resolve_dsn
from memex.install import install
from memex.paths import server_python
from scratch import drop_server_lib, install_commit, scratch_database

CORPUS = Path(__file__).resolve().parents[2] / "shared/datasets/nfcorpus/corpus.jsonl"


class Baseline:
    """bench/embedding_baseline.py in the server venv, kept open across rounds."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [str(server_python()), str(Path(__file__).with_name("embedding_baseline.py"))],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
            env={"HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"},
        )  # fmt: skip

    def ask(self, **request: Any) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps(request) + "\n")
        self.proc.stdin.flush()
        answer: dict[str, Any] = json.loads(self.proc.stdout.readline())
        return answer

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        self.proc.wait(timeout=60)


def embed_batch_rate(conn: psycopg.Connection[Any], texts: list[str]) -> float:
    started = time.perf_counter()
    conn.execute("select count(*) from memex.embed_batch(%s)", (texts,))
    return len(texts) / (time.perf_counter() - started)


def rss_mb(pid: int, field: str = "VmRSS") -> float:
    with open(f"/proc/{pid}/status", encoding="ascii") as handle:
        for line in handle:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {field} for {pid}")


def load_chunks(dsn: str, texts: list[str]) -> list[str]:
    """Each text as a document of tenant 'bench'; returns the chunk texts stored."""
    with psycopg.connect(dsn) as conn:
        conn.execute("select memex.create_tenant('bench')")
        conn.execute("select memex.set_tenant('bench')")
        with conn.cursor() as cur:
            cur.executemany("select memex.upsert_document(%s, %s)",
                            [(f"bench/{i}", t) for i, t in enumerate(texts)])  # fmt: skip
        rows = conn.execute("select content from memex.chunks").fetchall()
    return [str(r[0]) for r in rows]


def embed_pending_run(dsn: str, claim: int, chunks: int) -> dict[str, float]:
    """One CALL in a fresh backend (model loaded first): rate, peak RSS (sampled every 20 ms
    and the kernel's high-water mark) and RSS once the CALL returned."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("truncate memex.embeddings")
        row = conn.execute("select pg_backend_pid()").fetchone()
        assert row is not None
        pid = int(row[0])
        conn.execute("select memex.embed('warm up')")
        loaded = rss_mb(pid)
        done = threading.Event()
        peak = [loaded]

        def sample() -> None:
            while not done.wait(0.02):
                peak[0] = max(peak[0], rss_mb(pid))

        sampler = threading.Thread(target=sample)
        sampler.start()
        started = time.perf_counter()
        conn.execute(sql.SQL("call memex.embed_pending(batch_size => {})").format(claim))
        seconds = time.perf_counter() - started
        done.set()
        sampler.join()
        return {"rate": chunks / seconds, "loaded_mb": loaded,
                "peak_mb": max(peak[0], rss_mb(pid, "VmHWM")), "after_mb": rss_mb(pid)}  # fmt: skip


def median_ratio(a: list[float], b: list[float]) -> float:
    return statistics.median(x / y for x, y in zip(a, b, strict=True))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--short", type=int, default=2000)
    parser.add_argument("--passages", type=int, default=400)
    parser.add_argument("--batch-size", type=int, default=64, help="rows per inference batch")
    parser.add_argument(
        "--claim", type=int, default=64, help="embed_pending's batch_size: rows per transaction"
    )
    parser.add_argument("--dsn")
    parser.add_argument(
        "--parts", default="runtimes,pending",
        help="runtimes: embed_batch vs sentence-transformers and onnxruntime; "
        "pending: CALL embed_pending vs embed_batch, with RSS",
    )  # fmt: skip
    parser.add_argument("--baseline", help="a commit whose embed_pending to run beside this one")
    args = parser.parse_args()
    parts = set(args.parts.split(","))
    baseline = Baseline()
    sets = baseline.ask(op="texts", corpus=str(CORPUS), short=args.short, passages=args.passages)
    dsn = scratch_database(resolve_dsn(args.dsn), "memex_bench")
    install(dsn, say=lambda _m: None)
    batch = args.batch_size
    print(
        f"batch size {batch}, {args.rounds} rounds, medians; ratios are medians of per-round ratios"
    )
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("select set_config('memex.embed_batch_size', %s, false)", (str(batch),))
        conn.execute("select count(*) from memex.embed_batch(array['warm up'])")
        for name, texts in sets.items() if "runtimes" in parts else ():
            rates: dict[str, list[float]] = {"st": [], "ort": [], "db": []}
            for _ in range(args.rounds):
                rates["st"].append(
                    baseline.ask(op="rate", runner="st", texts=texts, batch=batch)["rate"]
                )
                rates["ort"].append(
                    baseline.ask(op="rate", runner="ort", texts=texts, batch=batch)["rate"]
                )
                rates["db"].append(embed_batch_rate(conn, texts))
            print(f"\n{name}: {len(texts)} texts")
            for key, label in (("st", "plain sentence-transformers encode"),
                               ("ort", "raw onnxruntime, same exported graph"),
                               ("db", "memex.embed_batch in one backend")):  # fmt: skip
                print(f"  {label:38s} {statistics.median(rates[key]):7.1f} texts/s  "
                      f"{[round(r, 1) for r in rates[key]]}")  # fmt: skip
            for key, label, goal in (("st", "sentence-transformers", 1.1),
                                     ("ort", "raw onnxruntime", 0.95)):  # fmt: skip
                ratio = median_ratio(rates["db"], rates[key])
                print(f"  embed_batch / {label:22s} {ratio:.2f}x   goal >= {goal}")
    baseline.close()
    sides = {"now": dsn}
    baseline_version = None
    if args.baseline:
        sides["baseline"] = scratch_database(resolve_dsn(args.dsn), "memex_bench_base")
        baseline_version = install_commit(sides["baseline"], args.baseline)
    for name in ("short", "passages") if "pending" in parts else ():
        for side_dsn in sides.values():
            with psycopg.connect(side_dsn, autocommit=True) as conn:
                if conn.execute("select 1 from memex.tenants where name = 'bench'").fetchone():
                    conn.execute("call memex.delete_tenant('bench', confirm => 'bench')")
            chunks = load_chunks(side_dsn, sets[name])
        pending: dict[str, list[dict[str, float]]] = {side: [] for side in sides}
        direct: list[float] = []
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("select set_config('memex.embed_batch_size', %s, false)", (str(batch),))
            conn.execute("select count(*) from memex.embed_batch(array['warm up'])")
            for r in range(args.rounds):
                for side in list(sides) if r % 2 == 0 else list(reversed(sides)):
                    pending[side].append(embed_pending_run(sides[side], args.claim, len(chunks)))
                direct.append(embed_batch_rate(conn, chunks))
        rates = {side: [p["rate"] for p in runs] for side, runs in pending.items()}
        print(
            f"\nCALL memex.embed_pending, {name}: {len(chunks)} chunks, "
            f"batch_size {args.claim} (inference batches of {batch})"
        )
        labelled = [(f"embed_pending {side}" if args.baseline else "embed_pending", values)
                    for side, values in rates.items()] + [("embed_batch", direct)]  # fmt: skip
        for label, values in labelled:
            print(
                f"  {label:22s} {statistics.median(values):7.1f}/s {[round(r, 1) for r in values]}"
            )
        print(f"  embed_pending / embed_batch: {median_ratio(rates['now'], direct):.2f}x   "
              f"goal >= 0.85")  # fmt: skip
        if args.baseline:
            now, base = rates["now"], rates["baseline"]
            per_round = [round(a / b, 3) for a, b in zip(now, base, strict=True)]
            print(f"  embed_pending now / baseline {args.baseline}: "
                  f"{median_ratio(now, base):.3f}x {per_round}")  # fmt: skip
        loaded = statistics.median(p["loaded_mb"] for p in pending["now"])
        print(f"  backend RSS: model loaded {loaded:.0f} MB, "
              f"peak {max(p['peak_mb'] for p in pending['now']):.0f} MB (goal <= 400), after "
              f"{max(p['after_mb'] for p in pending['now']):.0f} MB (goal <= 250)")  # fmt: skip
    with psycopg.connect(resolve_dsn(args.dsn), autocommit=True) as conn:
        conn.execute("drop database if exists memex_bench with (force)")
        if baseline_version is not None:
            conn.execute("drop database if exists memex_bench_base with (force)")
            drop_server_lib(baseline_version)


if __name__ == "__main__":
    main()
