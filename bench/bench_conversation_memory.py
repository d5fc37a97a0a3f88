"""What conversation memory costs (issue 25): ingest plus embedding time per 1,000 messages, and
hybrid search latency, as memex is against memex before it (one run, two scratch databases).

    .venv/bin/python bench/bench_conversation_memory.py [--dsn DSN]

Loads the LoCoMo development conversations (../shared/datasets/locomo-dev: 2,760 turns in 128
sessions) as `memex eval` does, session by session, then embeds them (`embed_pending`), in two
scratch databases: "before", where memex._message_contexts is a no-op (messages embedded alone)
and searches pass conversation_weight => 0 (no conversation signals); and "now", memex as it is.
Then runs every question (756) through rag_search over messages (k 25, hybrid) in each, and
prints the load and embedding times per 1,000 messages, the search latency's p50 and p95, and
the ratios now / before. Last, the cost of one appended turn in a conversation of 3,000: 100
appends, one message a call, with the contexts recomputed around what was written (memex as it
is) and for the whole conversation (as the first version of contexts did).
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
from memex.eval_conversations import MESSAGES_ONLY, read_corpus, upsert_sessions
from memex.install import install
from scratch import percentile, scratch_database

CORPUS = Path(__file__).resolve().parents[1].parent / "shared/datasets/locomo-dev/locomo-dev.json"
NO_CONTEXTS = """
create or replace function memex._message_contexts(conversation uuid, message uuid default null)
returns void
language sql volatile set search_path = pg_catalog, pg_temp as $$ select $$;
create or replace function memex._message_contexts_near(conversation uuid, seqs integer[])
returns void
language sql volatile set search_path = pg_catalog, pg_temp as $$ select $$
"""
# The whole conversation's contexts at each write: memex's own function copied under another
# name, and called with every seq of the conversation.
COPY_NEAR = """
select replace(pg_get_functiondef('memex._message_contexts_near(uuid, integer[])'::regprocedure),
               '_message_contexts_near', '_bench_contexts_all')
"""
WHOLE_CONVERSATION = """
create or replace function memex._message_contexts_near(conversation uuid, seqs integer[])
returns void
language sql volatile set search_path = pg_catalog, pg_temp
as $$
    select memex._bench_contexts_all(conversation, array(
        select m.seq from memex.messages as m
         where m.tenant_id = memex.current_tenant() and m.conversation_id = conversation))
$$
"""
APPEND = (
    """select memex.upsert_messages('long', '[{"role": "user", "content": "one more turn"}]')"""
)
SEARCH = ("select count(*) from memex.rag_search(%s, k => 25, filters => %s,"
          " conversation_weight => %s)")  # fmt: skip


def arm(dsn: str, before: bool, corpus: Any) -> dict[str, float]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        if before:
            conn.execute(NO_CONTEXTS)
        started = time.perf_counter()
        for tenant, sessions in corpus.sessions.items():
            conn.execute("select memex.create_tenant(%s)", (tenant,))
            upsert_sessions(conn, tenant, sessions)
        loaded = time.perf_counter()
        conn.execute("call memex.embed_pending()")
        embedded = time.perf_counter()
        latencies = []
        weight = 0.0 if before else 1.0
        for q in corpus.questions:
            conn.execute("select memex.set_tenant(%s, false)", (q.tenant,))
            t = time.perf_counter()
            conn.execute(SEARCH, (q.text, Jsonb(MESSAGES_ONLY), weight)).fetchone()
            latencies.append((time.perf_counter() - t) * 1000)
    per_k = 1000 / corpus.turns
    return {
        "load": (loaded - started) * per_k, "embed": (embedded - loaded) * per_k,
        "p50": statistics.median(latencies), "p95": percentile(latencies, 0.95),
    }  # fmt: skip


def appends(dsn: str) -> dict[str, float]:
    """Median milliseconds of one append to a 3,000-turn conversation, contexts recomputed
    near the write against for the whole conversation."""
    turns = [{"role": ("user", "assistant")[i % 2], "content": f"turn {i} of a long talk"}
             for i in range(3000)]  # fmt: skip
    found = {}
    with psycopg.connect(dsn, autocommit=True) as conn:
        for name in ("near", "whole"):
            if name == "whole":
                copy = conn.execute(COPY_NEAR).fetchone()
                assert copy is not None
                conn.execute(copy[0])
                conn.execute(WHOLE_CONVERSATION)
            conn.execute("select memex.create_tenant(%s)", (f"append-{name}",))
            conn.execute("select memex.set_tenant(%s, false)", (f"append-{name}",))
            conn.execute("select memex.upsert_conversation('long')")
            conn.execute("select memex.upsert_messages('long', %s)", (Jsonb(turns),))
            took = []
            for _ in range(100):
                t = time.perf_counter()
                conn.execute(APPEND)
                took.append((time.perf_counter() - t) * 1000)
            found[name] = statistics.median(took)
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dsn")
    args = parser.parse_args()
    corpus = read_corpus(CORPUS)
    results = {}
    for name in ("before", "now"):
        dsn = scratch_database(resolve_dsn(args.dsn), f"memex_bench_memory_{name}")
        install(dsn, say=lambda _m: None)
        results[name] = arm(dsn, name == "before", corpus)
    print(f"{corpus.turns} messages, {len(corpus.questions)} questions; per 1,000 messages:")
    print(f"{'':8s} {'load s':>8s} {'embed s':>8s} {'total s':>8s} {'p50 ms':>7s} {'p95 ms':>7s}")
    for name, r in results.items():
        print(f"{name:8s} {r['load']:8.2f} {r['embed']:8.2f} {r['load'] + r['embed']:8.2f}"
              f" {r['p50']:7.1f} {r['p95']:7.1f}")  # fmt: skip
    b, n = results["before"], results["now"]
    print(f"now / before: load + embed {(n['load'] + n['embed']) / (b['load'] + b['embed']):.2f}x,"
          f" search p50 {n['p50'] / b['p50']:.2f}x")  # fmt: skip
    append = appends(scratch_database(resolve_dsn(args.dsn), "memex_bench_memory_now", reuse=True))
    print(f"one append to a 3,000-turn conversation: {append['near']:.1f} ms (contexts near the"
          f" write) against {append['whole']:.1f} ms (whole conversation),"
          f" {append['whole'] / append['near']:.1f}x")  # fmt: skip
    with psycopg.connect(resolve_dsn(args.dsn), autocommit=True) as conn:
        for name in results:
            conn.execute(f"drop database if exists memex_bench_memory_{name} with (force)")


if __name__ == "__main__":
    main()
