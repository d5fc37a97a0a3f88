"""`memex demo`: the bundled sample corpus in a tenant of its own, embedded in the database, and
a few searches through memex.rag_search, each leg's rank shown beside the fused result.

Everything goes through the public API (create_tenant, upsert_document, embed_pending,
rag_search); the demo writes only to its tenant, `demo`, and a second run changes nothing.
"""

from __future__ import annotations

import json
import time

from memex.dsn import connect
from memex.paths import samples_dir

TENANT = "demo"
SEARCH = """
select coalesce(metadata ->> 'title', metadata ->> 'uri'), score, vector_rank, text_rank
  from memex.rag_search(%s, k => %s)
"""


def load_corpus(conn: object) -> int:
    rows = [json.loads(line) for line in (samples_dir() / "corpus.jsonl").read_text().splitlines()]
    with conn.transaction():  # type: ignore[attr-defined]
        conn.execute("select memex.set_tenant(%s)", (TENANT,))  # type: ignore[attr-defined]
        for row in rows:
            conn.execute(  # type: ignore[attr-defined]
                "select memex.upsert_document(%(uri)s, %(text)s, %(title)s)", row
            )
    conn.execute("call memex.embed_pending()")  # type: ignore[attr-defined]
    return len(rows)


def _rank(value: object) -> str:
    return "-" if value is None else str(value)


def demo(dsn: str, k: int = 3) -> int:
    with connect(dsn) as conn:
        conn.execute("select memex.create_tenant(%s)", (TENANT,))
        started = time.perf_counter()
        count = load_corpus(conn)
        elapsed = time.perf_counter() - started
        print(
            f"{count} documents in tenant {TENANT!r}, embedded in the database in {elapsed:.1f} s"
        )
        print("hybrid search: each hit with its rank in the vector and the BM25 text leg\n")
        for query in (samples_dir() / "queries.txt").read_text().splitlines():
            with conn.transaction():
                conn.execute("select memex.set_tenant(%s)", (TENANT,))
                rows = conn.execute(SEARCH, (query, k)).fetchall()
            print(f"query: {query}")
            for rank, (title, score, vrank, trank) in enumerate(rows, 1):
                print(f"  {rank}. {score:.3f}  vector #{_rank(vrank):>2}  text #{_rank(trank):>2}"
                      f"  {title}")  # fmt: skip
            print()
    return 0
