"""`memex mcp`: memex as a Model Context Protocol server, for agents (docs/mcp.md).

Built on the official `mcp` SDK (`MCPServer`, FastMCP's successor). Every tool goes through
memex.AsyncClient, so the SQL is the client's and the tenant is set inside each call's
transaction. The tenant is fixed for a stdio process (`--tenant`); over streamable HTTP it is
the one a bearer token names (memex.tenant_for_token: tokens are stored hashed, managed with
`memex token`). No tool takes a tenant argument: an agent can name no other tenant.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from mcp.server.auth.middleware.auth_context import get_access_token
from mcp.server.auth.provider import AccessToken
from mcp.server.auth.settings import AuthSettings
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from pydantic import AnyHttpUrl, Field

from memex import __version__
from memex.client import AsyncClient, MemexClientError
from memex.client.queries import SMALL_WRITE_CHARS
from memex.errors import MemexError

INSTRUCTIONS = (
    "memex is this user's long-term memory: documents, notes and past conversations, searched "
    "by meaning and by words. `search` or `context` before answering from memory; `remember` "
    "what should outlive this conversation; `add_messages` to log a conversation's turns."
)
Mode = Literal["hybrid", "vector", "text"]


@dataclass
class Tenants:
    """Where each call's client comes from: the stdio process's one tenant, or the tenant of
    the HTTP request's bearer token, all sharing one pool."""

    base: AsyncClient
    by_tenant: dict[str, AsyncClient] = field(default_factory=dict)
    fixed: bool = True

    async def current(self) -> AsyncClient:
        if self.fixed:
            return self.base
        token = get_access_token()
        if token is None:  # the SDK's bearer middleware answered 401 before any tool ran
            raise ToolError("no bearer token")
        tenant = token.client_id
        if tenant not in self.by_tenant:
            self.by_tenant[tenant] = await self.base.for_tenant(tenant)
        return self.by_tenant[tenant]


class TokenTenants:
    """The SDK's TokenVerifier over memex.tenant_for_token: a valid token's tenant id becomes
    the AccessToken's client_id; an unknown, revoked or expired one is refused (HTTP 401)."""

    def __init__(self, tenants: Tenants):
        self.tenants = tenants

    async def verify_token(self, token: str) -> AccessToken | None:
        async with self.tenants.base.pool.connection() as conn:
            row = await (
                await conn.execute("select memex.tenant_for_token(%s)::text", (token,))
            ).fetchone()
            await conn.commit()
        if not row or row[0] is None:
            return None
        return AccessToken(token=hashlib.sha256(token.encode()).hexdigest(), client_id=str(row[0]),
                           scopes=["memex"])  # fmt: skip


class MemexMCP(MCPServer):
    """An MCPServer that refuses unknown tool arguments (the SDK ignores them) and answers a
    memex error with its message and hint, never a traceback."""

    async def call_tool(self, name: str, arguments: dict[str, Any], context: Any = None) -> Any:
        tool = self._tool_manager.get_tool(name)
        if tool is not None:
            unknown = sorted(set(arguments) - set(tool.parameters.get("properties", {})))
            if unknown:
                known = ", ".join(sorted(tool.parameters["properties"]))
                said = ", ".join(unknown)
                raise ToolError(f"unknown argument(s) for {name}: {said}; known: {known}")
        try:
            return await super().call_tool(name, arguments, context)
        except ToolError as exc:
            cause = exc.__cause__
            if isinstance(cause, MemexClientError):
                raise ToolError(_said(cause)) from None
            raise


def _said(error: MemexClientError) -> str:
    hint = f" (hint: {error.hint})" if error.hint else ""
    return f"[{error.sqlstate or 'memex'}] {error.message}{hint}"


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _memory_uri(text: str) -> str:
    """A note's default uri: stable for the same text, so remembering it twice stores it once."""
    return "memory/" + hashlib.sha256(text.encode()).hexdigest()[:16]


def _searchable(embedded: bool) -> str:
    if embedded:
        return "now, by words and by meaning"
    return "by words now; by meaning once embedded (memex worker or memex embed)"


def build(
    tenants: Tenants,
    auth: tuple[AuthSettings, TokenTenants] | None = None,
    embed_max_chars: int = SMALL_WRITE_CHARS,
) -> MemexMCP:
    """The server and its tools; `auth` for HTTP (settings and the token verifier). A write of
    at most `embed_max_chars` characters embeds its chunks in its own transaction (embed on
    write); a bigger one is left to the worker (docs/mcp.md)."""
    server = MemexMCP(
        name="memex", version=__version__, instructions=INSTRUCTIONS,
        auth=auth[0] if auth else None, token_verifier=auth[1] if auth else None,
        log_level="WARNING",
    )  # fmt: skip

    async def client() -> AsyncClient:
        return await tenants.current()

    async def calling(action: Any) -> Any:
        try:
            return await action
        except MemexClientError as exc:
            raise ToolError(_said(exc)) from None

    @server.tool()
    async def search(
        query: Annotated[str, Field(description="what to look for, in words")],
        k: Annotated[int, Field(ge=1, le=100, description="how many results")] = 8,
        mode: Annotated[
            Mode, Field(description="hybrid: meaning and words; vector; text")
        ] = "hybrid",
        filters: Annotated[
            dict[str, Any] | None,
            Field(
                description="rag_search filters: source_kind, conversation, folder, "
                "document_uri_prefix, created_after, created_before, metadata, ..."
            ),
        ] = None,
        max_per_document: Annotated[int | None, Field(ge=1, description="cap per source")] = None,
        recency: Annotated[
            str | None,
            Field(
                description="prefer recent memories: a half-life such as '30 days' (a memory "
                "that old counts half); default none"
            ),
        ] = None,
    ) -> list[dict[str, Any]]:
        """Search this memory: passages of documents, messages and summaries, best first, each
        with its score, source, title, date and a citation (a message: its speaker and time)."""
        options: dict[str, Any] = {}
        if max_per_document is not None:
            options["max_per_document"] = max_per_document
        if recency is not None:
            options["recency"] = recency
        rows = await calling((await client()).search(query, k, mode, filters, **options))
        return [row.as_dict() for row in rows]

    @server.tool()
    async def context(
        query: Annotated[str, Field(description="the question the context is for")],
        token_budget: Annotated[int, Field(ge=50, le=32000, description="tokens at most")] = 2000,
    ) -> str:
        """The best passages for a question as one block with numbered citations (who said a
        message and when), within a token budget: ready to put in a prompt."""
        return str(await calling((await client()).context(query, token_budget)))

    @server.tool()
    async def remember(
        text: Annotated[str, Field(description="the note or document to keep")],
        uri: Annotated[
            str | None,
            Field(
                description="its key; the same uri replaces it (default: one made from the text)"
            ),
        ] = None,
        title: str | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Keep a note or a document in memory (searchable by its words at once, by meaning
        once embedded). The same uri again updates it."""
        if not text.strip():
            raise ToolError("text is empty: there is nothing to remember")
        uri = uri or _memory_uri(text)
        embed = len(text) <= embed_max_chars
        memex = await client()
        stored = await calling(memex.upsert_document(uri, text, title, metadata, embed=embed))
        return {"uri": uri, "id": stored.id, "action": stored.action,
                "searchable": _searchable(embed)}  # fmt: skip

    @server.tool()
    async def add_messages(
        conversation: Annotated[
            str, Field(description="the conversation's slug (created when new)")
        ],
        messages: Annotated[
            list[dict[str, Any]],
            Field(
                description="[{role: user|assistant|system|tool, content, name?, ts? (ISO 8601)}], "
                "appended in order"
            ),
        ],
        title: str | None = None,
    ) -> dict[str, Any]:
        """Append messages to a conversation, creating it when new."""
        size = sum(len(str(message.get("content", ""))) for message in messages)
        embed = size <= embed_max_chars
        memex = await client()
        stored = await calling(memex.add_messages(conversation, messages, title, embed=embed))
        return {"conversation": conversation, "inserted": stored.inserted,
                "updated": stored.updated, "unchanged": stored.unchanged,
                "searchable": _searchable(embed)}  # fmt: skip

    @server.tool()
    async def forget(
        uri: Annotated[str | None, Field(description="a document's uri")] = None,
        conversation: Annotated[str | None, Field(description="a conversation's slug")] = None,
    ) -> dict[str, Any]:
        """Delete a document (by uri) or a conversation (by slug) with everything in it."""
        if (uri is None) == (conversation is None):
            raise ToolError("forget takes a uri or a conversation (one of them)")
        memex = await client()
        if uri is not None:
            return {"uri": uri, "deleted": await calling(memex.delete_document(uri))}
        deleted = await calling(memex.delete_conversation(str(conversation)))
        return {"conversation": conversation, "deleted": deleted}

    @server.tool()
    async def list_conversations(
        limit: Annotated[int, Field(ge=1, le=500)] = 20,
        offset: Annotated[int, Field(ge=0)] = 0,
    ) -> list[dict[str, Any]]:
        """The conversations in memory, last written first: slug, title, date, messages."""
        return list(await calling((await client()).list_conversations(limit, offset)))

    @server.tool()
    async def get_conversation(
        conversation: Annotated[str, Field(description="the conversation's slug")],
        limit: Annotated[int, Field(ge=1, le=500, description="messages per page")] = 100,
        offset: Annotated[int, Field(ge=0)] = 0,
    ) -> dict[str, Any]:
        """A conversation's messages (a page, in order: next_offset for the next one) and its
        summaries by level."""
        return dict(await calling((await client()).get_conversation(conversation, limit, offset)))

    @server.resource("memex://conversations/{slug}", mime_type="application/json")
    async def conversation_messages(slug: str) -> str:
        """A conversation's messages, in order."""
        found = await calling((await client()).get_conversation(slug, limit=500))
        return json.dumps(found["messages"], ensure_ascii=False, default=str)

    @server.resource("memex://conversations/{slug}/summaries/{level}", mime_type="application/json")
    async def conversation_summaries(slug: str, level: str) -> str:
        """A conversation's summaries of one level (artefact v2)."""
        if not level.isdigit():
            raise ToolError(f"level must be a number, not {level!r}")
        found = await calling((await client()).get_conversation(slug, limit=1, level=int(level)))
        return json.dumps(found["summaries"].get(int(level), []), ensure_ascii=False, default=str)

    for tool in server._tool_manager.list_tools():  # the schemas say what call_tool enforces
        tool.parameters["additionalProperties"] = False
    return server


@asynccontextmanager
async def _tenants(dsn: str, tenant: str | None) -> AsyncIterator[Tenants]:
    """One pool for the server. stdio: its tenant checked at start (an unknown one stops the
    server with its error); HTTP: each token's tenant is checked when first used."""
    base = AsyncClient(dsn, tenant=tenant or "(each token's)")
    if tenant:
        await base.open()
    else:
        await base.pool.open()
        await _refuse_rls_bypass(base)
    try:
        yield Tenants(base, fixed=tenant is not None)
    finally:
        await base.pool.close()


async def _refuse_rls_bypass(base: AsyncClient) -> None:
    """A server for many tenants connects as a role row-level security binds (memex_app):
    every query names its tenant, and RLS stays the second wall."""
    async with base.pool.connection() as conn:
        row = await (
            await conn.execute(
                "select current_user::text, rolsuper or rolbypassrls from pg_catalog.pg_roles"
                " where rolname = current_user"
            )
        ).fetchone()
    if row and row[1]:
        await base.pool.close()
        raise MemexError(
            f"memex mcp --http connects as {row[0]}, which bypasses row-level security; "
            "connect as memex_app (add ?options=-c%20role%3Dmemex_app to the DSN, or use "
            "`memex dev dsn --role app`)"
        )


def serve_stdio(dsn: str, tenant: str, embed_max_chars: int = SMALL_WRITE_CHARS) -> None:
    import anyio

    async def run() -> None:
        async with _tenants(dsn, tenant) as tenants:
            await build(tenants, None, embed_max_chars).run_stdio_async()

    anyio.run(run)


def serve_http(dsn: str, host: str, port: int, embed_max_chars: int = SMALL_WRITE_CHARS) -> None:
    import anyio

    async def run() -> None:
        async with _tenants(dsn, None) as tenants:
            url = f"http://{host}:{port}"
            settings = AuthSettings(
                issuer_url=AnyHttpUrl(url),
                resource_server_url=AnyHttpUrl(url + "/mcp"),
                required_scopes=["memex"],
                # memex tokens are its own opaque ones, valid for this server only
                validate_token_resource=False,
            )
            server = build(tenants, (settings, TokenTenants(tenants)), embed_max_chars)
            if not _loopback(host):
                print(f"memex mcp: listening on {host} over plain HTTP: bearer tokens cross the "
                      "network in clear; put a TLS proxy in front", file=sys.stderr)  # fmt: skip
            print(f"memex mcp: serving {url}/mcp (bearer tokens: memex token create)",
                  file=sys.stderr, flush=True)  # fmt: skip
            await server.run_streamable_http_async(host=host, port=port)

    anyio.run(run)
