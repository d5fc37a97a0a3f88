"""MemexStore through LangGraph's own store API (put, get, search, delete, list_namespaces,
their async twins and batch), against InMemoryStore for the meaning of every operation, and
inside a compiled LangGraph graph; a real database, the bundled model, no LLM."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any, TypedDict

import psycopg
import pytest
from langgraph.graph import END, START, StateGraph
from langgraph.store.base import BaseStore, GetOp, ListNamespacesOp, PutOp, SearchOp
from langgraph.store.memory import InMemoryStore

from memex import AsyncClient, Client
from memex.integrations.langgraph import MemexStore
from tests.db.helpers import make_tenants

APP = "?options=-c%20role%3Dmemex_app"
ITEMS: list[tuple[tuple[str, ...], str, dict[str, Any]]] = [
    (("users", "u1", "memories"), "coffee", {"text": "Prefers dark roast coffee, no sugar.",
                                             "kind": "preference", "weight": 3}),
    (("users", "u1", "memories"), "sister", {"text": "Has a sister called Maya in Lisbon.",
                                             "kind": "fact", "weight": 5, "tags": ["family"]}),
    (("users", "u1", "memories"), "meeting", {"text": "Weekly sync moved to Thursday 10:00.",
                                              "kind": "fact", "weight": 1}),
    (("users", "u2", "memories"), "tea", {"text": "Drinks green tea in the afternoon.",
                                          "kind": "preference", "weight": 2}),
    (("users", "u2", "profile"), "name", {"text": "Jordan", "kind": "fact", "weight": 4,
                                         "nested": {"level": "senior", "team": "infra"}}),
    (("docs", "a/b"), "slash key/1", {"text": "A label and a key with slashes.", "weight": 0}),
    (("docs",), "top", {"text": "A top level doc.", "score": 1.5, "weight": 7}),
]  # fmt: skip


@pytest.fixture
def client(db: str) -> Iterator[Client]:
    with psycopg.connect(db, autocommit=True) as conn:
        make_tenants(conn, "acme", "globex")
    with Client(db + APP, tenant="acme") as memex:
        yield memex


def _fill(store: BaseStore) -> None:
    for namespace, key, value in ITEMS:
        store.put(namespace, key, value)


def _seen(items: list[Any]) -> set[tuple[tuple[str, ...], str, str]]:
    return {(i.namespace, i.key, json.dumps(i.value, sort_keys=True)) for i in items}


FILTERS: list[dict[str, Any]] = [
    {}, {"kind": "fact"}, {"kind": {"$eq": "preference"}}, {"kind": {"$ne": "fact"}},
    {"weight": {"$gt": 2}}, {"weight": {"$gte": 2, "$lt": 5}}, {"weight": {"$lte": 1}},
    {"nested": {"team": "infra"}}, {"tags": ["family"]},
    {"kind": "fact", "weight": {"$gte": 4}}, {"missing": {"$ne": 1}},
]  # fmt: skip
PREFIXES: list[tuple[str, ...]] = [(), ("users",), ("users", "u1"), ("users", "u2", "profile"),
                                   ("docs",), ("docs", "a/b"), ("nobody",)]  # fmt: skip


def test_every_operation_means_what_it_means_in_langgraphs_memory_store(
    client: Client,
) -> None:
    memex, reference = MemexStore(client), InMemoryStore()
    _fill(memex)
    _fill(reference)
    moved = {"text": "Weekly sync on Friday.", "kind": "fact", "weight": 1}
    memex.put(("users", "u1", "memories"), "meeting", moved)
    reference.put(("users", "u1", "memories"), "meeting", moved)
    # (before a delete or a get: InMemoryStore keeps the namespaces they touch)
    for options in [{}, {"prefix": ("users",)}, {"suffix": ("memories",)}, {"max_depth": 2},
                    {"prefix": ("users", "*", "memories")}, {"limit": 2, "offset": 1},
                    {"prefix": ("docs",), "max_depth": 1}]:  # fmt: skip
        assert memex.list_namespaces(**options) == reference.list_namespaces(**options), options
    memex.delete(("users", "u2", "memories"), "tea")
    reference.delete(("users", "u2", "memories"), "tea")
    for namespace, key, _ in [*ITEMS, (("users",), "nothing", {})]:
        mine, theirs = memex.get(namespace, key), reference.get(namespace, key)
        assert (mine is None) == (theirs is None), (namespace, key)
        if mine is not None and theirs is not None:
            assert (mine.namespace, mine.key, mine.value) == (theirs.namespace, theirs.key,
                                                              theirs.value)  # fmt: skip
            assert mine.created_at <= mine.updated_at
    for prefix in PREFIXES:
        for conditions in FILTERS:
            mine = memex.search(prefix, filter=conditions, limit=50)
            theirs = reference.search(prefix, filter=conditions, limit=50)
            assert _seen(mine) == _seen(theirs), (prefix, conditions)
    # where InMemoryStore raises (an order on a missing field or across types) memex says no
    assert [i.key for i in memex.search((), filter={"score": {"$gt": 1}})] == ["top"]
    assert memex.search((), filter={"weight": {"$gt": "a"}}) == []


def test_a_natural_language_query_runs_memex_hybrid_search_in_the_namespace(
    client: Client,
) -> None:
    store = MemexStore(client)
    _fill(store)
    found = store.search(("users", "u1"), query="what coffee does the user like", limit=3)
    assert found[0].key == "coffee" and found[0].score is not None
    assert all(item.namespace[:2] == ("users", "u1") for item in found)
    assert [i.score for i in found] == sorted((i.score for i in found), reverse=True)
    facts = store.search(("users", "u1"), query="family in Lisbon", filter={"kind": "fact"})
    assert facts[0].key == "sister" and {i.value["kind"] for i in facts} == {"fact"}
    heavy = store.search(("users",), query="coffee or tea", filter={"weight": {"$gte": 3}})
    assert {i.key for i in heavy} <= {"coffee", "sister", "name"} and "coffee" in {
        i.key for i in heavy
    }
    by_meaning = store.search(("users", "u2"), query="a hot drink after lunch", limit=1)
    assert [i.key for i in by_meaning] == ["tea"], "embedded as it was put: found by meaning"
    page = store.search(("users",), query="coffee tea sister sync Jordan", limit=2, offset=1)
    assert len(page) == 2


def test_index_false_keeps_an_item_out_of_search_but_not_out_of_get(client: Client) -> None:
    store = MemexStore(client, index_fields=["text"])
    store.put(("notes",), "secret", {"text": "the vault code is 1234"}, index=False)
    store.put(("notes",), "open", {"text": "the vault is in the basement", "code": "zzz"})
    assert [i.key for i in store.search(("notes",), query="vault")] == ["open"]
    (text,) = client.query("select content from memex.documents where uri like '%%/open'")
    assert text == {"content": "text: the vault is in the basement"}, "the indexed field only"
    item = store.get(("notes",), "secret")
    assert item is not None and item.value == {"text": "the vault code is 1234"}


def test_a_tenant_never_sees_another_tenants_memory(db: str, client: Client) -> None:
    MemexStore(client).put(("users", "u1"), "k", {"text": "acme's roadmap for 2027"})
    with Client(db + APP, tenant="globex") as other:
        theirs = MemexStore(other)
        assert theirs.get(("users", "u1"), "k") is None
        assert theirs.search(("users",), query="roadmap") == []
        assert theirs.list_namespaces() == []
        theirs.delete(("users", "u1"), "k")
    assert MemexStore(client).get(("users", "u1"), "k") is not None


def test_the_async_api_and_batch_through_an_async_client(db: str, client: Client) -> None:
    async def run() -> None:
        async with AsyncClient(db + APP, tenant="acme") as memex:
            store = MemexStore(async_client=memex)
            await store.aput(("users", "u9"), "plan", {"text": "Climb Mont Blanc in July."})
            got = await store.aget(("users", "u9"), "plan")
            assert got is not None and got.value["text"].startswith("Climb")
            found = await store.asearch(("users",), query="mountain trip in summer", limit=1)
            assert [i.key for i in found] == ["plan"]
            results = await store.abatch([
                PutOp(("users", "u9"), "diet", {"text": "Vegetarian."}),
                GetOp(("users", "u9"), "diet"),
                SearchOp(("users", "u9"), filter=None, limit=10, offset=0, query=None),
                ListNamespacesOp(match_conditions=None, max_depth=None, limit=10, offset=0),
            ])  # fmt: skip
            assert results[0] is None and results[1].value == {"text": "Vegetarian."}
            assert {i.key for i in results[2]} == {"plan", "diet"}
            assert results[3] == [("users", "u9")]
            await store.adelete(("users", "u9"), "plan")
            assert await store.aget(("users", "u9"), "plan") is None

    asyncio.run(run())


def test_bad_input_is_refused_and_writes_nothing(client: Client) -> None:
    store = MemexStore(client)
    with pytest.raises(ValueError, match="unknown filter operator '\\$regex'"):
        store.search(("users",), filter={"text": {"$regex": "x"}})
    with pytest.raises(ValueError, match="cannot contain periods"):
        store.put(("a.b",), "k", {"x": 1})
    with pytest.raises(ValueError, match="uri_prefix must end with '/'"):
        MemexStore(client, uri_prefix="lg")
    assert client.query("select count(*) as n from memex.documents") == [{"n": 0}]


class State(TypedDict):
    user: str
    said: str
    recalled: list[str]


def test_a_langgraph_graph_keeps_its_long_term_memory_in_memex(client: Client) -> None:
    def remember(state: State, *, store: BaseStore) -> dict[str, Any]:
        store.put(("memories", state["user"]), f"m{len(state['said'])}", {"text": state["said"]})
        return {}

    def recall(state: State, *, store: BaseStore) -> dict[str, Any]:
        found = store.search(("memories", state["user"]), query="which pet", limit=1)
        return {"recalled": [item.value["text"] for item in found]}

    graph = StateGraph(State)
    graph.add_node("remember", remember)
    graph.add_node("recall", recall)
    graph.add_edge(START, "remember")
    graph.add_edge("remember", "recall")
    graph.add_edge("recall", END)
    app = graph.compile(store=MemexStore(client))
    app.invoke({"user": "u1", "said": "I have a cat named Pixel.", "recalled": []})
    app.invoke({"user": "u2", "said": "I own a parrot.", "recalled": []})
    out = app.invoke({"user": "u1", "said": "My favourite colour is teal.", "recalled": []})
    assert out["recalled"] == ["I have a cat named Pixel."]
    rows = client.query("select uri from memex.documents order by uri")
    assert [r["uri"] for r in rows] == ["langgraph/memories/u1/m25", "langgraph/memories/u1/m28",
                                        "langgraph/memories/u2/m15"]  # fmt: skip
