"""The stores people already have, read as memex items: LangChain's PGVector tables, a
LlamaIndex PGVectorStore table, and the legacy schema of the original design notes. Each
source checks first that its tables are what it reads (nothing is written otherwise), then
yields records: an item to store and the vectors the source kept for its text."""

from __future__ import annotations

import json
import re
from collections.abc import Generator
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from memex.errors import MemexError
from memex.ingest.items import Artefact, Conversation, Document, Item

SourceKind = Literal["document", "message", "summary"]
FETCH = 500  # rows a round trip of the server-side cursor


@dataclass(frozen=True)
class Vector:
    """A vector the source stored for one text, and where that text lands in memex:
    ("document", uri), ("message", slug, seq) or ("summary", slug, level, index)."""

    lands: tuple[Any, ...]
    text: str
    vector: str  # pgvector's text form, '[0.1,0.2,...]'
    model: str | None = None


@dataclass
class Record:
    key: str  # the source row, for a failure's report
    item: Item
    vectors: list[Vector] = field(default_factory=list)


class NotThatKind(MemexError):
    """The source is not a store of the kind named: nothing was read or written."""


def _columns(conn: psycopg.Connection[Any], schema: str, table: str) -> set[str] | None:
    rows = conn.execute(
        "select a.attname from pg_catalog.pg_attribute as a"
        " where a.attrelid = to_regclass(format('%%I.%%I', %s::text, %s::text))"
        " and a.attnum > 0 and not a.attisdropped",
        (schema, table),
    ).fetchall()
    return {str(r[0]) for r in rows} if rows else None


def require_table(
    conn: psycopg.Connection[Any], kind: str, schema: str, table: str, needed: set[str]
) -> None:
    found = _columns(conn, schema, table)
    if found is None:
        raise NotThatKind(f"not a {kind} source: there is no table {schema}.{table}")
    missing = sorted(needed - found)
    if missing:
        raise NotThatKind(
            f"not a {kind} source: {schema}.{table} has no column {', '.join(missing)} "
            f"(it has {', '.join(sorted(found))})"
        )


class Source:
    kind: ClassVar[str]

    def __init__(self, conn: psycopg.Connection[Any], schema: str) -> None:
        self.conn, self.schema = conn, schema

    def table(self, name: str) -> sql.Composable:
        return sql.Identifier(self.schema, name)

    def count(self) -> int:
        raise NotImplementedError

    def records(self) -> Generator[Record]:
        raise NotImplementedError

    def _rows(self, query: sql.Composed, params: Any = None) -> Generator[dict[str, Any]]:
        """A server-side cursor: a source of any size is read in FETCH-row steps."""
        with self.conn.transaction(), self.conn.cursor(name="memex_import",
                                                       row_factory=dict_row) as cur:  # fmt: skip
            cur.itersize = FETCH
            cur.execute(query, params)
            yield from cur


class LangChainSource(Source):
    """langchain-postgres's PGVector: langchain_pg_collection and langchain_pg_embedding. A row
    becomes the document `langchain/<collection>/<id>`; its cmetadata its metadata."""

    kind = "langchain"

    def __init__(self, conn: psycopg.Connection[Any], schema: str, collection: str) -> None:
        super().__init__(conn, schema)
        require_table(conn, "LangChain PGVector", schema, "langchain_pg_collection",
                      {"uuid", "name", "cmetadata"})  # fmt: skip
        require_table(conn, "LangChain PGVector", schema, "langchain_pg_embedding",
                      {"id", "collection_id", "embedding", "document", "cmetadata"})  # fmt: skip
        found = conn.execute(
            sql.SQL("select uuid from {} where name = %s").format(
                self.table("langchain_pg_collection")
            ),
            (collection,),
        ).fetchone()
        if found is None:
            names = conn.execute(sql.SQL("select name from {} order by name").format(
                self.table("langchain_pg_collection"))).fetchall()  # fmt: skip
            raise NotThatKind(f"no LangChain collection {collection!r} (there are: "
                              f"{', '.join(str(n[0]) for n in names) or 'none'})")  # fmt: skip
        self.collection, self.collection_id = collection, found[0]

    def count(self) -> int:
        row = self.conn.execute(sql.SQL("select count(*) from {} where collection_id = %s").format(
            self.table("langchain_pg_embedding")), (self.collection_id,)).fetchone()  # fmt: skip
        return int(row[0]) if row else 0

    def records(self) -> Generator[Record]:
        query = sql.SQL(
            "select id::text as id, document, cmetadata, embedding::text as vector"
            " from {} where collection_id = %s order by id"
        ).format(self.table("langchain_pg_embedding"))
        for row in self._rows(query, (self.collection_id,)):
            uri = f"langchain/{self.collection}/{row['id']}"
            text = row["document"] or ""
            metadata = {**_object(row["cmetadata"]),
                        "imported_from": {"kind": "langchain", "collection": self.collection,
                                          "id": row["id"]}}  # fmt: skip
            vectors = [Vector(("document", uri), text, row["vector"])] if row["vector"] else []
            yield Record(row["id"], Document(uri, text, None, metadata, None), vectors)


class LlamaIndexSource(Source):
    """LlamaIndex's PGVectorStore: the table `data_<table_name>` it creates (the name given, or
    with its data_ prefix). A node becomes the document `llamaindex/<table>/<node_id>`; its
    metadata without LlamaIndex's own `_node_content`, `_node_type` keys."""

    kind = "llamaindex"
    NEEDED: ClassVar[set[str]] = {"id", "text", "metadata_", "node_id", "embedding"}

    def __init__(self, conn: psycopg.Connection[Any], schema: str, table: str) -> None:
        super().__init__(conn, schema)
        if _columns(conn, schema, table) is None and _columns(conn, schema, f"data_{table}"):
            table = f"data_{table}"
        require_table(conn, "LlamaIndex PGVectorStore", schema, table, self.NEEDED)
        self.name = table

    def count(self) -> int:
        row = self.conn.execute(
            sql.SQL("select count(*) from {}").format(self.table(self.name))
        ).fetchone()
        return int(row[0]) if row else 0

    def records(self) -> Generator[Record]:
        query = sql.SQL(
            "select id::text as id, node_id, text, metadata_::jsonb as metadata,"
            " embedding::text as vector from {} order by id"
        ).format(self.table(self.name))
        for row in self._rows(query):
            key = str(row["node_id"] or row["id"])
            uri = f"llamaindex/{self.name}/{key}"
            text = row["text"] or ""
            kept = {k: v for k, v in _object(row["metadata"]).items() if not k.startswith("_")}
            metadata = {**kept, "imported_from": {"kind": "llamaindex", "table": self.name,
                                                  "node_id": key}}  # fmt: skip
            vectors = [Vector(("document", uri), text, row["vector"])] if row["vector"] else []
            yield Record(key, Document(uri, text, None, metadata, None), vectors)


class LegacySource(Source):
    """The schema of the original design notes (shared/seeds): conversations(slug, title,
    created_date), messages(conversation_id, role, ts, content), summaries(conversation_id,
    level, covers, content, topics) and embeddings(ref_type, ref_id, model, dim, vector). A
    conversation becomes one, with its messages in id order (seq from 1) and its summaries
    as artefacts by level; `covers` (message ids) become seq numbers."""

    kind = "legacy"

    def __init__(self, conn: psycopg.Connection[Any], schema: str) -> None:
        super().__init__(conn, schema)
        for table, needed in (
            ("conversations", {"id", "slug", "title", "created_date"}),
            ("messages", {"id", "conversation_id", "role", "ts", "content"}),
            ("summaries", {"id", "conversation_id", "level", "covers", "content", "topics"}),
            ("embeddings", {"ref_type", "ref_id", "model", "dim", "vector"}),
        ):
            require_table(conn, "legacy", schema, table, needed)

    def count(self) -> int:
        """Records: a conversation each, and one per level of its summaries."""
        row = self.conn.execute(
            sql.SQL("select (select count(*) from {}) + (select count(*) from (select distinct"
                    " conversation_id, level from {}) as l)").format(
                self.table("conversations"), self.table("summaries"))
        ).fetchone()  # fmt: skip
        return int(row[0]) if row else 0

    def records(self) -> Generator[Record]:
        query = sql.SQL(
            """
            select c.id::text as id, c.slug, c.title, c.created_date::text as created_date,
                   (select coalesce(jsonb_agg(jsonb_build_object(
                        'id', m.id, 'role', m.role, 'ts', m.ts, 'content', m.content,
                        'vectors', (select coalesce(jsonb_agg(jsonb_build_object(
                                        'model', e.model, 'vector', e.vector::text)), '[]')
                                      from {emb} as e
                                     where e.ref_type = 'message' and e.ref_id = m.id))
                        order by m.id), '[]')
                      from {msg} as m where m.conversation_id = c.id) as messages,
                   (select coalesce(jsonb_agg(jsonb_build_object(
                        'level', s.level, 'covers', s.covers, 'content', s.content,
                        'topics', to_jsonb(s.topics),
                        'vectors', (select coalesce(jsonb_agg(jsonb_build_object(
                                        'model', e.model, 'vector', e.vector::text)), '[]')
                                      from {emb} as e
                                     where e.ref_type = 'summary' and e.ref_id = s.id))
                        order by s.level, s.id), '[]')
                      from {summ} as s where s.conversation_id = c.id) as summaries
              from {conv} as c order by c.id
            """
        ).format(conv=self.table("conversations"), msg=self.table("messages"),
                 summ=self.table("summaries"), emb=self.table("embeddings"))  # fmt: skip
        for row in self._rows(query):
            yield from self._conversation(row)

    def _conversation(self, row: dict[str, Any]) -> Generator[Record]:
        slug = str(row["slug"])
        seq_of: dict[int, int] = {}
        messages, vectors = [], []
        for seq, m in enumerate(row["messages"], start=1):
            seq_of[int(m["id"])] = seq
            message: dict[str, Any] = {"seq": seq, "role": m["role"], "content": m["content"] or "",
                                       "metadata": {"source_id": str(m["id"])}}  # fmt: skip
            ts = _timestamp(m["ts"])
            if ts:
                message["ts"] = ts
            elif m["ts"]:
                message["metadata"]["legacy_ts"] = m["ts"]
            messages.append(message)
            vectors += [Vector(("message", slug, seq), message["content"], v["vector"], v["model"])
                        for v in m["vectors"]]  # fmt: skip
        conversation = Conversation(slug, messages, row["title"], row["created_date"],
                                    metadata={"imported_from": {"kind": "legacy",
                                                                "id": row["id"]}})  # fmt: skip
        yield Record(f"conversation {slug}", conversation, vectors)
        levels: dict[int, list[dict[str, Any]]] = {}
        for s in row["summaries"]:
            levels.setdefault(int(s["level"]), []).append(s)
        for level, found in sorted(levels.items()):
            summaries, vectors = [], []
            for index, s in enumerate(found):
                covers = [seq_of.get(c, c) if isinstance(c, int) else str(c)
                          for c in (s["covers"] or [])]  # fmt: skip
                summaries.append({"index": index, "summary": s["content"] or "", "covers": covers,
                                  "tags": list(s["topics"] or [])})  # fmt: skip
                vectors += [Vector(("summary", slug, level, index), s["content"] or "",
                                   v["vector"], v["model"]) for v in s["vectors"]]  # fmt: skip
            artefact = {"version": 2, "slug": slug, "level": level, "summaries": summaries}
            yield Record(f"summaries {slug} L{level}", Artefact(slug, artefact), vectors)


def _object(value: Any) -> dict[str, Any]:
    if isinstance(value, str):
        value = json.loads(value)
    return dict(value) if isinstance(value, dict) else {}


_ISO = re.compile(r"^\d{4}-\d{2}-\d{2}([ T]\d{2}:\d{2}(:\d{2}(\.\d+)?)?)?(Z|[+-]\d{2}(:?\d{2})?)?$")


def _timestamp(text: Any) -> str | None:
    """A legacy `ts` (free text) kept as the message's time when it is ISO 8601."""
    if not isinstance(text, str) or not _ISO.match(text.strip()):
        return None
    return text.strip()


SOURCES = {"langchain": LangChainSource, "llamaindex": LlamaIndexSource, "legacy": LegacySource}
