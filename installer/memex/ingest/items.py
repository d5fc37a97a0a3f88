"""What a file becomes before it is written: documents, conversations, artefacts."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from memex.errors import MemexError


class FileRejected(MemexError):
    """This file cannot be ingested; the message names the problem (and where in the file)."""


class FileSkipped(Exception):
    """Not an error: nothing to ingest in this file (unsupported type in a directory, empty)."""


@dataclass(frozen=True)
class Document:
    uri: str
    content: str
    title: str | None
    metadata: dict[str, Any]
    folder: str | None


@dataclass(frozen=True)
class Conversation:
    slug: str
    messages: list[dict[str, Any]]
    title: str | None = None
    created_date: str | None = None
    system_prompt: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    # Messages of an export that are not stored, by reason ("no text (an image or a file)": 2):
    # reported on the file's line, never dropped silently.
    left_out: Counter[str] = field(default_factory=Counter)


@dataclass(frozen=True)
class Artefact:
    slug: str
    payload: dict[str, Any]


Item = Document | Conversation | Artefact


def reject_nul(value: Any, where: str) -> None:
    """PostgreSQL text cannot hold NUL; say where it is instead of failing deep in the driver."""
    if isinstance(value, str):
        offset = value.find("\x00")
        if offset >= 0:
            raise FileRejected(f"{where} contains a NUL byte (character {offset}): binary data?")
    elif isinstance(value, dict):
        for key, inner in value.items():
            reject_nul(key, f"{where} key")
            reject_nul(inner, f"{where}.{key}")
    elif isinstance(value, list):
        for i, inner in enumerate(value):
            reject_nul(inner, f"{where}[{i}]")
