"""Ingest + embed end to end: memex against the stack a user would assemble instead.

    .venv/bin/python bench/bench_ingest.py [--docs 1000] [--rounds 1] [--dsn DSN]

On NFCorpus abstracts (../shared/datasets, title + text), same cluster, same run:
  - memex: `memex.upsert_document` of every abstract (chunked in the database: 200-token
    chunks, 32 overlapping) in one transaction, then `CALL memex.embed_pending()` (the default
    runtime and settings), in a scratch database `memex_ingest`;
  - LangChain: `PGVector.add_texts` with `HuggingFaceEmbeddings` (sentence-transformers in the
    client process, batch 64) on the same bundled model, in a scratch database `memex_lc`, run
    by bench/ingest_langchain.py in its own venv (`make bench` builds it); sentence-transformers
    cuts each abstract at the model's 256 tokens.
The two embed different token counts (memex's overlapping chunks cover whole abstracts), so the
comparison is per token embedded (special tokens included on both sides): the ratio is memex's
seconds per token over LangChain's (goal <= 1.0). Rounds alternate; the ratio is the median.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import psycopg
from psycopg.conninfo import conninfo_to_dict

from memex.dsn import resolve_dsn
from memex.install import install
from scratch import scratch_database

CORPUS = Path(__file__).resolve().parents[2] / "shared/datasets/nfcorpus/corpus.jsonl"
LANGCHAIN_PY = Path("/var/lib/memex/aux-venv/langchain/bin/python")


def abstracts(count: int) -> list[tuple[str, str]]:
    docs = []
    with CORPUS.open(encoding="utf-8") as handle:
        for line in handle:
            row = json.loads(line)
            if row.get("text"):
                docs.append((row["_id"], f"{row.get('title', '')}\n\n{row['text']}".strip()))
            if len(docs) == count:
                break
    return docs


def run_memex(dsn: str, docs: list[tuple[str, str]]) -> dict[str, float]:
    target = scratch_database(dsn, "memex_ingest")
    install(target, say=lambda _m: None)
    with psycopg.connect(target, autocommit=True) as conn:
        conn.execute("select memex.create_tenant('bench')")
        conn.execute("select memex.embed('warm up')")  # both sides start with the model loaded
        started = time.perf_counter()
        with conn.transaction(), conn.cursor() as cur:
            cur.execute("select memex.set_tenant('bench')")
            cur.executemany("select memex.upsert_document(%s, %s)", docs)
        conn.execute("call memex.embed_pending()")
        seconds = time.perf_counter() - started
        conn.execute("select memex.set_tenant('bench', false)")
        row = conn.execute(
            "select count(*), sum(memex.count_tokens(content) + 2) from memex.chunks"
        ).fetchone()
    assert row is not None
    return {"seconds": seconds, "chunks": float(row[0]), "tokens": float(row[1])}


def run_langchain(dsn: str, docs: list[tuple[str, str]]) -> dict[str, float]:
    if not LANGCHAIN_PY.exists():
        raise SystemExit(f"{LANGCHAIN_PY} is missing: `make bench` builds the LangChain venv")
    target = scratch_database(dsn, "memex_lc")
    params = {k: str(v) for k, v in conninfo_to_dict(target).items() if v is not None}
    url = "postgresql+psycopg:///?" + urlencode(params)
    result = subprocess.run(
        [str(LANGCHAIN_PY), str(Path(__file__).with_name("ingest_langchain.py")), url],
        input=json.dumps([text for _id, text in docs]), capture_output=True, text=True,
        check=True,
    )  # fmt: skip
    answer: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return {k: float(v) for k, v in answer.items()}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--docs", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--dsn")
    args = parser.parse_args()
    dsn = resolve_dsn(args.dsn)
    docs = abstracts(args.docs)
    ratios = []
    for round_no in range(args.rounds):
        runs = {}
        for name, runner in (("memex", run_memex), ("langchain", run_langchain)):
            runs[name] = runner(dsn, docs)
            r = runs[name]
            print(f"round {round_no + 1} {name:9s}: {r['seconds']:7.1f} s, {r['chunks']:6.0f} "
                  f"chunks, {r['tokens']:9.0f} tokens, {r['tokens'] / r['seconds']:7.0f} tokens/s",
                  flush=True)  # fmt: skip
        per_token = {k: r["seconds"] / r["tokens"] for k, r in runs.items()}
        ratios.append(per_token["memex"] / per_token["langchain"])
        print(f"round {round_no + 1}: memex time per token / LangChain's: {ratios[-1]:.2f}x")
    print(f"\n{len(docs)} NFCorpus abstracts; memex seconds per token / LangChain PGVector's: "
          f"{statistics.median(ratios):.2f}x (goal <= 1.0)")  # fmt: skip
    with psycopg.connect(dsn, autocommit=True) as conn:
        for name in ("memex_ingest", "memex_lc"):
            conn.execute(f"drop database if exists {name} with (force)")


if __name__ == "__main__":
    main()
