"""`memex search` and `memex context`: rag_search and compose_context from the command line."""

from __future__ import annotations

import json
import shutil
import sys
import textwrap
from dataclasses import asdict
from typing import Any

import psycopg

from memex.client import Client

# Lines of a result's text shown without --full: enough to hold the answer of most chunks.
SNIPPET_LINES = 4


def print_notice(diag: psycopg.errors.Diagnostic) -> None:
    """The database's NOTICEs (pending chunks, stop words only, no tenant) on stderr, as psql
    shows them: a search that says nothing about them looks broken."""
    if diag.message_primary:
        hint = f"\n  hint: {diag.message_hint}" if diag.message_hint else ""
        print(f"memex: note: {diag.message_primary}{hint}", file=sys.stderr)


def run_search(dsn: str, query: str, tenant: str, **options: Any) -> list[dict[str, Any]]:
    """rag_search through the client: its rows as dicts (every column of search_result)."""
    k, mode, filters = options.pop("k", 8), options.pop("mode", "hybrid"), options.pop("filters")
    named = {name: value for name, value in options.items() if value is not None}
    with Client(dsn, tenant=tenant, max_size=1, on_notice=print_notice) as memex:
        rows = memex.search(query, k, mode, filters, **named)
    return [asdict(row) for row in rows]


def describe_source(row: dict[str, Any]) -> str:
    """Where a result comes from, as a person names it: a document's title and uri; a
    conversation's title, the message's number, speaker and time; a summary's level."""
    meta = row["metadata"] or {}
    kind = row["source_kind"]
    title = meta.get("title")
    if kind == "document":
        uri = meta.get("uri") or row["source_id"]
        return f"{title}  ({uri})" if title and title != uri else str(uri)
    where = title or meta.get("conversation") or row["source_id"]
    if kind == "summary":
        return f"{where}  (summary L{meta.get('level')})"
    speaker = f"{meta['name']} ({meta.get('role')})" if meta.get("name") else meta.get("role")
    parts = [f"#{meta['seq']}" if "seq" in meta else None, speaker,
             _when(meta.get("ts")) or meta.get("date")]  # fmt: skip
    return f"{where}  ({', '.join(p for p in parts if p)})"


def _when(ts: Any) -> str | None:
    """An ISO timestamp to the minute (2025-06-25 21:04), as written in a citation."""
    if not isinstance(ts, str):
        return None
    return ts[:16].replace("T", " ")


def format_results(rows: list[dict[str, Any]], full: bool = False, width: int | None = None) -> str:
    width = width or min(shutil.get_terminal_size((100, 24)).columns, 120)
    lines: list[str] = []
    for rank, row in enumerate(rows, 1):
        sim = "" if row["similarity"] is None else f"  sim {row['similarity']:.3f}"
        ranks = f"vec {row['vector_rank'] or '-'}  txt {row['text_rank'] or '-'}"
        lines.append(
            f"{rank:>2}. {row['source_kind']}: {describe_source(row)}\n"
            f"    score {row['score']:.4f}{sim}  {ranks}"
        )
        text = str(row["content"]).strip()
        wrapped = [
            piece
            for paragraph in text.splitlines()
            for piece in (textwrap.wrap(paragraph, width - 4) or [""])
        ]
        if not full and len(wrapped) > SNIPPET_LINES:
            wrapped = [*wrapped[:SNIPPET_LINES], "…  (--full shows the whole text)"]
        lines.extend(f"    {piece}".rstrip() for piece in wrapped)
        lines.append("")
    if not rows:
        lines.append("(no results)")
    return "\n".join(lines).rstrip()


def search(
    dsn: str, query: str, tenant: str, as_json: bool, full: bool = False, **options: Any
) -> int:
    rows = run_search(dsn, query, tenant, **options)
    if as_json:
        print(json.dumps(rows, indent=2, ensure_ascii=False, default=str))
    else:
        print(format_results(rows, full=full))
    return 0


def context(dsn: str, query: str, tenant: str, budget: int, **options: Any) -> int:
    """compose_context's block, as an application would put it in a prompt."""
    filters = options.pop("filters")
    with Client(dsn, tenant=tenant, max_size=1, on_notice=print_notice) as memex:
        block = memex.context(query, budget, filters, **options)
    print(block or "(nothing found)")
    return 0
