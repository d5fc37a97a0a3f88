"""A fake plpy: answers current_setting() from a dict and records notices and errors."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any


class PlpyError(Exception):
    def __init__(self, message: str, **kwargs: Any):
        super().__init__(message)
        self.kwargs = kwargs


class FakePlpy:
    def __init__(self, settings: dict[str, str] | None = None):
        self.settings = settings or {}
        self.notices: list[str] = []

    def execute(self, query: Any, args: Sequence[Any] = (), /) -> list[dict[str, Any]]:
        match = re.search(r"current_setting\('([^']+)'", str(query))
        if match:
            return [{"v": self.settings.get(match.group(1))}]
        raise AssertionError(f"unexpected query: {query}")

    def prepare(self, query: str, argtypes: Sequence[str] = (), /) -> Any:
        return query

    def notice(self, msg: str, /, **kwargs: Any) -> None:
        self.notices.append(msg)

    def warning(self, msg: str, /, **kwargs: Any) -> None:
        self.notices.append(msg)

    def quote_literal(self, value: str, /) -> str:
        return "'" + value.replace("'", "''") + "'"

    def error(self, msg: str, /, **kwargs: Any) -> None:
        raise PlpyError(msg, **kwargs)
