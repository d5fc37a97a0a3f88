"""What embedding messages in context costs: upsert time and tokens embedded per message.

    .venv/bin/python bench/bench_message_context.py [--rounds 3] [--dsn DSN]

Loads the LoCoMo development conversations (../shared/datasets/locomo-dev: 2,760 turns in 128
sessions) as `memex eval` does, session by session, into a scratch database, timing the
upserts only (no embedding), in two tenants per round: one as memex is, and one with
memex._message_contexts and memex._message_contexts_near made no-ops in that database (the
messages alone, as before contexts existed). Then counts, with the space's tokenizer, the
tokens embedded per message with and without their context. Prints both and their ratios.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path
from typing import Any

import psycopg

from memex.dsn import resolve_dsn
from memex.eval_conversations import read_corpus, upsert_sessions
from memex.install import install
from scratch import scratch_database

CORPUS = Path(__file__).resolve().parents[1].parent / "shared/datasets/locomo-dev/locomo-dev.json"
NO_CONTEXTS = """
create or replace function memex._message_contexts(conversation uuid, message uuid default null)
returns void
language sql volatile set search_path = pg_catalog, pg_temp as $$ select $$;
create or replace function memex._message_contexts_near(conversation uuid, seqs integer[])
returns void
language sql volatile set search_path = pg_catalog, pg_temp as $$ select $$
"""


def load(conn: psycopg.Connection[Any], tenant: str, sessions: list[dict[str, Any]]) -> float:
    conn.execute("select memex.create_tenant(%s)", (tenant,))
    started = time.perf_counter()
    upsert_sessions(conn, tenant, sessions)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--dsn")
    args = parser.parse_args()
    corpus = read_corpus(CORPUS)
    sessions = [s for group in corpus.sessions.values() for s in group]
    with_dsn = scratch_database(resolve_dsn(args.dsn), "memex_bench_context")
    without_dsn = scratch_database(resolve_dsn(args.dsn), "memex_bench_no_context")
    for dsn in (with_dsn, without_dsn):
        install(dsn, say=lambda _m: None)
    with psycopg.connect(without_dsn, autocommit=True) as conn:
        conn.execute(NO_CONTEXTS)
    timings: dict[str, list[float]] = {"with": [], "without": []}
    with (psycopg.connect(with_dsn, autocommit=True) as with_conn,
          psycopg.connect(without_dsn, autocommit=True) as without_conn):  # fmt: skip
        for round_ in range(args.rounds):
            timings["without"].append(load(without_conn, f"r{round_}", sessions))
            timings["with"].append(load(with_conn, f"r{round_}", sessions))
        with_conn.execute("select memex.set_tenant('r0', false)")
        row = with_conn.execute(
            "select avg(memex.count_tokens(k.content)), "
            "       avg(memex.count_tokens(memex._embedding_text(k.content, k.context))),"
            "       count(*) from memex.chunks as k"
            " where k.tenant_id = memex.current_tenant() and k.source_kind = 'message'"
        ).fetchone()
    assert row is not None
    alone, embedded, chunks = float(row[0]), float(row[1]), int(row[2])
    without, with_ = statistics.median(timings["without"]), statistics.median(timings["with"])
    print(
        f"{len(sessions)} sessions, {corpus.turns} turns, {chunks} message chunks; "
        f"{args.rounds} rounds, medians"
    )
    print(f"upserts, messages alone      {without:7.2f} s  {timings['without']}")
    print(f"upserts, with contexts       {with_:7.2f} s  {timings['with']}")
    print(f"upsert time with / without   {with_ / without:.2f}x")
    print(
        f"tokens embedded per message  {alone:.1f} alone, {embedded:.1f} with its context: "
        f"{embedded / alone:.2f}x"
    )
    with psycopg.connect(resolve_dsn(args.dsn), autocommit=True) as conn:
        for name in ("memex_bench_context", "memex_bench_no_context"):
            conn.execute(f"drop database if exists {name} with (force)")


if __name__ == "__main__":
    main()
