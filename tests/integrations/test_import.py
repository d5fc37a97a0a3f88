"""`memex import`: each source made by its real library (langchain-postgres's PGVector,
LlamaIndex's PGVectorStore) or the legacy schema of the design notes, imported twice; the
source's vectors kept when its model is the space's, queued otherwise; searches find the
imported text; a source of another kind is refused and nothing is written."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from langchain_core.embeddings import Embeddings
from langchain_postgres import PGVector
from llama_index.core.embeddings import BaseEmbedding
from llama_index.core.schema import TextNode
from llama_index.vector_stores.postgres import PGVectorStore
from psycopg.conninfo import conninfo_to_dict

from memex import Client
from memex.cli import main
from memex.devcluster import Cluster
from tests.conftest import create_database, drop_database
from tests.db.helpers import make_tenants

APP = "?options=-c%20role%3Dmemex_app"
TEXTS = [
    "Rotate the signing keys every 90 days.",
    "Nightly base backups go to the cold bucket.",
    "The VPN certificate expires in March.",
]


def _vectors(db: str, texts: list[str]) -> list[list[float]]:
    """The space's model, run by the database: what a source built with the same model holds."""
    with psycopg.connect(db) as conn:
        rows = conn.execute("select memex.embed(t)::text from unnest(%s::text[]) with ordinality"
                            " as x (t, n) order by n", (texts,)).fetchall()  # fmt: skip
    return [[float(x) for x in str(r[0]).strip("[]").split(",")] for r in rows]


def _other_model(text: str) -> list[float]:
    """A different model of the same size: a hash of the text spread over 384 dimensions."""
    digest = hashlib.sha256(text.encode()).digest()
    return [((digest[i % 32] + i) % 17) / 17 - 0.5 for i in range(384)]


class SameModel(Embeddings):
    def __init__(self, db: str) -> None:
        self.db = db

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return _vectors(self.db, texts)

    def embed_query(self, text: str) -> list[float]:
        return _vectors(self.db, [text])[0]


class OtherModel(Embeddings):
    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return [_other_model(t) for t in texts]

    def embed_query(self, text: str) -> list[float]:
        return _other_model(text)


class LocalEmbedding(BaseEmbedding):
    """A LlamaIndex embedding run locally: the bundled model, through the database."""

    db: str

    def _get_text_embedding(self, text: str) -> list[float]:
        return _vectors(self.db, [text])[0]

    def _get_query_embedding(self, query: str) -> list[float]:
        return self._get_text_embedding(query)

    async def _aget_query_embedding(self, query: str) -> list[float]:
        return self._get_text_embedding(query)


def _url(db: str, driver: str) -> str:
    params = conninfo_to_dict(db)
    return (f"postgresql+{driver}://{params['user']}@/{params['dbname']}"
            f"?host={params['host']}&port={params['port']}")  # fmt: skip


@pytest.fixture
def tenants(db: str) -> dict[str, str]:
    with psycopg.connect(db, autocommit=True) as conn:
        return make_tenants(conn, "acme", "globex")


def _import(db: str, *arguments: str) -> int:
    return main(["import", *arguments, "--tenant", "acme", "--dsn", db, "--quiet"])


def _state(db: str) -> dict[str, Any]:
    with psycopg.connect(db) as su:
        row = su.execute(
            "select (select count(*) from memex.documents), (select count(*) from memex.messages),"
            " (select count(*) from memex.summaries), (select count(*) from memex.embeddings),"
            " (select max(embedded_at) from memex.embeddings)"
        ).fetchone()  # fmt: skip
    assert row is not None
    return dict(zip(("documents", "messages", "summaries", "embeddings", "last_embedded"), row,
                    strict=True))  # fmt: skip


def test_langchain_collections_keep_their_vectors_when_the_model_is_the_spaces(
    db: str, tenants: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    same = PGVector(embeddings=SameModel(db), collection_name="kb", connection=_url(db, "psycopg"),
                    use_jsonb=True)  # fmt: skip
    same.add_texts(TEXTS, metadatas=[{"team": "ops", "n": i} for i in range(3)],
                   ids=["keys", "backups", "vpn"])  # fmt: skip
    other = PGVector(embeddings=OtherModel(), collection_name="notes",
                     connection=_url(db, "psycopg"), use_jsonb=True)  # fmt: skip
    other.add_texts(["The office plants are watered on Fridays."], ids=["plants"])
    assert _import(db, "langchain", "--collection", "kb", "--no-embed") == 0
    first = capsys.readouterr().out
    assert "3 records from langchain: 3 inserted, 0 updated, 0 unchanged, 0 failed" in first
    assert "the space's own" in first and "vectors kept: 3 written" in first
    after = _state(db)
    assert (after["documents"], after["embeddings"]) == (3, 3), "no chunk waits for embedding"
    assert _import(db, "langchain", "--collection", "kb") == 0
    second = capsys.readouterr().out
    assert "3 unchanged" in second and "vectors kept: 0 written, 3 already there" in second
    assert _state(db) == after, "a second import changes nothing, embeds nothing"
    with psycopg.connect(db) as su:
        cosine = su.execute(
            "select min(1 - (e.embedding <=> s.embedding)) from memex.embeddings e"
            " join memex.chunks c on c.id = e.chunk_id and c.tenant_id = e.tenant_id"
            " join memex.documents d on d.id = c.document_id and d.tenant_id = c.tenant_id"
            " join langchain_pg_embedding s on d.uri = 'langchain/kb/' || s.id"
        ).fetchone()  # fmt: skip
    assert cosine is not None and cosine[0] > 0.99999, "the source's own vectors"
    # another model: its text is queued, then embedded by the space's model
    assert _import(db, "langchain", "--collection", "notes", "--no-embed") == 0
    out = capsys.readouterr().out
    assert "not the space's (least cosine" in out and "1 chunks of 'acme' wait" in out
    assert _state(db)["embeddings"] == 3
    with Client(db + APP, tenant="acme") as memex:
        hits = memex.search("where do backups go", k=1, mode="vector")
        assert hits[0].uri == "langchain/kb/backups"
        assert hits[0].metadata["source_metadata"]["team"] == "ops"
        assert memex.search("office plants", k=1, mode="text")[0].uri == "langchain/notes/plants"


def test_a_llama_index_table_is_imported_with_its_nodes_metadata(
    db: str, tenants: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    embedding = LocalEmbedding(db=db)
    store = PGVectorStore.from_params(
        connection_string=_url(db, "psycopg2"), async_connection_string=_url(db, "asyncpg"),
        table_name="memories", embed_dim=384,
    )  # fmt: skip
    nodes = [TextNode(id_=f"node-{i}", text=text, metadata={"topic": f"t{i}"})
             for i, text in enumerate(TEXTS)]  # fmt: skip
    for node in nodes:
        node.embedding = embedding.get_text_embedding(node.get_content())
    store.add(nodes)
    for _ in range(2):
        assert _import(db, "llamaindex", "--table", "memories") == 0
    out = capsys.readouterr().out
    assert "3 records from llamaindex: 3 inserted" in out and "3 unchanged" in out
    assert _state(db)["embeddings"] == 3
    with Client(db + APP, tenant="acme") as memex:
        (hit,) = memex.search("vpn certificate", k=1, mode="vector")
    assert hit.uri == "llamaindex/data_memories/node-2"
    kept = hit.metadata["source_metadata"]
    assert kept["topic"] == "t2" and not any(k.startswith("_") for k in kept)


LEGACY = """
create extension if not exists vector;
create table conversations (id serial primary key, slug text unique not null,
  title text not null, created_date date, total_chars int, total_lines int);
create table messages (id bigserial primary key,
  conversation_id int references conversations(id) on delete cascade,
  role text check (role in ('user','assistant')), ts text, content text);
create table summaries (id bigserial primary key,
  conversation_id int references conversations(id) on delete cascade,
  level int check (level >= 1), covers jsonb, content text, char_count int, topics text[]);
create table embeddings (id bigserial primary key,
  conversation_id int references conversations(id) on delete cascade,
  ref_type text check (ref_type in ('message','summary')), ref_id bigint not null,
  model text not null, dim int not null, vector vector not null);
"""


@pytest.fixture
def legacy(pg_cluster: Cluster, db: str) -> Iterator[str]:
    """The legacy schema in a database of its own (--source-dsn), filled with two
    conversations, their summaries and the space model's vectors for the messages."""
    name = f"legacy_{hashlib.sha256(db.encode()).hexdigest()[:8]}"
    dsn = create_database(pg_cluster, name)
    vectors = _vectors(db, TEXTS)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(LEGACY)
        conn.execute(
            "insert into conversations (slug, title, created_date) values"
            " ('ops', 'Ops chat', '2025-06-03'), ('empty', 'Nothing said', null)"
        )
        for i, text in enumerate(TEXTS):
            role = "user" if i % 2 == 0 else "assistant"
            conn.execute("insert into messages (conversation_id, role, ts, content) values"
                         " (1, %s, %s, %s)", (role, f"2025-06-03T08:0{i}:00Z", text))  # fmt: skip
            conn.execute("insert into embeddings (conversation_id, ref_type, ref_id, model, dim,"
                         " vector) values (1, 'message', %s, 'minilm', 384, %s::text::vector)",
                         (i + 1, str(vectors[i])))  # fmt: skip
        conn.execute("insert into summaries (conversation_id, level, covers, content, topics)"
                     " values (1, 1, '[1, 2]', 'Keys and backups were discussed.', '{ops}'),"
                     " (1, 2, '[1, 2, 3]', 'An operations chat.', '{ops}'),"
                     " (2, 1, '[]', '', '{}')")  # fmt: skip
    try:
        yield dsn
    finally:
        drop_database(pg_cluster, name)


def test_the_legacy_schema_from_another_database(
    db: str, tenants: dict[str, str], legacy: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _import(db, "legacy", "--source-dsn", legacy, "--no-embed") == 1, "one record failed"
    captured = capsys.readouterr()
    assert "5 records from legacy: 4 inserted, 0 updated, 0 unchanged, 1 failed" in captured.out
    assert "summaries empty L1: [22023]" in captured.err
    assert "model 'minilm': the space's own" in captured.out
    state = _state(db)
    assert (state["messages"], state["summaries"], state["embeddings"]) == (3, 2, 3)
    assert _import(db, "legacy", "--source-dsn", legacy, "--no-embed") == 1
    assert "4 unchanged" in capsys.readouterr().out and _state(db) == state
    with Client(db + APP, tenant="acme") as memex:
        chat = memex.get_conversation("ops")
        (hit,) = memex.search("when does the certificate expire", k=1, mode="vector")
    assert (chat["title"], chat["date"]) == ("Ops chat", "2025-06-03")
    assert [m["seq"] for m in chat["messages"]] == [1, 2, 3]
    assert chat["messages"][0]["ts"].startswith("2025-06-03 08:00:00")
    assert chat["summaries"][1][0]["covers"] == [1, 2] and chat["summaries"][2][0]["covers"] == [
        1, 2, 3]  # fmt: skip
    assert hit.conversation == "ops" and hit.metadata["seq"] == 3


@pytest.mark.parametrize(
    ("arguments", "said"),
    [
        (["llamaindex", "--table", "langchain_pg_embedding"],
         "not a LlamaIndex PGVectorStore source: public.langchain_pg_embedding has no column "
         "metadata_, node_id, text"),
        (["langchain", "--collection", "nope"], "no LangChain collection 'nope' (there are: kb)"),
        (["legacy"], "not a legacy source: there is no table public.conversations"),
        (["langchain"], "memex import langchain needs --collection NAME"),
        (["llamaindex", "--table", "missing"], "there is no table public.missing"),
    ],
)  # fmt: skip
def test_a_source_of_another_kind_is_refused_and_nothing_is_written(
    db: str, tenants: dict[str, str], capsys: pytest.CaptureFixture[str],
    arguments: list[str], said: str,
) -> None:  # fmt: skip
    PGVector(embeddings=OtherModel(), collection_name="kb", connection=_url(db, "psycopg"),
             use_jsonb=True).add_texts(["a text"], ids=["a"])  # fmt: skip
    assert _import(db, *arguments) == 1
    assert said in capsys.readouterr().err
    assert _state(db)["documents"] == 0
