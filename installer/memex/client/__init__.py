"""The memex Python client: `Client` and `AsyncClient` (docs/client.md)."""

from memex.client.aio import AsyncClient
from memex.client.errors import (
    InvalidInput,
    LimitExceeded,
    MemexClientError,
    NotFound,
    PermissionDenied,
    TenantNotFound,
)
from memex.client.results import MessagesStored, SearchResult, Stored
from memex.client.sync import Client

__all__ = [
    "AsyncClient", "Client", "InvalidInput", "LimitExceeded", "MemexClientError", "MessagesStored",
    "NotFound", "PermissionDenied", "SearchResult", "Stored", "TenantNotFound",
]  # fmt: skip
