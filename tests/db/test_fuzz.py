"""Property-based fuzzing (hypothesis) of the public functions' arguments, as memex_app on a
tenant: text with NULs and invalid surrogates, huge and negative numbers, deeply nested and huge
JSON, unknown keys. Every error must carry a documented SQLSTATE (never XX000, never a PL/Python
exception surfacing as 38000, never a traceback as the message), and a failed call writes
nothing."""

from __future__ import annotations

import json
import os
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.db.helpers import TENANT_TABLES, Conn, as_role, make_tenants, populate

EXAMPLES = int(os.environ.get("MEMEX_FUZZ_EXAMPLES", "60"))
# The SQLSTATEs memex documents for bad input (docs/data-model.md, docs/architecture.md) and
# PostgreSQL's own for values that cannot even be arguments: data exceptions (class 22),
# integrity (23), insufficient privilege, limits (54000, and 54001 for nesting too deep),
# not found (P0002).
DOCUMENTED_CLASSES = {"22", "23"}
DOCUMENTED = {"42501", "54000", "54001", "53200", "P0002"}


def _text(max_size: int = 200) -> st.SearchStrategy[bytes]:
    """Text as UTF-8 bytes, NULs and lone surrogates included (psycopg cannot send those as
    text: the server gets them through convert_from and must refuse them cleanly)."""
    chars = st.text(st.characters(codec=None, exclude_categories=()), max_size=max_size)
    specials = st.sampled_from(["", "\x00", "a\x00b", "\ud800", "x\udfffy", "🔑" * 50, " " * 10])
    raw = st.one_of(chars, specials, st.builds(lambda a, b: a + b, chars, specials))
    return raw.map(lambda s: s.encode("utf-8", "surrogatepass"))


def _deep(depth: int) -> str:
    return "[" * depth + "]" * depth


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner,
                                                                  max_size=4),
    max_leaves=12,
)  # fmt: skip
JSON = st.one_of(
    JSON_VALUES.map(json.dumps),
    st.integers(1, 20000).map(_deep),  # nesting deep enough to reach the server's stack limit
    st.just(json.dumps({"x": "y" * 2_000_000})),  # 2 MB
    st.just('{"a": "\\u0000"}'),  # a NUL escape: jsonb refuses it
    st.dictionaries(
        st.sampled_from(["language", "domain", "uri", "kind", "tags", "zzz", ""]),
        JSON_VALUES,
        max_size=4,
    ).map(json.dumps),
)
INTS = st.one_of(st.integers(-(2**63), 2**63 - 1), st.integers(-5, 5000))
MODES = st.sampled_from(["text", "hybrid", "vector", "", "HYBRID", "all"])

T = "convert_from(%s::bytea, 'UTF8')"
CALLS: dict[str, tuple[str, st.SearchStrategy[tuple[Any, ...]]]] = {
    "upsert_document": (
        f"select memex.upsert_document({T}, {T}, {T}, %s::jsonb, {T})",
        st.tuples(_text(), _text(2000), _text(), JSON, _text()),
    ),
    "chunk_text": (
        f"select count(*) from memex.chunk_text({T}, %s::numeric::integer, %s::numeric::integer)",
        st.tuples(_text(3000), INTS, INTS),
    ),
    "count_tokens": (f"select memex.count_tokens({T})", st.tuples(_text(3000))),
    "embed_batch": (
        f"select count(*) from memex.embed_batch(array[{T}, {T}])",
        st.tuples(_text(), _text()),
    ),
    "rag_search": (
        f"select count(*) from memex.rag_search({T}, k => %s::numeric::integer, mode => %s,"
        " filters => %s::jsonb)",
        st.tuples(_text(), INTS, MODES, JSON),
    ),
    "compose_context": (
        f"select length(memex.compose_context({T}, token_budget => %s::numeric::integer,"
        " mode => 'text')::text)",
        st.tuples(_text(), INTS),
    ),
    "upsert_conversation": (
        f"select memex.upsert_conversation({T}, {T}, null, %s::jsonb)",
        st.tuples(_text(), _text(), JSON),
    ),
    "upsert_messages": ("select memex.upsert_messages('fuzz', %s::jsonb)", st.tuples(JSON)),
    "upsert_summaries": (
        "select * from memex.upsert_summaries('fuzz', %s::jsonb)",
        st.tuples(JSON),
    ),
    "set_tenant": (f"select memex.set_tenant({T})", st.tuples(_text())),
    "delete_document": (f"select memex.delete_document({T})", st.tuples(_text())),
}


def _counts(conn: Conn) -> list[object]:
    return [conn.execute(f"select count(*) from memex.{t}").fetchone() for t in TENANT_TABLES]


@pytest.fixture
def app(conn: Conn) -> Conn:
    make_tenants(conn, "fuzz-tenant")
    populate(conn, "fuzz-tenant")
    conn.execute("select memex.upsert_conversation('fuzz')")
    as_role(conn, "memex_app")
    return conn


@pytest.mark.parametrize("name", list(CALLS))
def test_bad_arguments_get_a_documented_sqlstate_and_write_nothing(app: Conn, name: str) -> None:
    statement, arguments = CALLS[name]
    seen: dict[str, int] = {}

    @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
              suppress_health_check=[HealthCheck.function_scoped_fixture,
                                     HealthCheck.too_slow, HealthCheck.data_too_large])  # fmt: skip
    @given(args=arguments)
    def check(args: tuple[Any, ...]) -> None:
        with app.transaction(force_rollback=True):
            app.execute("select memex.set_tenant('fuzz-tenant')")
            before = _counts(app)
            try:
                with app.transaction():
                    app.execute(statement, args)
                seen["ok"] = seen.get("ok", 0) + 1
            except psycopg.Error as exc:
                state = exc.sqlstate or "none"
                seen[state] = seen.get(state, 0) + 1
                message = str(exc)
                assert state[:2] in DOCUMENTED_CLASSES or state in DOCUMENTED, (state, message)
                assert "Traceback" not in (exc.diag.message_primary or ""), message
                assert _counts(app) == before

    check()
    print(f"{name}: {seen}")  # shown with -s
