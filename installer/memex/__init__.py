"""memex: the CLI and installer, and the Python client (`from memex import Client,
AsyncClient`: docs/client.md). The version is memex_db's, so both always agree."""

from typing import Any

from memex_db import __version__

__all__ = ["AsyncClient", "Client", "__version__"]


def __getattr__(name: str) -> Any:
    """The client is imported when asked for: the CLI's commands do not pay for its pool."""
    if name in ("Client", "AsyncClient"):
        from memex import client

        return getattr(client, name)
    raise AttributeError(f"module 'memex' has no attribute {name!r}")
