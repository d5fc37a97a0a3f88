"""What the client returns: typed rows, every column of memex.search_result kept."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class SearchResult:
    """A row of memex.rag_search (docs/search.md, "What a row holds")."""

    chunk_id: str
    source_kind: str  # 'document', 'message' or 'summary'
    source_id: str
    content: str
    score: float
    similarity: float | None
    vector_rank: int | None
    text_rank: int | None
    metadata: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> SearchResult:
        return cls(
            chunk_id=str(row["chunk_id"]), source_kind=str(row["source_kind"]),
            source_id=str(row["source_id"]), content=str(row["content"]),
            score=float(row["score"]),
            similarity=None if row["similarity"] is None else float(row["similarity"]),
            vector_rank=row["vector_rank"], text_rank=row["text_rank"],
            metadata=dict(row["metadata"] or {}),
        )  # fmt: skip

    @property
    def title(self) -> str | None:
        value = self.metadata.get("title")
        return None if value is None else str(value)

    @property
    def uri(self) -> str | None:
        value = self.metadata.get("uri")
        return None if value is None else str(value)

    @property
    def conversation(self) -> str | None:
        value = self.metadata.get("conversation")
        return None if value is None else str(value)

    @property
    def date(self) -> str | None:
        """A message's time (ISO 8601), else its conversation's date."""
        value = self.metadata.get("ts") or self.metadata.get("date")
        return None if value is None else str(value)

    @property
    def speaker(self) -> str | None:
        """Who said a message: its name and role ("Caroline (user)"), or its role alone."""
        name, role = self.metadata.get("name"), self.metadata.get("role")
        if name is None:
            return None if role is None else str(role)
        return f"{name} ({role})" if role else str(name)

    @property
    def citation(self) -> str:
        """How compose_context cites the row: kind, title, uri or slug, and for a message its
        number, speaker and time, for a summary its level."""
        meta = self.metadata
        parts = [
            self.title,
            self.uri or self.conversation,
            f"L{meta['level']}" if "level" in meta else None,
            f"message {meta['seq']}" if "seq" in meta else None,
            self.speaker,
            self.date if self.source_kind == "message" else None,
        ]
        return f"{self.source_kind}: " + ", ".join(str(p) for p in parts if p)

    def as_dict(self) -> dict[str, Any]:
        """The row as plain JSON data, with the derived fields an agent reads."""
        return {
            "content": self.content, "score": self.score, "source_kind": self.source_kind,
            "uri": self.uri, "conversation": self.conversation, "title": self.title,
            "date": self.date, "speaker": self.speaker, "citation": self.citation,
            "chunk_id": self.chunk_id,
            "similarity": self.similarity, "vector_rank": self.vector_rank,
            "text_rank": self.text_rank, "metadata": self.metadata,
        }  # fmt: skip


@dataclass(frozen=True)
class Stored:
    """What an upsert did: the row's id and inserted, updated or unchanged."""

    id: str
    action: str


@dataclass(frozen=True)
class MessagesStored:
    """What add_messages did to a conversation."""

    conversation_id: str
    inserted: int
    updated: int
    unchanged: int
    removed: int
