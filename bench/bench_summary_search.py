"""Latency of rag_search over conversation memory with session summaries, this checkout against
a baseline commit in the same run.

LoCoMo's development conversations (`../shared/datasets/locomo-dev`) are loaded with their
session summaries into two scratch databases beside the DSN's: memex_bench_summaries_new (this
checkout) and memex_bench_summaries_old (memex as of --baseline, with its own memex_db). Then
each question goes through `rag_search(question, k => 25, filters => messages only)` (hybrid),
rounds alternating which database goes first. Prints p50 / p95 of each and the ratio.

    .venv/bin/python bench/bench_summary_search.py --baseline 3f0455f
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from memex.dsn import resolve_dsn
from memex.eval_conversations import MESSAGES_ONLY, _load, is_locomo, read_corpus
from scratch import REPO, drop_server_lib, install_commit, install_from, scratch_database

LOCOMO = Path("../shared/datasets/locomo-dev")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", required=True, help="the commit to measure against")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--dataset", type=Path, default=LOCOMO)
    parser.add_argument("--dsn")
    args = parser.parse_args()
    found = is_locomo(args.dataset)
    if found is None:
        raise SystemExit(f"no LoCoMo-format file in {args.dataset}")
    corpus = read_corpus(found)
    base = resolve_dsn(args.dsn)
    dsns = {
        "new": scratch_database(base, "memex_bench_summaries_new"),
        "old": scratch_database(base, "memex_bench_summaries_old"),
    }
    install_from(dsns["new"], REPO)
    version = install_commit(dsns["old"], args.baseline)
    try:
        for dsn in dsns.values():
            with psycopg.connect(dsn, autocommit=True) as conn:
                _load(conn, corpus, True)
        times: dict[str, list[float]] = {"new": [], "old": []}
        conns: dict[str, psycopg.Connection[Any]] = {
            side: psycopg.connect(dsn, autocommit=True) for side, dsn in dsns.items()
        }
        for r in range(args.rounds):
            for side in ("new", "old") if r % 2 == 0 else ("old", "new"):
                conn = conns[side]
                for q in corpus.questions:
                    with conn.transaction():
                        conn.execute("select memex.set_tenant(%s)", (q.tenant,))
                        started = time.perf_counter()
                        conn.execute(
                            "select * from memex.rag_search(%s, k => 25, filters => %s)",
                            (q.text, Jsonb(MESSAGES_ONLY)),
                        ).fetchall()
                        times[side].append((time.perf_counter() - started) * 1000)
        for conn in conns.values():
            conn.close()
    finally:
        drop_server_lib(version)
    for side, values in times.items():
        ordered = sorted(values)
        p50, p95 = statistics.median(ordered), ordered[int(0.95 * len(ordered))]
        print(f"{side}: p50 {p50:.2f} ms, p95 {p95:.2f} ms, n {len(ordered)}")
    ratio = statistics.median(times["new"]) / statistics.median(times["old"])
    print(f"p50 this checkout / {args.baseline}: {ratio:.3f}x")


if __name__ == "__main__":
    main()
