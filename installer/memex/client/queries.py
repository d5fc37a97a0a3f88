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
# The options rag_search takes besides query, k, mode and filters (docs/search.md).
SEARCH_OPTIONS = frozenset({
    "space", "min_similarity", "rrf_k", "vector_weight", "text_weight", "diversity", "fusion",
    "max_per_document", "rerank", "rerank_depth", "bm25_k1", "bm25_b", "domain",
})  # fmt: skip
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
    """Messages as upsert_messages takes them; a speaker's `name` goes into the message's
    metadata (docs/client.md)."""
    payload = []
    for message in messages:
        item = dict(message)
        name = item.pop("name", None)
        if name is not None:
            item["metadata"] = {**(item.get("metadata") or {}), "name": name}
        payload.append(item)
    return Jsonb(payload)


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
