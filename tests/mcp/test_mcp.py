"""`memex mcp` driven by the official MCP SDK's client, as an agent would: over stdio (one
tenant a process) and over streamable HTTP on loopback (a tenant per bearer token), against
the real database. Each server is a real process, stopped at the end of its test."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx2
import psycopg
import pytest
from mcp.client.session import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client

from tests.db.helpers import make_tenants
from tests.db.test_pooler import _free_port

APP = "?options=-c%20role%3Dmemex_app"
MEMEX = str(Path(sys.executable).parent / "memex")
TOOLS = {"search", "context", "remember", "add_messages", "forget", "list_conversations",
         "get_conversation"}  # fmt: skip
CALL_TIMEOUT = 60


@pytest.fixture
def tenants(db: str) -> dict[str, str]:
    with psycopg.connect(db, autocommit=True) as conn:
        return make_tenants(conn, "acme", "globex")


@asynccontextmanager
async def stdio_session(dsn: str, tenant: str, *options: str) -> AsyncIterator[ClientSession]:
    arguments = ["mcp", "--tenant", tenant, "--dsn", dsn, *options]
    params = StdioServerParameters(command=MEMEX, args=arguments, env={**os.environ})
    with anyio.fail_after(CALL_TIMEOUT):
        async with stdio_client(params) as (read, write), ClientSession(read, write) as session:
            await session.initialize()
            yield session


def _said(result: Any) -> str:
    return "\n".join(part.text for part in result.content if hasattr(part, "text"))


def _content(result: Any) -> Any:
    assert not result.is_error, _said(result)
    found = result.structured_content
    return found["result"] if isinstance(found, dict) and set(found) == {"result"} else found


def _counts(db: str) -> tuple[int, int, int]:
    with psycopg.connect(db) as su:
        row = su.execute("select (select count(*) from memex.documents),"
                         " (select count(*) from memex.conversations),"
                         " (select count(*) from memex.messages)").fetchone()  # fmt: skip
    assert row is not None
    return (int(row[0]), int(row[1]), int(row[2]))


def test_an_agent_lists_the_tools_and_uses_each_over_stdio(
    db: str, tenants: dict[str, str]
) -> None:
    async def agent() -> None:
        async with stdio_session(db + APP, "acme") as memex:
            listed = (await memex.list_tools()).tools
            assert {tool.name for tool in listed} == TOOLS
            for tool in listed:
                assert tool.description, tool.name
                assert tool.input_schema["additionalProperties"] is False, tool.name
            kept = _content(
                await memex.call_tool(
                    "remember",
                    {"text": "The VPN certificate is renewed every March.", "title": "VPN"},
                )
            )
            assert kept["action"] == "inserted" and kept["uri"].startswith("memory/")
            again = _content(
                await memex.call_tool(
                    "remember",
                    {"text": "The VPN certificate is renewed every March.", "title": "VPN"},
                )
            )
            assert again == {**kept, "action": "unchanged"}, "the same note is kept once"
            for turn in ("I moved the backups to the cold bucket.", "Noted: cold bucket."):
                added = _content(await memex.call_tool("add_messages", {
                    "conversation": "ops-chat",
                    "messages": [{"role": "user", "content": turn, "name": "Caroline",
                                  "ts": "2025-06-03T08:00:00Z"}]}))  # fmt: skip
                assert added["inserted"] == 1, "one message at a time appends"
            hits = _content(
                await memex.call_tool(
                    "search", {"query": "VPN certificate", "k": 3, "mode": "text"}
                )
            )
            assert hits[0]["uri"] == kept["uri"] and hits[0]["title"] == "VPN"
            assert hits[0]["citation"] and "score" in hits[0]
            assert kept["searchable"] == "now, by words and by meaning"
            meaning = _content(
                await memex.call_tool(
                    "search", {"query": "when does the vpn cert expire", "mode": "vector", "k": 1}
                )
            )
            assert [hit["uri"] for hit in meaning] == [kept["uri"]], "embedded as it was written"
            recently = {"query": "cold bucket", "mode": "text", "recency": "30 days"}
            recent = _content(await memex.call_tool("search", recently))
            assert recent and recent[0]["speaker"] == "Caroline (user)"
            block = _content(
                await memex.call_tool(
                    "context", {"query": "where are the backups", "token_budget": 300}
                )
            )
            assert "cold bucket" in block and "2025-06-03" in block
            (chat,) = _content(await memex.call_tool("list_conversations", {}))
            assert chat["slug"] == "ops-chat" and chat["messages"] == 2
            page = _content(
                await memex.call_tool("get_conversation", {"conversation": "ops-chat", "limit": 1})
            )
            assert [m["seq"] for m in page["messages"]] == [1] and page["next_offset"] == 1
            templates = (await memex.list_resource_templates()).resource_templates
            assert {t.uri_template for t in templates} == {
                "memex://conversations/{slug}",
                "memex://conversations/{slug}/summaries/{level}",
            }
            read = await memex.read_resource("memex://conversations/ops-chat")
            turns = json.loads(read.contents[0].text)  # type: ignore[union-attr]
            assert [m["content"] for m in turns][1] == "Noted: cold bucket."
            gone = _content(await memex.call_tool("forget", {"conversation": "ops-chat"}))
            assert gone["deleted"] is True
            gone = _content(await memex.call_tool("forget", {"uri": kept["uri"]}))
            assert gone["deleted"] is True

    anyio.run(agent)
    assert _counts(db) == (0, 0, 0)


def test_a_write_over_the_size_for_embedding_at_once_is_left_to_the_worker(
    db: str, tenants: dict[str, str]
) -> None:
    async def agent() -> None:
        async with stdio_session(db + APP, "acme", "--embed-max-chars", "10") as memex:
            kept = _content(await memex.call_tool("remember", {"text": "The VPN cert renews."}))
            assert kept["searchable"].startswith("by words now; by meaning once embedded")
            assert (
                _content(await memex.call_tool("search", {"query": "vpn cert", "mode": "vector"}))
                == []
            )
            assert (
                len(
                    _content(await memex.call_tool("search", {"query": "vpn cert", "mode": "text"}))
                )
                == 1
            )

    anyio.run(agent)
    with psycopg.connect(db) as su:
        pending = su.execute("select count(*) from memex.chunks c where not exists"
                             " (select 1 from memex.embeddings e"
                             " where e.tenant_id = c.tenant_id and e.chunk_id = c.id)"
                             ).fetchone()  # fmt: skip
    assert pending == (1,)


@pytest.mark.parametrize(
    ("tool", "arguments", "said"),
    [
        ("search", {"query": "vpn", "bogus": 1}, "unknown argument(s) for search: bogus"),
        ("search", {"query": "x" * 100_000}, "[54000]"),
        ("search", {"query": "vpn", "k": 0}, "k"),
        ("search", {"query": "vpn", "mode": "fuzzy"}, "mode"),
        ("search", {"query": "vpn", "filters": {"colour": "red"}}, "[22023]"),
        ("search", {"query": "vpn", "recency": "0 days"}, "recency (a half-life) must be"),
        ("remember", {"text": " \n"}, "text is empty"),
        ("add_messages", {"conversation": "c", "messages": [{"role": "robot", "content": "x"}]},
         "role"),
        ("add_messages", {"conversation": "c", "messages": [{"role": "user"}]}, "content"),
        ("forget", {}, "a uri or a conversation"),
        ("get_conversation", {"conversation": "nope"}, "[P0002] unknown conversation: nope"),
    ],
)  # fmt: skip
def test_a_bad_call_is_an_error_that_says_why_and_changes_nothing(
    db: str, tenants: dict[str, str], tool: str, arguments: dict[str, Any], said: str
) -> None:
    before = _counts(db)

    async def agent() -> None:
        async with stdio_session(db + APP, "acme") as memex:
            result = await memex.call_tool(tool, arguments)
            assert result.is_error, result
            assert said in _said(result)
            assert "Traceback" not in _said(result)

    anyio.run(agent)
    assert _counts(db) == before


def test_an_unknown_tenant_stops_the_stdio_server_saying_so(
    db: str, tenants: dict[str, str]
) -> None:
    done = subprocess.run([MEMEX, "mcp", "--tenant", "acmee", "--dsn", db + APP], input="",
                          capture_output=True, text=True, timeout=CALL_TIMEOUT)  # fmt: skip
    assert done.returncode == 1
    assert "unknown tenant 'acmee'" in done.stderr and "Traceback" not in done.stderr


@pytest.fixture
def http_server(db: str, tenants: dict[str, str]) -> Iterator[str]:
    """`memex mcp --http` on a free loopback port, as memex_app; its URL."""
    port = _free_port()
    command = [MEMEX, "mcp", "--http", "--port", str(port), "--dsn", db + APP]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}/mcp"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx2.get(url, timeout=2)
                break
            except httpx2.TransportError:
                if process.poll() is not None or time.monotonic() > deadline:
                    process.kill()
                    pytest.fail(f"memex mcp --http did not start: {process.communicate()[0]}")
                time.sleep(0.2)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _token(db: str, tenant: str, expires: str | None = None) -> tuple[str, str]:
    """(id, token) made by the CLI as an operator would."""
    done = subprocess.run([MEMEX, "token", "create", "--tenant", tenant, "--label", "test",
                           *(["--expires", expires] if expires else []), "--dsn", db],
                          capture_output=True, text=True, timeout=CALL_TIMEOUT)  # fmt: skip
    assert done.returncode == 0, done.stderr
    token = done.stdout.splitlines()[0]
    with psycopg.connect(db) as su:
        row = su.execute("select id::text from memex.api_tokens order by created_at desc limit 1"
                         ).fetchone()  # fmt: skip
    assert row is not None and token.startswith("mx_")
    return row[0], token


async def _call(url: str, token: str, tool: str, arguments: dict[str, Any]) -> Any:
    with anyio.fail_after(CALL_TIMEOUT):
        async with (
            httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}) as http,
            streamable_http_client(url, http_client=http) as streams,
            ClientSession(streams[0], streams[1]) as session,
        ):
            await session.initialize()
            return _content(await session.call_tool(tool, arguments))


def _status(url: str, token: str | None) -> int:
    """The HTTP status of an MCP initialize request carrying this bearer token (or none)."""
    hello = {"jsonrpc": "2.0", "id": 1, "method": "initialize",
             "params": {"protocolVersion": "2025-06-18", "capabilities": {},
                        "clientInfo": {"name": "test", "version": "0"}}}  # fmt: skip
    headers = {"Accept": "application/json, text/event-stream"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    answer = httpx2.post(url, json=hello, timeout=10, headers=headers)
    return answer.status_code


def test_over_http_each_token_acts_for_its_own_tenant_only(db: str, http_server: str) -> None:
    _, acme = _token(db, "acme")
    _, globex = _token(db, "globex")

    async def agents() -> None:
        await _call(http_server, acme, "remember",
                    {"text": "acme's quarterly numbers are up", "uri": "kb/q3.md"})  # fmt: skip
        seen = await _call(http_server, acme, "search", {"query": "quarterly", "mode": "text"})
        assert [hit["uri"] for hit in seen] == ["kb/q3.md"]
        assert await _call(http_server, globex, "search",
                           {"query": "quarterly", "mode": "text"}) == []  # fmt: skip
        gone = await _call(http_server, globex, "forget", {"uri": "kb/q3.md"})
        assert gone["deleted"] is False, "globex cannot delete acme's document"

    anyio.run(agents)
    with psycopg.connect(db) as su:
        owners = su.execute("select t.name from memex.documents d"
                            " join memex.tenants t on t.id = d.tenant_id").fetchall()  # fmt: skip
    assert owners == [("acme",)]


def test_over_http_a_wrong_revoked_or_expired_token_is_refused(db: str, http_server: str) -> None:
    acme_id, acme = _token(db, "acme", expires="30d")
    assert _status(http_server, acme) == 200
    assert _status(http_server, acme + "x") == 401
    assert _status(http_server, None) == 401
    done = subprocess.run([MEMEX, "token", "revoke", acme_id, "--dsn", db],
                          capture_output=True, text=True, timeout=CALL_TIMEOUT)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert _status(http_server, acme) == 401, "revoked: refused at once"
    globex_id, globex = _token(db, "globex", expires="1h")
    assert _status(http_server, globex) == 200
    with psycopg.connect(db) as su:
        su.execute("update memex.api_tokens set expires_at = now() - interval '1 s'"
                   " where id = %s", (globex_id,))  # fmt: skip
    assert _status(http_server, globex) == 401, "expired"


def test_http_refuses_a_login_that_bypasses_row_level_security(db: str) -> None:
    done = subprocess.run([MEMEX, "mcp", "--http", "--port", str(_free_port()), "--dsn", db],
                          capture_output=True, text=True, timeout=CALL_TIMEOUT)  # fmt: skip
    assert done.returncode == 1
    assert "bypasses row-level security" in done.stderr and "memex_app" in done.stderr


def test_tokens_are_stored_hashed_listed_and_deleted_with_their_tenant(
    db: str, tenants: dict[str, str]
) -> None:
    token_id, token = _token(db, "globex", expires="12h")
    listed = subprocess.run([MEMEX, "token", "list", "--json", "--dsn", db],
                            capture_output=True, text=True, timeout=CALL_TIMEOUT)  # fmt: skip
    (row,) = json.loads(listed.stdout)
    assert (row["id"], row["tenant"], row["label"], row["state"]) == (
        token_id,
        "globex",
        "test",
        "live",
    )
    assert token not in listed.stdout
    with psycopg.connect(db, autocommit=True) as su:
        stored = su.execute("select token_hash = sha256(convert_to(%s, 'UTF8'))"
                            " from memex.api_tokens", (token,)).fetchone()  # fmt: skip
        assert stored == (True,)
        su.execute("set role memex_app")
        assert su.execute("select memex.tenant_for_token(%s)::text", (token,)).fetchone() == (
            tenants["globex"],
        )
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            su.execute("select * from memex.api_tokens")
        su.execute("reset role")
        su.execute("call memex.delete_tenant('globex', confirm => 'globex')")
        assert su.execute("select count(*) from memex.api_tokens").fetchone() == (0,)


@pytest.mark.parametrize(
    ("arguments", "said"),
    [
        (["create", "--tenant", "nobody"], "unknown tenant: nobody"),
        (["create", "--tenant", "acme", "--expires=-1d"], "expires_in must be positive"),
        (["create", "--tenant", "acme", "--expires", "soon"], "invalid input syntax"),
        (["revoke", "00000000-0000-0000-0000-000000000000"], "no live token"),
    ],
)
def test_token_mistakes_say_what_is_wrong(
    db: str, tenants: dict[str, str], arguments: list[str], said: str
) -> None:
    done = subprocess.run([MEMEX, "token", *arguments, "--dsn", db],
                          capture_output=True, text=True, timeout=CALL_TIMEOUT)  # fmt: skip
    assert done.returncode == 1, done
    assert said in done.stderr
    with psycopg.connect(db) as su:
        assert su.execute("select count(*) from memex.api_tokens").fetchone() == (0,)
