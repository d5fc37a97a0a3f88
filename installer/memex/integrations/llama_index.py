"""`MemexRetriever`: memex's hybrid search as a LlamaIndex retriever (`pip install
'memex[llamaindex]'`). Each result is a `NodeWithScore` around a `TextNode` whose metadata
carries memex's columns and citation."""

from __future__ import annotations

from typing import Any

from llama_index.core.retrievers import BaseRetriever
from llama_index.core.schema import NodeWithScore, QueryBundle, TextNode

from memex.client import AsyncClient, Client, SearchResult


def as_node(row: SearchResult) -> NodeWithScore:
    """A search row as a scored TextNode (id: the chunk's id), the other fields of
    SearchResult.as_dict() as metadata, kept out of the text the LLM and embedders see."""
    fields = row.as_dict()
    text = fields.pop("content")
    node = TextNode(id_=row.chunk_id, text=text, metadata=fields,
                    excluded_llm_metadata_keys=list(fields),
                    excluded_embed_metadata_keys=list(fields))  # fmt: skip
    return NodeWithScore(node=node, score=row.score)


class MemexRetriever(BaseRetriever):
    """`MemexRetriever(client=Client(tenant="acme"), k=8)`; `async_client=` an AsyncClient
    for `aretrieve` (without one, aretrieve calls the sync client)."""

    def __init__(self, client: Client | None = None, *, async_client: AsyncClient | None = None,
                 k: int = 8, mode: str = "hybrid", filters: dict[str, Any] | None = None,
                 **search_options: Any) -> None:  # fmt: skip
        if client is None and async_client is None:
            raise ValueError("MemexRetriever needs client= (a memex.Client) or async_client=")
        self.client, self.async_client = client, async_client
        self.k, self.mode, self.filters, self.search_options = k, mode, filters, search_options
        super().__init__()

    def _retrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        if self.client is None:
            raise ValueError("this MemexRetriever has only an async_client: use aretrieve")
        rows = self.client.search(query_bundle.query_str, self.k, self.mode, self.filters,
                                  **self.search_options)  # fmt: skip
        return [as_node(row) for row in rows]

    async def _aretrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        if self.async_client is None:
            return self._retrieve(query_bundle)
        rows = await self.async_client.search(query_bundle.query_str, self.k, self.mode,
                                              self.filters, **self.search_options)  # fmt: skip
        return [as_node(row) for row in rows]
