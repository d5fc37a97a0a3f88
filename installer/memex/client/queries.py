"""The SQL the client sends, and the checks made before sending it: one home, read by the sync
and the async client alike."""

from __future__ import annotations

import difflib
from typing import Any

from psycopg import sql
from psycopg.types.json import Jsonb

from memex.client.errors import InvalidInput, TenantNotFound

SET_TENANT = "select memex.set_tenant(%s)"
TENANT_NAMES = "select name from memex.tenants order by name"
# The options rag_search takes besides query, k, mode and filters, with the Python type of
# each (docs/search.md): the client, memex eval's --compare and the integrations read them here.
SEARCH_OPTION_TYPES: dict[str, type] = {
    "space": str, "min_similarity": float, "rrf_k": int, "vector_weight": float,
    "text_weight": float, "diversity": float, "fusion": str, "max_per_document": int,
    "rerank": str, "rerank_depth": int, "bm25_k1": float, "bm25_b": float, "domain": str,
    "conversation_weight": float, "recency": str,
}  # fmt: skip
SEARCH_OPTIONS = frozenset(SEARCH_OPTION_TYPES)
CONTEXT_OPTIONS = frozenset({"k", "mode", "space"})
UPSERT_DOCUMENT = "select id::text, action from memex.upsert_document_outcome(%s, %s, %s, %s, %s)"
DELETE_DOCUMENT = "select memex.delete_document(%s)"
UPSERT_CONVERSATION = (
    "select id::text, action from memex.upsert_conversation_outcome(%s, %s, %s::date, %s, %s)"
)
UPSERT_MESSAGES = (
    "select inserted, updated, unchanged, removed from memex.upsert_messages_outcome(%s, %s, %s)"
)
UPSERT_SUMMARIES = "select inserted, updated, unchanged from memex.upsert_summaries(%s, %s)"
DELETE_CONVERSATION = "select memex.delete_conversation(%s)"
EMBED_PENDING = "call memex.embed_pending(%s, %s, %s)"
# A write up to this many characters (a note, a few turns: a few chunks, tens of milliseconds)
# is worth embedding at once, so an agent finds it by meaning in its next turn; a bigger one
# is left to the worker. The MCP server and the LangGraph store use it.
SMALL_WRITE_CHARS = 16_000
# A write that embeds its own chunks, in its transaction (docs/embedding.md, embed on write).
EMBED_ON_WRITE = "select pg_catalog.set_config('memex.embed_on_write', 'on', true)"
# Conversations, last written first: the tenant is named (RLS binds no superuser).
LIST_CONVERSATIONS = """
select c.slug, c.title, c.created_date::text as date, c.updated_at::text as updated_at,
       (select count(*) from memex.messages as m
         where m.tenant_id = c.tenant_id and m.conversation_id = c.id) as messages
  from memex.conversations as c
 where c.tenant_id = memex.current_tenant()
 order by c.updated_at desc, c.slug
 limit %s offset %s
"""
CONVERSATION = """
select c.id, c.slug, c.title, c.created_date::text as date, c.metadata
  from memex.conversations as c where c.tenant_id = memex.current_tenant() and c.slug = %s
"""
MESSAGES = """
select m.seq, m.role::text as role, m.content, m.ts::text as ts, m.name
  from memex.messages as m
 where m.tenant_id = memex.current_tenant() and m.conversation_id = %s
 order by m.seq limit %s offset %s
"""
SUMMARIES = """
select s.level, s.index, s.content, s.covers, s.topics
  from memex.summaries as s
 where s.tenant_id = memex.current_tenant() and s.conversation_id = %s
   and (%s::integer is null or s.level = %s::integer)
 order by s.level, s.index nulls last, s.created_at
"""
# Pages of conversations and messages are bounded: a caller pages with offset.
MAX_PAGE = 500
# A connection back in the pool keeps no tenant: set_tenant is transaction-local anyway, this
# also clears a session-wide one a caller set by hand.
RESET = "select pg_catalog.set_config('memex.tenant_id', '', false)"


def _named(options: dict[str, Any], known: frozenset[str], what: str) -> list[sql.Composable]:
    unknown = sorted(set(options) - known)
    if unknown:
        raise InvalidInput(f"unknown {what} option(s): {', '.join(unknown)}",
                           hint=f"known: {', '.join(sorted(known))}")  # fmt: skip
    return [
        sql.SQL("{} => {}").format(sql.Identifier(name), sql.Placeholder(name))
        for name in sorted(options)
    ]


def search(
    query: str, k: int, mode: str, filters: dict[str, Any] | None, options: dict[str, Any]
) -> tuple[sql.Composed, dict[str, Any]]:
    """rag_search with named arguments: only the options given travel."""
    named = _named(options, SEARCH_OPTIONS, "search")
    statement = sql.SQL(
        "select chunk_id, source_kind, source_id, content, score, similarity, vector_rank,"
        " text_rank, metadata from memex.rag_search({}, k => {}, mode => {}, filters => {}{})"
    ).format(sql.Placeholder("query"), sql.Placeholder("k"), sql.Placeholder("mode"),
             sql.Placeholder("filters"),
             sql.SQL("").join(sql.SQL(", ") + n for n in named))  # fmt: skip
    params = {"query": query, "k": k, "mode": mode, "filters": Jsonb(filters or {}), **options}
    return statement, params


def context(
    query: str, token_budget: int, filters: dict[str, Any] | None, options: dict[str, Any]
) -> tuple[sql.Composed, dict[str, Any]]:
    named = _named(options, CONTEXT_OPTIONS, "context")
    statement = sql.SQL("select memex.compose_context({}, {}, filters => {}{})").format(
        sql.Placeholder("query"),
        sql.Placeholder("budget"),
        sql.Placeholder("filters"),
        sql.SQL("").join(sql.SQL(", ") + n for n in named),
    )
    return statement, {"query": query, "budget": token_budget, "filters": Jsonb(filters or {}),
                       **options}  # fmt: skip


def messages_payload(messages: list[dict[str, Any]]) -> Jsonb:
    """Messages as upsert_messages takes them (a speaker's `name` is a field of its own)."""
    return Jsonb([dict(m) for m in messages])


def tenant_not_found(tenant: str, visible: list[str]) -> TenantNotFound:
    """The error for a tenant this role cannot see, with the nearest names it can (all for
    memex_admin, none for memex_app: nothing leaks)."""
    close = difflib.get_close_matches(tenant, visible, n=3, cutoff=0.6)
    if close:  # a typo: the likely fix only, not the creation of the mistyped name
        return TenantNotFound(
            f"unknown tenant {tenant!r}: did you mean {' or '.join(repr(c) for c in close)}?",
            sqlstate="P0002",
        )
    return TenantNotFound(
        f"unknown tenant {tenant!r}",
        hint=f"create it with `memex tenant create {tenant}` as memex_admin",
        sqlstate="P0002",
    )


def page(limit: int, offset: int) -> tuple[int, int]:
    if not 1 <= limit <= MAX_PAGE:
        raise InvalidInput(f"limit must be between 1 and {MAX_PAGE}, not {limit}")
    if offset < 0:
        raise InvalidInput(f"offset must be at least 0, not {offset}")
    return limit, offset


def conversation(
    found: dict[str, Any], messages: list[dict[str, Any]], summaries: list[dict[str, Any]],
    limit: int, offset: int,
) -> dict[str, Any]:  # fmt: skip
    """get_conversation's answer: the conversation, a page of its messages, summaries by level."""
    levels: dict[int, list[dict[str, Any]]] = {}
    for summary in summaries:
        levels.setdefault(int(summary.pop("level")), []).append(summary)
    return {
        "slug": found["slug"], "title": found["title"], "date": found["date"],
        "metadata": found["metadata"], "messages": messages, "summaries": levels,
        "next_offset": offset + limit if len(messages) == limit else None,
    }  # fmt: skip
