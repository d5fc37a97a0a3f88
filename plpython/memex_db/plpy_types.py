"""The slice of PL/Python's `plpy` module that memex_db uses, as a Protocol.

memex_db never imports plpy: the SQL wrappers pass it in, and unit tests pass a fake.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

Row = Mapping[str, Any]


class Plpy(Protocol):
    def execute(self, query: Any, args: Sequence[Any] = ..., /) -> Sequence[Row]: ...
    def prepare(self, query: str, argtypes: Sequence[str] = ..., /) -> Any: ...
    def notice(self, msg: str, /, **kwargs: Any) -> None: ...
    def warning(self, msg: str, /, **kwargs: Any) -> None: ...
    def quote_literal(self, value: str, /) -> str: ...


GD = dict[str, Any]


def cached_plan(plpy: Plpy, gd: GD, key: str, query: str, types: list[str]) -> Any:
    """A prepared plan kept in GD for this backend: parsed and planned once, not per call."""
    plans: dict[str, Any] = gd.setdefault("memex_plans", {})
    if key not in plans:
        plans[key] = plpy.prepare(query, types)
    return plans[key]
