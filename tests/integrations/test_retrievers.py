"""The LangChain and LlamaIndex retrievers over a real database and the bundled model, through
each framework's own public API (invoke/ainvoke, retrieve/aretrieve); no LLM."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import psycopg
import pytest
from langchain_core.documents import Document
from langchain_core.retrievers import BaseRetriever as LangChainRetriever
from llama_index.core.retrievers import BaseRetriever as LlamaIndexRetriever
from llama_index.core.schema import NodeWithScore, TextNode

from memex import AsyncClient, Client
from memex.client import InvalidInput
from memex.integrations import langchain, llama_index
from tests.db.helpers import make_tenants

APP = "?options=-c%20role%3Dmemex_app"


@pytest.fixture
def client(db: str) -> Iterator[Client]:
    with psycopg.connect(db, autocommit=True) as conn:
        make_tenants(conn, "acme", "globex")
    with Client(db + APP, tenant="acme", embed_on_write=True) as memex:
        memex.upsert_document("kb/keys.md", "Rotate the signing keys every 90 days.",
                              title="Key rotation")  # fmt: skip
        memex.upsert_document("kb/backups.md", "Nightly base backups go to the cold bucket.",
                              title="Backups")  # fmt: skip
        memex.add_messages("ops", [{"role": "user", "content": "The VPN certificate expires "
                                    "in March.", "name": "Caroline"}])  # fmt: skip
        yield memex


def test_langchain_retriever_returns_documents_with_memex_metadata(db: str, client: Client) -> None:
    retriever = langchain.MemexRetriever(client=client, k=2)
    assert isinstance(retriever, LangChainRetriever)
    docs = retriever.invoke("how often are signing keys rotated")
    assert all(isinstance(d, Document) for d in docs) and len(docs) == 2
    first = docs[0]
    assert first.page_content.endswith("Rotate the signing keys every 90 days.")
    assert first.metadata["uri"] == "kb/keys.md" and first.metadata["title"] == "Key rotation"
    assert first.metadata["citation"] == "document: Key rotation, kb/keys.md"
    assert first.metadata["score"] >= docs[1].metadata["score"]
    messages = langchain.MemexRetriever(client=client, filters={"source_kind": ["message"]})
    (said,) = messages.invoke("vpn certificate")
    assert said.metadata["conversation"] == "ops" and "Caroline" not in said.page_content

    async def run() -> list[Document]:
        async with AsyncClient(db + APP, tenant="acme") as memex:
            return await langchain.MemexRetriever(async_client=memex, mode="text").ainvoke(
                "cold bucket"
            )

    assert [d.metadata["uri"] for d in asyncio.run(run())] == ["kb/backups.md"]
    # the sync client serves ainvoke too (in a thread)
    assert asyncio.run(langchain.MemexRetriever(client=client, k=1).ainvoke("backups"))


def test_llama_index_retriever_returns_scored_nodes(db: str, client: Client) -> None:
    retriever = llama_index.MemexRetriever(client, k=2, max_per_document=1)
    assert isinstance(retriever, LlamaIndexRetriever)
    nodes = retriever.retrieve("where do the backups go")
    assert all(isinstance(n, NodeWithScore) and isinstance(n.node, TextNode) for n in nodes)
    assert nodes[0].node.get_content().endswith("Nightly base backups go to the cold bucket.")
    assert nodes[0].node.metadata["citation"] == "document: Backups, kb/backups.md"
    assert nodes[0].score is not None and nodes[0].score >= (nodes[1].score or 0)
    assert "citation" not in nodes[0].node.get_content(metadata_mode="llm")

    async def run() -> list[NodeWithScore]:
        async with AsyncClient(db + APP, tenant="acme") as memex:
            return await llama_index.MemexRetriever(async_client=memex, mode="text").aretrieve(
                "signing keys"
            )

    assert [n.node.metadata["uri"] for n in asyncio.run(run())] == ["kb/keys.md"]


def test_retrievers_see_their_tenant_only_and_say_what_is_wrong(db: str, client: Client) -> None:
    with Client(db + APP, tenant="globex") as other:
        assert langchain.MemexRetriever(client=other, mode="text").invoke("signing keys") == []
        assert llama_index.MemexRetriever(other, mode="text").retrieve("signing keys") == []
    with pytest.raises(InvalidInput, match="unknown search option"):
        langchain.MemexRetriever(client=client, search_options={"colour": 1}).invoke("x")
    with pytest.raises(InvalidInput, match="k must be between 1 and 1000"):
        llama_index.MemexRetriever(client, k=0).retrieve("x")
    with pytest.raises(ValueError, match="needs client="):
        langchain.MemexRetriever()
    with pytest.raises(ValueError, match="needs client="):
        llama_index.MemexRetriever()
