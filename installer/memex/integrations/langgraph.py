"""`MemexStore`: a LangGraph `BaseStore` whose items are memex documents (`pip install
'memex[langgraph]'`), so a LangGraph agent's long-term memory lives in memex, in the client's
tenant, searched by memex's hybrid search.

An item `(namespace, key)` is the document `<uri_prefix><label>/<label>/.../<key>` (each part
percent-encoded: a label holding `/` stays one label); its value is kept whole in the
document's metadata (`{"langgraph": {"namespace": [...], "key": ..., "value": {...}}}`), and
its text (the indexed fields, `path: text` per line) is what memex chunks, embeds and ranks.
A namespace prefix is a uri prefix, so `search(("users", "u1"), query=...)` is rag_search with
`document_uri_prefix`. docs/integrations.md.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any
from urllib.parse import quote

from langgraph.store.base import (
    BaseStore,
    GetOp,
    Item,
    ListNamespacesOp,
    MatchCondition,
    Op,
    PutOp,
    Result,
    SearchItem,
    SearchOp,
)
from langgraph.store.base.embed import get_text_at_path
from psycopg import sql
from psycopg.types.json import Jsonb

from memex.client import AsyncClient, Client
from memex.client.queries import SMALL_WRITE_CHARS

OPERATORS = {"$eq": "=", "$ne": "is distinct from", "$gt": ">", "$gte": ">=", "$lt": "<",
             "$lte": "<="}  # fmt: skip
ITEM = sql.SQL(
    "d.metadata #> '{langgraph,namespace}' as namespace, d.metadata #>> '{langgraph,key}' as key,"
    " d.metadata #> '{langgraph,value}' as value, d.created_at, d.updated_at"
)
GET = sql.SQL(
    "select {} from memex.documents as d"
    " where d.tenant_id = memex.current_tenant() and d.uri = %(uri)s and d.metadata ? 'langgraph'"
).format(ITEM)
NAMESPACES = """
select distinct d.metadata #> '{langgraph,namespace}' as namespace
  from memex.documents as d
 where d.tenant_id = memex.current_tenant() and starts_with(d.uri, %(prefix)s)
   and d.metadata ? 'langgraph'
"""
# A query with a value filter draws this many times more candidates from rag_search (at most
# its 1000), then keeps those the filter accepts.
FILTER_DEPTH = 10


class MemexStore(BaseStore):
    """`MemexStore(Client(tenant="acme"))`; `async_client=` for the async API (without one
    it runs the sync client in a thread). `index_fields`: the value's fields whose text is
    searched (LangGraph's path syntax, `"$"` for the whole value as JSON); default: every
    string in the value. A put of at most `embed_max_chars` characters is embedded at once
    (found by meaning in the next turn), a bigger one by the worker (0: always the worker)."""

    __slots__ = ("async_client", "client", "embed_max_chars", "index_fields", "uri_prefix")

    def __init__(self, client: Client | None = None, *, async_client: AsyncClient | None = None,
                 uri_prefix: str = "langgraph/", index_fields: Sequence[str] | None = None,
                 embed_max_chars: int = SMALL_WRITE_CHARS) -> None:  # fmt: skip
        if client is None and async_client is None:
            raise ValueError("MemexStore needs client= (a memex.Client) or async_client=")
        if not uri_prefix.endswith("/"):
            raise ValueError(f"uri_prefix must end with '/', not {uri_prefix!r}")
        self.client, self.async_client = client, async_client
        self.uri_prefix = uri_prefix
        self.index_fields = list(index_fields) if index_fields is not None else None
        self.embed_max_chars = embed_max_chars

    # -- BaseStore -------------------------------------------------------------------------
    def batch(self, ops: Iterable[Op]) -> list[Result]:
        if self.client is None:
            raise ValueError("this MemexStore has only an async_client: use the async API")
        return [self._run(self.client, op) for op in ops]

    async def abatch(self, ops: Iterable[Op]) -> list[Result]:
        if self.async_client is None:
            return await asyncio.to_thread(self.batch, list(ops))
        return [await self._arun(self.async_client, op) for op in ops]

    def _run(self, client: Client, op: Op) -> Result:
        if isinstance(op, PutOp):
            if op.value is None:
                client.delete_document(self._uri(op.namespace, op.key))
            else:
                client.upsert_document(*self._document(op), embed=self._embeds(op))
            return None
        statement, params = self._statement(op)
        return self._result(op, client.query(statement, params))

    async def _arun(self, client: AsyncClient, op: Op) -> Result:
        if isinstance(op, PutOp):
            if op.value is None:
                await client.delete_document(self._uri(op.namespace, op.key))
            else:
                await client.upsert_document(*self._document(op), embed=self._embeds(op))
            return None
        statement, params = self._statement(op)
        return self._result(op, await client.query(statement, params))

    # -- items as documents ----------------------------------------------------------------
    def _uri(self, namespace: tuple[str, ...], key: str | None = None) -> str:
        parts = [quote(label, safe="") for label in namespace]
        if key is None:
            return self.uri_prefix + "".join(f"{part}/" for part in parts)
        return self.uri_prefix + "/".join([*parts, quote(key, safe="")])

    def _document(self, op: PutOp) -> tuple[str, str, None, dict[str, Any]]:
        value = dict(op.value or {})
        metadata = {"langgraph": {"namespace": list(op.namespace), "key": op.key, "value": value}}
        return self._uri(op.namespace, op.key), self._text(value, op.index), None, metadata

    def _text(self, value: dict[str, Any], index: Any) -> str:
        """What memex searches: the indexed fields' text, one `path: text` line each."""
        if index is False:
            return ""
        fields = index if isinstance(index, list) else self.index_fields
        if fields is None:
            return "\n".join(f"{path}: {text}" for path, text in _strings(value, ""))
        lines = []
        for path in fields:
            if path == "$":
                lines.append(json.dumps(value, ensure_ascii=False, sort_keys=True))
                continue
            lines.extend(f"{path}: {text}" for text in get_text_at_path(value, path))
        return "\n".join(lines)

    def _embeds(self, op: PutOp) -> bool:
        return len(self._document(op)[1]) <= self.embed_max_chars

    # -- reads -----------------------------------------------------------------------------
    def _statement(self, op: Op) -> tuple[sql.Composable | str, dict[str, Any]]:
        if isinstance(op, GetOp):
            return GET, {"uri": self._uri(op.namespace, op.key)}
        if isinstance(op, ListNamespacesOp):
            return NAMESPACES, {"prefix": self.uri_prefix}
        if isinstance(op, SearchOp):
            return self._search(op)
        raise ValueError(f"unknown store operation: {type(op).__name__}")

    def _search(self, op: SearchOp) -> tuple[sql.Composable, dict[str, Any]]:
        where, params = _filter(op.filter or {})
        params.update(prefix=self._uri(op.namespace_prefix), limit=op.limit, offset=op.offset)
        if op.query is None:
            statement = sql.SQL(
                "select {}, null::float8 as score from memex.documents as d"
                " where d.tenant_id = memex.current_tenant() and starts_with(d.uri, %(prefix)s)"
                " and d.metadata ? 'langgraph' and {}"
                " order by d.updated_at desc, d.uri limit %(limit)s offset %(offset)s"
            ).format(ITEM, where)
            return statement, params
        depth = (op.limit + op.offset) * (FILTER_DEPTH if op.filter else 1)
        filters = {"source_kind": ["document"], "document_uri_prefix": params["prefix"]}
        equal = _equalities(op.filter or {})
        if equal:  # the equalities narrow rag_search's candidates already (containment)
            filters["metadata"] = {"langgraph": {"value": equal}}
        params.update(query=op.query, depth=min(1000, depth), filters=Jsonb(filters))
        statement = sql.SQL(
            "select {}, r.score from memex.rag_search(%(query)s, k => %(depth)s,"
            " filters => %(filters)s, max_per_document => 1) as r"
            " join memex.documents as d on d.tenant_id = memex.current_tenant()"
            " and d.id = r.source_id where {}"
            " order by r.score desc, d.uri limit %(limit)s offset %(offset)s"
        ).format(ITEM, where)
        return statement, params

    def _result(self, op: Op, rows: list[dict[str, Any]]) -> Result:
        if isinstance(op, GetOp):
            return _item(rows[0]) if rows else None
        if isinstance(op, SearchOp):
            return [SearchItem(namespace=tuple(r["namespace"]), key=r["key"], value=r["value"],
                               created_at=r["created_at"], updated_at=r["updated_at"],
                               score=r["score"]) for r in rows]  # fmt: skip
        assert isinstance(op, ListNamespacesOp)
        return _namespaces(op, [tuple(r["namespace"]) for r in rows])


def _item(row: dict[str, Any]) -> Item:
    created: datetime = row["created_at"]
    return Item(value=row["value"], key=row["key"], namespace=tuple(row["namespace"]),
                created_at=created, updated_at=row["updated_at"])  # fmt: skip


def _strings(value: Any, path: str) -> Iterable[tuple[str, str]]:
    """Every string leaf of a JSON value with its path (`a.b`, `tags[0]`)."""
    if isinstance(value, str):
        yield path or "$", value
    elif isinstance(value, dict):
        for key, inner in value.items():
            yield from _strings(inner, f"{path}.{key}" if path else str(key))
    elif isinstance(value, list):
        for i, inner in enumerate(value):
            yield from _strings(inner, f"{path}[{i}]")


def _filter(conditions: dict[str, Any]) -> tuple[sql.Composable, dict[str, Any]]:
    """LangGraph's value filter as SQL over the stored value, with InMemoryStore's meaning:
    a plain value is equality (a dict: each of its keys), `$eq`, `$ne`, `$gt`, `$gte`, `$lt`,
    `$lte` compare values of the same JSON type."""
    clauses: list[sql.Composable] = []
    params: dict[str, Any] = {}

    def compare(path: list[str], expected: Any) -> None:
        if isinstance(expected, dict) and any(k.startswith("$") for k in expected):
            for operator, operand in expected.items():
                if operator not in OPERATORS:
                    raise ValueError(f"unknown filter operator {operator!r}; known: "
                                     f"{', '.join(sorted(OPERATORS))}")  # fmt: skip
                add(path, OPERATORS[operator], operand)
        elif isinstance(expected, dict):
            for key, inner in expected.items():
                compare([*path, key], inner)
        else:
            add(path, "=", expected)

    def add(path: list[str], operator: str, operand: Any) -> None:
        n = len(params) // 2
        params[f"p{n}"], params[f"v{n}"] = ["langgraph", "value", *path], Jsonb(operand)
        found = sql.SQL("(d.metadata #> {})").format(sql.Placeholder(f"p{n}"))
        value = sql.Placeholder(f"v{n}")
        clause = sql.SQL("{} {} {}").format(found, sql.SQL(operator), value)
        if operator in ("=", "is distinct from"):
            clauses.append(clause)
        else:  # an order between a number and a string is no answer: refuse the row
            clauses.append(sql.SQL("(jsonb_typeof({}) = jsonb_typeof({}) and {})").format(
                found, value, clause))  # fmt: skip

    for key, expected in conditions.items():
        compare([key], expected)
    return (sql.SQL(" and ").join(clauses) if clauses else sql.SQL("true")), params


def _equalities(conditions: dict[str, Any]) -> dict[str, Any]:
    """The plain-value part of a filter, as a jsonb containment rag_search can apply."""
    found: dict[str, Any] = {}
    for key, expected in conditions.items():
        if isinstance(expected, dict) and any(k.startswith("$") for k in expected):
            if "$eq" in expected and not isinstance(expected["$eq"], (dict, list)):
                found[key] = expected["$eq"]
        elif not isinstance(expected, (dict, list)):
            found[key] = expected
    return found


def _matches(condition: MatchCondition, namespace: tuple[str, ...]) -> bool:
    path = tuple(condition.path)
    if not path:
        return True
    if len(namespace) < len(path):
        return False
    ends = namespace[: len(path)] if condition.match_type == "prefix" else namespace[-len(path) :]
    return all(p == "*" or p == n for p, n in zip(path, ends, strict=True))


def _namespaces(op: ListNamespacesOp, found: list[tuple[str, ...]]) -> list[tuple[str, ...]]:
    kept = {ns[: op.max_depth] if op.max_depth is not None else ns for ns in found
            if all(_matches(c, ns) for c in op.match_conditions or ())}  # fmt: skip
    return sorted(kept)[op.offset : op.offset + op.limit]
