"""The write path of this checkout against an earlier commit's, same cluster, same run.

    .venv/bin/python bench/bench_write_path.py --baseline COMMIT [--docs 300] [--rounds 3]
                                               [--dsn DSN]

Each side in a scratch database of its own (memex_write_now, memex_write_base), the baseline
installed from a git worktree of COMMIT (its sql/ and migrations/; the server lib is this
machine's). Per round, on each side in turn (the order alternates): --docs synthetic documents
upserted one call each, every document updated with new text, then every one deleted
(`delete_document`), each call its own transaction. Prints p50/p95 per operation and side and
the ratio now / baseline of the p50s. Made to price moving the text index's upkeep, the
queue's NOTIFY and embed-on-write from triggers into the write functions (docs/scale.md).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psycopg

import synthetic
from memex.dsn import resolve_dsn
from scratch import percentile, scratch_database

REPO = Path(__file__).resolve().parent.parent
OPERATIONS = ("insert", "update", "delete")


def install(dsn: str, installer_dir: Path) -> None:
    """memex installed by the installer (and sql/) found under installer_dir."""
    code = "import sys; from memex.cli import main; sys.exit(main())"
    subprocess.run([sys.executable, "-c", code, "install", "--dsn", dsn], check=True,
                   capture_output=True, cwd=installer_dir.parent,
                   env={"PYTHONPATH": str(installer_dir), "PATH": "/usr/bin:/bin"})  # fmt: skip


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
    with tempfile.TemporaryDirectory(prefix="memex-baseline-") as tmp:
        tree = Path(tmp) / "tree"
        subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", str(tree),
                        args.baseline], check=True, capture_output=True)  # fmt: skip
        try:
            install(sides["now"], REPO / "installer")
            install(sides["baseline"], tree / "installer")
        finally:
            subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(tree)],
                           check=True, capture_output=True)  # fmt: skip
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


if __name__ == "__main__":
    main()
