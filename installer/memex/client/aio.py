"""`memex.AsyncClient`: memex.Client for asyncio, the same methods awaited (memex.client.sync
has the rules: a transaction per call, the tenant set inside it, one pipeline).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from memex.client import queries
from memex.client.errors import NotFound, translate
from memex.client.results import MessagesStored, SearchResult, Stored

log = logging.getLogger("memex")
Conn = psycopg.AsyncConnection[Any]


def _log_notice(diag: psycopg.errors.Diagnostic) -> None:
    """The database's NOTICEs (chunks not embedded yet, stop words only) on the memex logger."""
    log.info("%s", diag.message_primary)


async def _reset(conn: Conn) -> None:
    await conn.execute(queries.RESET)
    await conn.commit()


class AsyncClient:
    """memex for one tenant, async: `async with AsyncClient(tenant="acme") as memex:`. The
    pool opens and the tenant is checked on entering (or `await open()`): an unknown one
    raises TenantNotFound naming the nearest the role can see."""

    def __init__(self, dsn: str | None = None, *, tenant: str, min_size: int = 1,
                 max_size: int = 4, timeout: float = 30.0,
                 embed_on_write: bool = False,
                 on_notice: Callable[[psycopg.errors.Diagnostic], None] = _log_notice
                 ):  # fmt: skip
        from memex.dsn import resolve_dsn

        self.dsn = resolve_dsn(dsn)
        self.tenant = tenant
        self.embed_on_write = embed_on_write

        async def configure(conn: Conn) -> None:  # the database's NOTICEs: the log by default
            conn.add_notice_handler(on_notice)

        self.pool = AsyncConnectionPool(self.dsn, min_size=min_size, max_size=max_size,
                                        timeout=timeout, configure=configure, reset=_reset,
                                        kwargs={"prepare_threshold": None}, open=False,
                                        name="memex")  # fmt: skip
        self._owns_pool = True

    async def open(self) -> AsyncClient:
        if self._owns_pool:
            await self.pool.open()
        try:
            await self._check_tenant()
        except BaseException:
            await self.close()
            raise
        return self

    async def for_tenant(self, tenant: str) -> AsyncClient:
        """A client of another tenant sharing this one's pool (the MCP server over HTTP serves
        every token's tenant from one pool); closing it leaves the pool open."""
        other = object.__new__(AsyncClient)
        other.dsn, other.tenant, other.pool, other._owns_pool = self.dsn, tenant, self.pool, False
        return await other.open()

    async def __aenter__(self) -> AsyncClient:
        return await self.open()

    async def __aexit__(self, *_exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._owns_pool:
            await self.pool.close()

    async def _check_tenant(self) -> None:
        async with self.pool.connection() as conn:
            try:
                async with conn.transaction():
                    await conn.execute(queries.SET_TENANT, (self.tenant,))
                return
            except psycopg.errors.NoDataFound:
                pass
            except psycopg.Error as exc:
                raise translate(exc) from None
            async with conn.transaction():
                names = [
                    str(r[0]) for r in await (await conn.execute(queries.TENANT_NAMES)).fetchall()
                ]
        raise queries.tenant_not_found(self.tenant, names)

    @asynccontextmanager
    async def _call(self, embed: bool = False) -> AsyncIterator[Conn]:
        """A pooled connection in a transaction of the client's tenant (embedding what it
        writes when `embed`); errors translated."""
        try:
            async with self.pool.connection() as conn, conn.pipeline(), conn.transaction():
                await conn.execute(queries.SET_TENANT, (self.tenant,))
                if embed:
                    await conn.execute(queries.EMBED_ON_WRITE)
                yield conn
        except psycopg.Error as exc:
            raise translate(exc) from None

    async def _one(self, statement: Any, params: Any, embed: bool = False) -> Any:
        async with self._call(embed) as conn:
            row = await (await conn.execute(statement, params)).fetchone()
        return row

    def _embeds(self, embed: bool | None) -> bool:
        return self.embed_on_write if embed is None else embed

    # -- search ----------------------------------------------------------------------------
    async def search(
        self,
        query: str,
        k: int = 8,
        mode: str = "hybrid",
        filters: dict[str, Any] | None = None,
        **options: Any,
    ) -> list[SearchResult]:
        """memex.rag_search: the best k chunks for the query (options: docs/search.md)."""
        statement, params = queries.search(query, k, mode, filters, options)
        async with self._call() as conn:
            cur = conn.cursor(row_factory=dict_row)
            rows = await (await cur.execute(statement, params)).fetchall()
        return [SearchResult.from_row(r) for r in rows]

    async def context(self, query: str, token_budget: int = 2000,
                filters: dict[str, Any] | None = None, **options: Any) -> str:  # fmt: skip
        """memex.compose_context: the best passages as one cited block within the budget."""
        statement, params = queries.context(query, token_budget, filters, options)
        row = await self._one(statement, params)
        return str(row[0]) if row and row[0] is not None else ""

    # -- documents -------------------------------------------------------------------------
    async def upsert_document(self, uri: str, content: str, title: str | None = None,
                        metadata: dict[str, Any] | None = None, folder: str | None = None,
                        embed: bool | None = None) -> Stored:  # fmt: skip
        """Creates or updates a document by uri; `embed` (default: the client's
        embed_on_write) embeds its chunks in the same transaction."""
        row = await self._one(queries.UPSERT_DOCUMENT, (uri, content, title, Jsonb(metadata or {}),
                                                  folder), self._embeds(embed))  # fmt: skip
        return Stored(str(row[0]), str(row[1]))

    async def delete_document(self, uri: str) -> bool:
        row = await self._one(queries.DELETE_DOCUMENT, (uri,))
        return bool(row and row[0])

    # -- conversations ---------------------------------------------------------------------
    async def upsert_conversation(self, slug: str, title: str | None = None,
                            created_date: str | None = None,
                            metadata: dict[str, Any] | None = None,
                            system_prompt: str | None = None) -> Stored:  # fmt: skip
        """Creates or updates a conversation; None keeps what is stored."""
        row = await self._one(queries.UPSERT_CONVERSATION, (
            slug, title, created_date, None if metadata is None else Jsonb(metadata),
            system_prompt))  # fmt: skip
        return Stored(str(row[0]), str(row[1]))

    async def add_messages(self, slug: str, messages: Sequence[dict[str, Any]],
                     title: str | None = None,
                     embed: bool | None = None) -> MessagesStored:  # fmt: skip
        """Appends messages ({role, content, ts?, name?, metadata?}; a `seq` updates that
        message instead) to a conversation, created when new, in one transaction (`embed`:
        as for upsert_document)."""
        async with self._call(self._embeds(embed)) as conn:
            conversation = await (
                await conn.execute(queries.UPSERT_CONVERSATION, (slug, title, None, None, None))
            ).fetchone()
            counts = await (await conn.execute(queries.UPSERT_MESSAGES, (
                slug, queries.messages_payload(list(messages)), False))).fetchone()  # fmt: skip
        assert conversation is not None and counts is not None
        return MessagesStored(str(conversation[0]), *(int(c) for c in counts))

    async def upsert_summaries(self, slug: str, artefact: dict[str, Any],
                               embed: bool | None = None) -> dict[str, int]:  # fmt: skip
        """An artefact v2 document of summaries (docs/artefact-v2.md; `embed`: as for
        upsert_document)."""
        row = await self._one(
            queries.UPSERT_SUMMARIES, (slug, Jsonb(artefact)), self._embeds(embed)
        )
        return {"inserted": int(row[0]), "updated": int(row[1]), "unchanged": int(row[2])}

    async def delete_conversation(self, slug: str) -> bool:
        row = await self._one(queries.DELETE_CONVERSATION, (slug,))
        return bool(row and row[0])

    # -- reading conversations -------------------------------------------------------------
    async def list_conversations(self, limit: int = 20, offset: int = 0) -> list[dict[str, Any]]:
        """The tenant's conversations, last written first: slug, title, date, messages."""
        limit, offset = queries.page(limit, offset)
        async with self._call() as conn:
            cur = conn.cursor(row_factory=dict_row)
            return list(
                await (await cur.execute(queries.LIST_CONVERSATIONS, (limit, offset))).fetchall()
            )

    async def get_conversation(self, slug: str, limit: int = 100, offset: int = 0,
                         level: int | None = None) -> dict[str, Any]:  # fmt: skip
        """A conversation's messages (a page of them, in order) and its summaries by level
        (all, or one level); NotFound when there is no such conversation."""
        limit, offset = queries.page(limit, offset)
        async with self._call() as conn:
            cur = conn.cursor(row_factory=dict_row)
            found = await (await cur.execute(queries.CONVERSATION, (slug,))).fetchone()
            if found is None:
                raise NotFound(f"unknown conversation: {slug}", sqlstate="P0002")
            messages = await (
                await cur.execute(queries.MESSAGES, (found["id"], limit, offset))
            ).fetchall()
            summaries = await (
                await cur.execute(queries.SUMMARIES, (found["id"], level, level))
            ).fetchall()
        return queries.conversation(found, messages, summaries, limit, offset)

    # -- your own SQL ----------------------------------------------------------------------
    async def query(self, statement: Any, params: Any = None) -> list[dict[str, Any]]:
        """Runs a statement in a transaction of the client's tenant (RLS applies: the role's
        rights, this tenant's rows) and returns its rows as dicts (none for a command)."""
        async with self._call() as conn:
            cur = conn.cursor(row_factory=dict_row)
            async with conn.pipeline():  # leaving a nested pipeline syncs: the result is in
                await cur.execute(statement, params)
            return list(await cur.fetchall()) if cur.description else []

    # -- files and embedding ---------------------------------------------------------------
    async def ingest(self, paths: Sequence[str | Path], **options: Any) -> Any:
        """`memex ingest`'s engine over files and directories, into the client's tenant
        (options: uri_prefix, language, root, excludes, follow_links, max_file_mb). Returns
        its IngestReport."""
        import asyncio

        from memex.ingest import ingest

        try:  # the ingest engine is synchronous: it runs in a thread
            return await asyncio.to_thread(ingest, self.dsn, [str(p) for p in paths],
                                           self.tenant, **options)  # fmt: skip
        except psycopg.Error as exc:
            raise translate(exc) from None

    async def embed_pending(self, space: str | None = None, batch_size: int = 64,
                      max_rows: int | None = None) -> None:  # fmt: skip
        """CALL memex.embed_pending (memex_admin): embeds what is pending, every tenant the
        role may list, committing each batch."""
        async with self.pool.connection() as conn:
            await conn.set_autocommit(True)
            try:
                await conn.execute(queries.EMBED_PENDING, (space, batch_size, max_rows))
            except psycopg.Error as exc:
                raise translate(exc) from None
            finally:
                await conn.set_autocommit(False)


__all__ = ["AsyncClient"]
