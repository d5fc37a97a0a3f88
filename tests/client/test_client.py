"""memex.Client and memex.AsyncClient against a real database: typed results, one tenant per
client (never another's rows), errors by SQLSTATE, safe behind PgBouncer in transaction mode."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import psycopg
import pytest

from memex import AsyncClient, Client
from memex.client import (
    InvalidInput,
    LimitExceeded,
    NotFound,
    PermissionDenied,
    SearchResult,
    TenantNotFound,
)
from tests.db.helpers import ARTEFACT, make_tenants
from tests.db.test_pooler import pooler  # noqa: F401 - the PgBouncer fixture

APP = "?options=-c%20role%3Dmemex_app"


@pytest.fixture
def tenants(db: str) -> dict[str, str]:
    with psycopg.connect(db, autocommit=True) as conn:
        return make_tenants(conn, "acme", "globex")


def test_search_returns_typed_rows_with_every_column(db: str, tenants: dict[str, str]) -> None:
    with Client(db + APP, tenant="acme") as memex:
        stored = memex.upsert_document("kb/keys.md", "Rotate the signing keys every 90 days.",
                                       title="Key rotation", metadata={"team": "ops"})  # fmt: skip
        assert stored.action == "inserted"
        assert memex.upsert_document("kb/keys.md", "Rotate the signing keys every 90 days.",
                                     title="Key rotation", metadata={"team": "ops"}
                                     ).action == "unchanged"  # fmt: skip
        (hit,) = memex.search("signing keys", k=3, mode="text")
    assert isinstance(hit, SearchResult)
    assert hit.source_kind == "document" and hit.uri == "kb/keys.md"
    assert hit.title == "Key rotation" and hit.text_rank == 1 and hit.vector_rank is None
    assert hit.citation == "document: Key rotation, kb/keys.md"
    assert hit.metadata["source_metadata"] == {"team": "ops"}
    assert set(hit.as_dict()) >= {"content", "score", "source_kind", "uri", "conversation",
                                  "title", "date", "citation"}  # fmt: skip


def test_messages_append_and_the_context_cites_who_and_when(
    db: str, tenants: dict[str, str]
) -> None:
    with Client(db + APP, tenant="acme") as memex:
        first = memex.add_messages("session-1", [
            {"role": "user", "content": "I moved the backups to the new bucket.",
             "ts": "2025-06-03T08:00:00Z", "name": "Caroline"},
        ], title="Ops chat")  # fmt: skip
        second = memex.add_messages("session-1", [
            {"role": "assistant", "content": "Noted: backups live in the new bucket now."},
        ])  # fmt: skip
        assert (first.inserted, second.inserted) == (1, 1)
        assert first.conversation_id == second.conversation_id
        text = memex.context("where do the backups live", token_budget=300, mode="text")
        counts = memex.upsert_summaries("session-1", {**ARTEFACT, "slug": "session-1"})
        assert counts == {"inserted": 2, "updated": 0, "unchanged": 0}
        assert memex.delete_conversation("session-1") is True
        assert memex.delete_conversation("session-1") is False
    assert "2025-06-03 08:00\n#1 Caroline: I moved the backups to the new bucket." in text
    with psycopg.connect(db) as su:
        names = su.execute("select name from memex.messages").fetchall()
    assert names == [], "deleted with the conversation"


def test_a_client_never_sees_another_tenants_rows(db: str, tenants: dict[str, str]) -> None:
    with Client(db + APP, tenant="acme") as acme, Client(db + APP, tenant="globex") as globex:
        acme.upsert_document("kb/secret.md", "acme's quarterly numbers")
        assert globex.search("quarterly numbers", mode="text") == []
        assert globex.delete_document("kb/secret.md") is False
        assert [r.uri for r in acme.search("quarterly numbers", mode="text")] == ["kb/secret.md"]


def test_an_unknown_tenant_names_the_nearest_the_role_can_see(
    db: str, tenants: dict[str, str]
) -> None:
    with pytest.raises(TenantNotFound, match="unknown tenant 'acmee': did you mean 'acme'"):
        Client(db, tenant="acmee")  # as the superuser: every tenant is listed
    with pytest.raises(TenantNotFound) as refused:
        Client(db + APP, tenant="acmee")  # memex_app lists no tenant: nothing leaks
    assert "acme'" not in str(refused.value) and refused.value.hint


def test_errors_are_typed_by_sqlstate_and_write_nothing(db: str, tenants: dict[str, str]) -> None:
    with Client(db + APP, tenant="acme") as memex:
        with pytest.raises(InvalidInput, match="k must be between 1 and 1000") as bad:
            memex.search("keys", k=0)
        assert bad.value.sqlstate == "22023"
        with pytest.raises(InvalidInput, match="unknown search option"):
            memex.search("keys", colour="blue")
        with pytest.raises(LimitExceeded, match="the limit is 32768"):
            memex.search("x" * 100_000)
        with pytest.raises(InvalidInput, match="unknown role 'robot'"):
            memex.add_messages("s", [{"role": "robot", "content": "x"}])
        with pytest.raises(PermissionDenied):
            memex.embed_pending()
    with psycopg.connect(db) as su:
        assert su.execute("select count(*) from memex.conversations").fetchone() == (0,)


def test_ingest_and_embed_through_the_client(db: str, tenants: dict[str, str],
                                             tmp_path: Path) -> None:  # fmt: skip
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "a.md").write_text("# Storms\n\nUnplug the servers during a storm.\n")
    with Client(db, tenant="acme") as memex:
        report = memex.ingest([tmp_path / "notes"], root=str(tmp_path))
        assert [f.status for f in report.files] == ["inserted"]
        memex.embed_pending()
        (hit,) = memex.search("thunderstorm precautions", k=1, mode="vector")
    assert hit.uri == "notes/a.md" and hit.similarity is not None


def test_the_async_client_does_the_same(db: str, tenants: dict[str, str]) -> None:
    async def run() -> list[str | None]:
        async with AsyncClient(db + APP, tenant="acme") as memex:
            await memex.upsert_document("kb/a.md", "asynchronous notes about queues")
            await memex.add_messages("s", [{"role": "user", "content": "queues again"}])
            with pytest.raises(InvalidInput):
                await memex.search("queues", mode="sideways")
            hits = await memex.search("queues", mode="text")
            return [h.uri or h.conversation for h in hits]

    assert sorted(str(x) for x in asyncio.run(run())) == ["kb/a.md", "s"]
    with pytest.raises(TenantNotFound):
        asyncio.run(AsyncClient(db, tenant="nope").open())


def test_safe_behind_pgbouncer_in_transaction_mode(
    db: str,
    tenants: dict[str, str],
    pooler: tuple[str, str],  # noqa: F811
) -> None:
    """Two clients of two tenants share pgbouncer's 4 server connections: each call sets its
    tenant inside its own transaction, so a server connection never carries one over."""
    dsn, _role = pooler
    with Client(dsn, tenant="acme", max_size=4) as acme, \
            Client(dsn, tenant="globex", max_size=4) as globex:  # fmt: skip
        for i in range(20):
            acme.upsert_document(f"a/{i}.md", f"acme note {i}")
            globex.upsert_document(f"g/{i}.md", f"globex note {i}")
            assert {r.uri[0] for r in acme.search("note", k=50, mode="text") if r.uri} == {"a"}
            assert {r.uri[0] for r in globex.search("note", k=50, mode="text") if r.uri} == {"g"}
    with psycopg.connect(db) as su:
        counts = su.execute("select t.name, count(*) from memex.documents d join memex.tenants t"
                            " on t.id = d.tenant_id group by 1 order by 1").fetchall()  # fmt: skip
    assert json.dumps(counts) == json.dumps([["acme", 20], ["globex", 20]])


def test_conversations_are_listed_and_read_a_page_at_a_time(
    db: str, tenants: dict[str, str]
) -> None:
    with Client(db + APP, tenant="acme") as memex, Client(db + APP, tenant="globex") as globex:
        memex.add_messages("standup", [{"role": "user", "content": f"point {n}"}
                                       for n in range(1, 6)], title="Standup")  # fmt: skip
        memex.upsert_summaries("standup", {**ARTEFACT, "slug": "standup", "title": "Standup"})
        (listed,) = memex.list_conversations()
        assert (listed["slug"], listed["title"], listed["messages"]) == ("standup", "Standup", 5)
        first = memex.get_conversation("standup", limit=2)
        assert [m["content"] for m in first["messages"]] == ["point 1", "point 2"]
        assert first["next_offset"] == 2 and list(first["summaries"]) == [1]
        last = memex.get_conversation("standup", limit=2, offset=4, level=2)
        assert [m["seq"] for m in last["messages"]] == [5] and last["next_offset"] is None
        assert last["summaries"] == {}
        assert globex.list_conversations() == []
        with pytest.raises(NotFound, match="unknown conversation: standup"):
            globex.get_conversation("standup")
        with pytest.raises(InvalidInput, match="limit must be between 1 and 500"):
            memex.list_conversations(limit=0)
        with pytest.raises(InvalidInput, match="offset must be at least 0"):
            memex.get_conversation("standup", offset=-1)


def test_a_write_can_embed_its_own_chunks(db: str, tenants: dict[str, str]) -> None:
    with Client(db + APP, tenant="acme", embed_on_write=True) as memex:
        memex.upsert_document("kb/now.md", "The office plants are watered on Fridays.")
        memex.upsert_document("kb/later.md", "The coffee machine is descaled monthly.",
                              embed=False)  # fmt: skip
        memex.add_messages("chat", [{"role": "user", "content": "Lunch is at noon."}])
        found = {r.uri or r.conversation for r in memex.search("plants coffee lunch", k=5,
                                                               mode="vector")}  # fmt: skip
    assert found == {"kb/now.md", "chat"}
