"""`memex demo`: load the bundled sample corpus, embed it in the database, run a few searches.

Vectors are computed by memex.embed inside PostgreSQL; the nearest neighbours come from a
pgvector `<=>` query. The demo writes only to its own schema, memex_demo.
"""

from __future__ import annotations

import json
import sys
import time

from tqdm import tqdm

from memex.dsn import connect
from memex.paths import samples_dir

SETUP_SQL = """
create schema if not exists memex_demo;
create table if not exists memex_demo.passages (
    uri text primary key,
    title text not null,
    body text not null,
    embedding vector(384) not null
);
"""


def load_corpus(conn: object) -> int:
    rows = [json.loads(line) for line in (samples_dir() / "corpus.jsonl").read_text().splitlines()]
    for row in tqdm(rows, desc="embedding sample corpus", unit="doc", file=sys.stderr):
        conn.execute(  # type: ignore[attr-defined]
            """
            insert into memex_demo.passages (uri, title, body, embedding)
            values (%(uri)s, %(title)s, %(text)s, memex.embed(%(text)s))
            on conflict (uri) do update
               set title = excluded.title, body = excluded.body, embedding = excluded.embedding
             where memex_demo.passages.body is distinct from excluded.body
            """,
            row,
        )
    return len(rows)


def demo(dsn: str, k: int = 3) -> int:
    with connect(dsn) as conn:
        conn.execute("set search_path = public, pg_catalog")
        conn.execute(SETUP_SQL)
        started = time.perf_counter()
        count = load_corpus(conn)
        elapsed = time.perf_counter() - started
        print(f"{count} passages embedded in the database in {elapsed:.1f} s\n")
        queries = (samples_dir() / "queries.txt").read_text().splitlines()
        for query in queries:
            rows = conn.execute(
                """
                select title, uri, 1 - (embedding <=> memex.embed(%s)) as similarity
                  from memex_demo.passages
                 order by embedding <=> memex.embed(%s)
                 limit %s
                """,
                (query, query, k),
            ).fetchall()
            print(f"query: {query}")
            for rank, (title, uri, similarity) in enumerate(rows, 1):
                print(f"  {rank}. {similarity:.3f}  {title}  ({uri})")
            print()
    return 0
