"""The write path of this checkout against an earlier commit's, same cluster, same run.

    .venv/bin/python bench/bench_write_path.py --baseline COMMIT [--docs 300] [--rounds 3]
                                               [--dsn DSN]

Each side in a scratch database of its own (memex_write_now, memex_write_base), the baseline
installed from a git worktree of COMMIT (its sql/, migrations/ and memex_db: bench/scratch.py
install_commit). Per round, on each side in turn (the order alternates): --docs synthetic documents
upserted one call each, every document updated with new text, then every one deleted
(`delete_document`), each call its own transaction. Prints p50/p95 per operation and side and
the ratio now / baseline of the p50s. Made to price moving the text index's upkeep, the
queue's NOTIFY and embed-on-write from triggers into the write functions (docs/scale.md).
"""

from __future__ import annotations

import argparse
import statistics
import time

import psycopg
from psycopg import sql

import synthetic
from memex.dsn import resolve_dsn
from scratch import (
    REPO,
    drop_server_lib,
    install_commit,
    install_from,
    percentile,
    scratch_database,
)

OPERATIONS = ("insert", "update", "delete")


def timed(conn: psycopg.Connection[tuple[object, ...]], statement: str, args: tuple[object, ...]
          ) -> float:  # fmt: skip
    started = time.perf_counter()
    conn.execute(statement, args)
    conn.commit()
    return (time.perf_counter() - started) * 1000


def one_round(dsn: str, corpus: synthetic.Corpus, docs: int, r: int) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {op: [] for op in OPERATIONS}
    with psycopg.connect(dsn) as conn:
        conn.execute("select memex.set_tenant('bench', false)")
        conn.commit()
        for i in range(docs):
            times["insert"].append(timed(conn, "select memex.upsert_document(%s, %s)",
                                         (f"d{i}", corpus.document(r * docs + i))))  # fmt: skip
        for i in range(docs):
            text = corpus.document(10_000 + r * docs + i)
            times["update"].append(timed(conn, "select memex.upsert_document(%s, %s)",
                                         (f"d{i}", text)))  # fmt: skip
        for i in range(docs):
            times["delete"].append(timed(conn, "select memex.delete_document(%s)", (f"d{i}",)))
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--baseline", required=True, help="the commit to compare with")
    parser.add_argument("--docs", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--dsn")
    args = parser.parse_args()
    base = resolve_dsn(args.dsn)
    sides = {"now": scratch_database(base, "memex_write_now"),
             "baseline": scratch_database(base, "memex_write_base")}  # fmt: skip
    install_from(sides["now"], REPO)
    baseline_version = install_commit(sides["baseline"], args.baseline)
    for dsn in sides.values():
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("select memex.create_tenant('bench')")
    corpus = synthetic.Corpus()
    results: dict[str, dict[str, list[float]]] = {s: {op: [] for op in OPERATIONS} for s in sides}
    for r in range(args.rounds):
        order = list(sides) if r % 2 == 0 else list(reversed(sides))
        for side in order:
            for op, values in one_round(sides[side], corpus, args.docs, r).items():
                results[side][op].extend(values)
    print(f"{args.docs} documents x {args.rounds} rounds, one call per transaction; "
          f"baseline {args.baseline}:")  # fmt: skip
    for op in OPERATIONS:
        for side in sides:
            values = results[side][op]
            print(f"  {op:7} {side:9} p50 {statistics.median(values):7.2f} ms"
                  f"   p95 {percentile(values, 0.95):7.2f} ms")  # fmt: skip
        ratio = statistics.median(results["now"][op]) / statistics.median(results["baseline"][op])
        print(f"  {op:7} ratio now / baseline (p50): {ratio:.3f}x")
    with psycopg.connect(base, autocommit=True) as conn:
        for name in ("memex_write_now", "memex_write_base"):
            conn.execute(sql.SQL("drop database {} with (force)").format(sql.Identifier(name)))
    drop_server_lib(baseline_version)


if __name__ == "__main__":
    main()
