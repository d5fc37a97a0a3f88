"""`memex search`: rag_search from the command line, as a readable table or JSON."""

from __future__ import annotations

import json
from typing import Any

from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from memex.dsn import connect
from memex.tenants import check_tenant

SEARCH_SQL = """
select chunk_id::text, source_kind, source_id::text, content, score, similarity,
       vector_rank, text_rank, metadata
  from memex.rag_search(%(query)s, k => %(k)s, mode => %(mode)s, filters => %(filters)s,
                        space => %(space)s, diversity => %(diversity)s)
"""


def run_search(dsn: str, query: str, tenant: str, **options: Any) -> list[dict[str, Any]]:
    with connect(dsn) as conn:
        check_tenant(conn, tenant)
        with conn.transaction():
            conn.execute("select memex.set_tenant(%s)", (tenant,))
            cur = conn.cursor(row_factory=dict_row)
            params = {"query": query, **options, "filters": Jsonb(options.get("filters") or {})}
            return cur.execute(SEARCH_SQL, params).fetchall()


def _source(row: dict[str, Any]) -> str:
    meta = row["metadata"] or {}
    where = meta.get("uri") or meta.get("conversation") or row["source_id"]
    if "level" in meta:
        where += f" L{meta['level']}"
    if "seq" in meta:
        where += f" #{meta['seq']}"
    return f"{row['source_kind']}:{where}"


def format_table(rows: list[dict[str, Any]], width: int = 60) -> str:
    lines = [f"{'#':>2}  {'score':>7}  {'sim':>5}  {'vec':>3}  {'txt':>3}  source / snippet"]
    for rank, row in enumerate(rows, 1):
        snippet = " ".join(str(row["content"]).split())
        snippet = snippet[: width - 1] + "…" if len(snippet) > width else snippet
        sim = "" if row["similarity"] is None else f"{row['similarity']:.3f}"
        lines.append(
            f"{rank:>2}  {row['score']:7.4f}  {sim:>5}  {row['vector_rank'] or '-':>3}  "
            f"{row['text_rank'] or '-':>3}  {_source(row)}"
        )
        lines.append(f"{'':>28}{snippet}")
    if not rows:
        lines.append("(no results)")
    return "\n".join(lines)


def search(dsn: str, query: str, tenant: str, as_json: bool, **options: Any) -> int:
    rows = run_search(dsn, query, tenant, **options)
    if as_json:
        print(json.dumps(rows, indent=2, ensure_ascii=False, default=str))
    else:
        print(format_table(rows))
    return 0
