"""What an agent waits for through `memex mcp` (stdio), against the client in this process.

    .venv/bin/python bench/bench_mcp.py [--documents 2000] [--queries 100] [--rounds 2]
                                        [--notes 50] [--dsn DSN]

A scratch database (memex_bench_mcp) with one tenant of synthetic topical documents
(bench/synthetic.py), embedded by the bundled model. Two `memex mcp --tenant bench` processes
are driven by the MCP SDK's own client over stdio:
  search    the `search` tool (hybrid, k 8) against AsyncClient.search in this process, the
            same queries interleaved: what the protocol (JSON-RPC over a pipe, validation,
            JSON results) adds to a search
  remember  `remember` of a ~600-character note by the default server (embedded in the write,
            --embed-max-chars 16000) against one that leaves every write to the worker
            (--embed-max-chars 0): what embedding at once costs the agent's call
Prints p50/p95 per way and the ratios.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import psycopg
from mcp.client.session import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client

import synthetic
from memex import AsyncClient
from memex.dsn import resolve_dsn
from memex.install import install
from scratch import percentile, scratch_database

TENANT = "bench"
MEMEX = str(Path(sys.executable).parent / "memex")


@asynccontextmanager
async def server(dsn: str, *options: str) -> AsyncIterator[ClientSession]:
    arguments = ["mcp", "--tenant", TENANT, "--dsn", dsn, *options]
    async with (
        stdio_client(StdioServerParameters(command=MEMEX, args=arguments)) as (read, write),
        ClientSession(read, write) as session,
    ):
        await session.initialize()
        yield session


def report(timings: dict[str, list[float]]) -> None:
    for name, values in timings.items():
        print(f"  {name:24} p50 {statistics.median(values):7.2f} ms   "
              f"p95 {percentile(values, 0.95):7.2f} ms")  # fmt: skip


async def run(dsn: str, queries: list[str], rounds: int, notes: list[str]) -> None:
    async with (
        server(dsn) as agent,
        server(dsn, "--embed-max-chars", "0") as deferred,
        AsyncClient(dsn, tenant=TENANT, max_size=1) as client,
    ):
        for query in queries[:10]:  # warm the backends' models and plans
            await agent.call_tool("search", {"query": query})
            await client.search(query)
        search: dict[str, list[float]] = {"AsyncClient.search": [], "MCP search tool": []}
        for round_ in range(rounds):
            for query in queries:
                ways = [
                    ("AsyncClient.search", client.search(query)),
                    ("MCP search tool", agent.call_tool("search", {"query": query})),
                ]
                for name, call in ways if round_ % 2 == 0 else reversed(ways):
                    started = time.perf_counter()
                    result = await call
                    search[name].append((time.perf_counter() - started) * 1000)
                    if getattr(result, "is_error", False):
                        raise SystemExit(f"search failed: {result}")
        await agent.call_tool("remember", {"text": "warm the model of this backend"})
        remember: dict[str, list[float]] = {"remember, embedded": [], "remember, queued": []}
        for i, note in enumerate(notes):
            ways = [("remember, embedded", agent), ("remember, queued", deferred)]
            for name, session in ways if i % 2 == 0 else reversed(ways):
                started = time.perf_counter()
                result = await session.call_tool("remember", {"text": f"{name}: {note}"})
                remember[name].append((time.perf_counter() - started) * 1000)
                if result.is_error:
                    raise SystemExit(f"remember failed: {result}")
    print(f"{len(queries)} queries x {rounds} rounds, hybrid k=8, one tenant; "
          f"{len(notes)} notes of ~600 characters")  # fmt: skip
    report(search)
    report(remember)
    mcp, direct = (statistics.median(search[n]) for n in ("MCP search tool", "AsyncClient.search"))
    print(f"search through MCP: {mcp - direct:+.2f} ms at p50 (ratio {mcp / direct:.2f})")
    now, later = (statistics.median(remember[n]) for n in remember)
    print(f"remember embedded at once: {now - later:+.2f} ms at p50 (ratio {now / later:.2f})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--documents", type=int, default=2000)
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--notes", type=int, default=50)
    parser.add_argument("--dsn")
    args = parser.parse_args()
    dsn = scratch_database(resolve_dsn(args.dsn), "memex_bench_mcp")
    install(dsn, say=lambda _m: None)
    corpus = synthetic.Corpus()
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("select memex.create_tenant(%s)", (TENANT,))
        synthetic.load(conn, TENANT, 0, args.documents, corpus, "doc")
        conn.execute("call memex.embed_pending()")
    queries = [corpus.query(i) for i in range(args.queries)]
    notes = [" ".join(corpus.document(10_000 + i).split()[:90]) for i in range(args.notes)]
    anyio.run(run, dsn, queries, args.rounds, notes)


if __name__ == "__main__":
    main()
