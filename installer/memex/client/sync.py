"""`memex.Client`: memex from Python, one tenant per client, over a connection pool.

Every call is one transaction that sets the client's tenant inside it (`set_tenant(...,
is_local => true)`), so a pooled connection never carries a tenant from one call to the next
and the client is safe behind PgBouncer in transaction mode. The statements of a call go out
in one pipeline: BEGIN, set_tenant and the query cost one round trip, COMMIT another.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb
from psycopg_pool import ConnectionPool

from memex.client import queries
from memex.client.errors import MemexClientError, NotFound, translate
from memex.client.results import MessagesStored, SearchResult, Stored

log = logging.getLogger("memex")
Conn = psycopg.Connection[Any]


def _log_notice(diag: psycopg.errors.Diagnostic) -> None:
    """The database's NOTICEs (chunks not embedded yet, stop words only) on the memex logger."""
    log.info("%s", diag.message_primary)


def _reset(conn: Conn) -> None:
    conn.execute(queries.RESET)
    conn.commit()


class Client:
    """memex for one tenant: `Client(dsn=None, tenant="acme")`. `dsn` defaults to
    $MEMEX_DSN, else the dev cluster. The tenant is checked at once: an unknown one raises
    TenantNotFound naming the nearest the role can see. Use it as a context manager, or
    `close()` it."""

    def __init__(self, dsn: str | None = None, *, tenant: str, min_size: int = 1,
                 max_size: int = 4, timeout: float = 30.0,
                 embed_on_write: bool = False,
                 on_notice: Callable[[psycopg.errors.Diagnostic], None] = _log_notice
                 ):  # fmt: skip
        from memex.dsn import resolve_dsn

        self.dsn = resolve_dsn(dsn)
        self.tenant = tenant
        self.embed_on_write = embed_on_write

        def configure(conn: Conn) -> None:  # the database's NOTICEs: the log by default
            conn.add_notice_handler(on_notice)

        # No server-side prepared statements: behind PgBouncer in transaction mode the next
        # transaction may run on another server connection, which does not know them.
        self.pool = ConnectionPool(self.dsn, min_size=min_size, max_size=max_size,
                                   timeout=timeout, configure=configure, reset=_reset,
                                   kwargs={"prepare_threshold": None}, open=True,
                                   name="memex")  # fmt: skip
        try:
            self._check_tenant()
        except BaseException:
            self.pool.close()
            raise

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.pool.close()

    def _check_tenant(self) -> None:
        with self.pool.connection() as conn:
            try:
                with conn.transaction():
                    conn.execute(queries.SET_TENANT, (self.tenant,))
                return
            except psycopg.errors.NoDataFound:
                pass
            except psycopg.Error as exc:
                raise translate(exc) from None
            with conn.transaction():
                names = [str(r[0]) for r in conn.execute(queries.TENANT_NAMES)]
        raise queries.tenant_not_found(self.tenant, names)

    @contextmanager
    def _call(self, embed: bool = False) -> Iterator[Conn]:
        """A pooled connection in a transaction of the client's tenant (embedding what it
        writes when `embed`); errors translated."""
        try:
            with self.pool.connection() as conn, conn.pipeline(), conn.transaction():
                conn.execute(queries.SET_TENANT, (self.tenant,))
                if embed:
                    conn.execute(queries.EMBED_ON_WRITE)
                yield conn
        except psycopg.Error as exc:
            raise translate(exc) from None

    def _one(self, statement: Any, params: Any, embed: bool = False) -> Any:
        with self._call(embed) as conn:
            row = conn.execute(statement, params).fetchone()
        return row

    def _embeds(self, embed: bool | None) -> bool:
        return self.embed_on_write if embed is None else embed

    # -- search ----------------------------------------------------------------------------
    def search(
        self,
        query: str,
        k: int = 8,
        mode: str = "hybrid",
        filters: dict[str, Any] | None = None,
        **options: Any,
    ) -> list[SearchResult]:
        """memex.rag_search: the best k chunks for the query (options: docs/search.md)."""
        statement, params = queries.search(query, k, mode, filters, options)
        with self._call() as conn:
            rows = conn.cursor(row_factory=dict_row).execute(statement, params).fetchall()
        return [SearchResult.from_row(r) for r in rows]

    def context(self, query: str, token_budget: int = 2000,
                filters: dict[str, Any] | None = None, **options: Any) -> str:  # fmt: skip
        """memex.compose_context: the best passages as one cited block within the budget."""
        statement, params = queries.context(query, token_budget, filters, options)
        row = self._one(statement, params)
        return str(row[0]) if row and row[0] is not None else ""

    # -- documents -------------------------------------------------------------------------
    def upsert_document(self, uri: str, content: str, title: str | None = None,
                        metadata: dict[str, Any] | None = None, folder: str | None = None,
                        embed: bool | None = None) -> Stored:  # fmt: skip
        """Creates or updates a document by uri; `embed` (default: the client's
        embed_on_write) embeds its chunks in the same transaction."""
        row = self._one(queries.UPSERT_DOCUMENT, (uri, content, title, Jsonb(metadata or {}),
                                                  folder), self._embeds(embed))  # fmt: skip
        return Stored(str(row[0]), str(row[1]))

    def delete_document(self, uri: str) -> bool:
        row = self._one(queries.DELETE_DOCUMENT, (uri,))
        return bool(row and row[0])

    # -- conversations ---------------------------------------------------------------------
    def upsert_conversation(self, slug: str, title: str | None = None,
                            created_date: str | None = None,
                            metadata: dict[str, Any] | None = None,
                            system_prompt: str | None = None) -> Stored:  # fmt: skip
        """Creates or updates a conversation; None keeps what is stored."""
        row = self._one(queries.UPSERT_CONVERSATION, (
            slug, title, created_date, None if metadata is None else Jsonb(metadata),
            system_prompt))  # fmt: skip
        return Stored(str(row[0]), str(row[1]))

    def add_messages(self, slug: str, messages: Sequence[dict[str, Any]],
                     title: str | None = None,
                     embed: bool | None = None) -> MessagesStored:  # fmt: skip
        """Appends messages ({role, content, ts?, name?, metadata?}; a `seq` updates that
        message instead) to a conversation, created when new, in one transaction (`embed`:
        as for upsert_document)."""
        with self._call(self._embeds(embed)) as conn:
            conversation = conn.execute(queries.UPSERT_CONVERSATION,
                                        (slug, title, None, None, None)).fetchone()  # fmt: skip
            counts = conn.execute(queries.UPSERT_MESSAGES, (
                slug, queries.messages_payload(list(messages)), False)).fetchone()  # fmt: skip
        assert conversation is not None and counts is not None
        return MessagesStored(str(conversation[0]), *(int(c) for c in counts))

    def upsert_summaries(self, slug: str, artefact: dict[str, Any],
                               embed: bool | None = None) -> dict[str, int]:  # fmt: skip
        """An artefact v2 document of summaries (docs/artefact-v2.md; `embed`: as for
        upsert_document)."""
        row = self._one(queries.UPSERT_SUMMARIES, (slug, Jsonb(artefact)), self._embeds(embed))
        return {"inserted": int(row[0]), "updated": int(row[1]), "unchanged": int(row[2])}

    def delete_conversation(self, slug: str) -> bool:
        row = self._one(queries.DELETE_CONVERSATION, (slug,))
        return bool(row and row[0])

    # -- reading conversations -------------------------------------------------------------
    def list_conversations(self, limit: int = 20, offset: int = 0) -> list[dict[str, Any]]:
        """The tenant's conversations, last written first: slug, title, date, messages."""
        limit, offset = queries.page(limit, offset)
        with self._call() as conn:
            cur = conn.cursor(row_factory=dict_row)
            return list(cur.execute(queries.LIST_CONVERSATIONS, (limit, offset)).fetchall())

    def get_conversation(self, slug: str, limit: int = 100, offset: int = 0,
                         level: int | None = None) -> dict[str, Any]:  # fmt: skip
        """A conversation's messages (a page of them, in order) and its summaries by level
        (all, or one level); NotFound when there is no such conversation."""
        limit, offset = queries.page(limit, offset)
        with self._call() as conn:
            cur = conn.cursor(row_factory=dict_row)
            found = cur.execute(queries.CONVERSATION, (slug,)).fetchone()
            if found is None:
                raise NotFound(f"unknown conversation: {slug}", sqlstate="P0002")
            messages = cur.execute(queries.MESSAGES, (found["id"], limit, offset)).fetchall()
            summaries = cur.execute(queries.SUMMARIES, (found["id"], level, level)).fetchall()
        return queries.conversation(found, messages, summaries, limit, offset)

    # -- your own SQL ----------------------------------------------------------------------
    def query(self, statement: Any, params: Any = None) -> list[dict[str, Any]]:
        """Runs a statement in a transaction of the client's tenant (RLS applies: the role's
        rights, this tenant's rows) and returns its rows as dicts (none for a command)."""
        with self._call() as conn:
            cur = conn.cursor(row_factory=dict_row)
            with conn.pipeline():  # leaving a nested pipeline syncs: the result is in
                cur.execute(statement, params)
            return list(cur.fetchall()) if cur.description else []

    # -- files and embedding ---------------------------------------------------------------
    def ingest(self, paths: Sequence[str | Path], **options: Any) -> Any:
        """`memex ingest`'s engine over files and directories, into the client's tenant
        (options: uri_prefix, language, root, excludes, follow_links, max_file_mb). Returns
        its IngestReport."""
        from memex.ingest import ingest

        try:
            return ingest(self.dsn, [str(p) for p in paths], self.tenant, **options)
        except psycopg.Error as exc:
            raise translate(exc) from None

    def embed_pending(self, space: str | None = None, batch_size: int = 64,
                      max_rows: int | None = None) -> None:  # fmt: skip
        """CALL memex.embed_pending (memex_admin): embeds what is pending, every tenant the
        role may list, committing each batch."""
        with self.pool.connection() as conn:
            conn.autocommit = True
            try:
                conn.execute(queries.EMBED_PENDING, (space, batch_size, max_rows))
            except psycopg.Error as exc:
                raise translate(exc) from None
            finally:
                conn.autocommit = False


__all__ = ["Client", "MemexClientError"]
