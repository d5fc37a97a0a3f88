"""`MemexRetriever`: memex's hybrid search as a LangChain retriever (`pip install
'memex[langchain]'`). Each result is a `Document` whose metadata carries memex's columns, its
score and its citation."""

from __future__ import annotations

from typing import Any

from langchain_core.callbacks import (
    AsyncCallbackManagerForRetrieverRun,
    CallbackManagerForRetrieverRun,
)
from langchain_core.documents import Document
from langchain_core.retrievers import BaseRetriever
from pydantic import ConfigDict, Field

from memex.client import AsyncClient, Client, SearchResult


def as_document(row: SearchResult) -> Document:
    """A search row as a LangChain Document: the chunk's text, and every other field of
    SearchResult.as_dict() (score, source_kind, uri or conversation, title, date, citation,
    chunk_id, ranks, memex's metadata) as metadata."""
    fields = row.as_dict()
    return Document(page_content=fields.pop("content"), metadata=fields, id=row.chunk_id)


class MemexRetriever(BaseRetriever):
    """`MemexRetriever(client=Client(tenant="acme"), k=8)`; `async_client=` an AsyncClient
    for `ainvoke` (without one, ainvoke runs the sync client in a thread)."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    client: Client | None = None
    async_client: AsyncClient | None = None
    k: int = 8
    mode: str = "hybrid"
    filters: dict[str, Any] | None = None
    search_options: dict[str, Any] = Field(default_factory=dict)

    def model_post_init(self, context: Any) -> None:
        if self.client is None and self.async_client is None:
            raise ValueError("MemexRetriever needs client= (a memex.Client) or async_client=")

    def _get_relevant_documents(
        self, query: str, *, run_manager: CallbackManagerForRetrieverRun
    ) -> list[Document]:
        if self.client is None:
            raise ValueError("this MemexRetriever has only an async_client: use ainvoke")
        rows = self.client.search(query, self.k, self.mode, self.filters, **self.search_options)
        return [as_document(row) for row in rows]

    async def _aget_relevant_documents(
        self, query: str, *, run_manager: AsyncCallbackManagerForRetrieverRun
    ) -> list[Document]:
        if self.async_client is None:
            return await super()._aget_relevant_documents(query, run_manager=run_manager)
        rows = await self.async_client.search(
            query, self.k, self.mode, self.filters, **self.search_options
        )
        return [as_document(row) for row in rows]
