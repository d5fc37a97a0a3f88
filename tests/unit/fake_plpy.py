"""A fake plpy: answers current_setting() from a dict, memex._space_id() from a list, and
records notices and errors."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any


class PlpyError(Exception):
    def __init__(self, message: str, **kwargs: Any):
        super().__init__(message)
        self.kwargs = kwargs


class FakePlpy:
    def __init__(
        self, settings: dict[str, str] | None = None, spaces: list[dict[str, Any]] | None = None
    ):
        self.settings = settings or {}
        self.spaces = spaces or []
        self.limits: dict[str, str] = {}
        self.notices: list[str] = []

    def execute(self, query: Any, args: Sequence[Any] = (), /) -> list[dict[str, Any]]:
        text = str(query)
        match = re.search(r"current_setting\('([^']+)'", text)
        if match:
            return [{"v": self.settings.get(match.group(1))}]
        if "memex._space_id($1)" in text:  # as the SQL function answers
            if args[0] is None:
                found = [s for s in self.spaces if (s["domain"], s["status"]) == ("text", "active")]
            else:
                found = [s for s in self.spaces if s["name"] == args[0]]
            if not found:
                raise PlpyError(f"unknown embedding space {args[0]!r}", sqlstate="22023")
            return found
        if "from memex.limits" in text:
            return [{"name": k, "value": v} for k, v in self.limits.items()]
        if "from pg_catalog.pg_locks" in text:
            return [{"n": 1}]
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
