"""memex settings read from PostgreSQL GUCs (documented in docs/settings.md)."""

from __future__ import annotations

from dataclasses import dataclass

from memex_db.environment import cpu_count
from memex_db.errors import InvalidParameter
from memex_db.plpy_types import Plpy

GUCS = {
    "threads": "memex.embed_threads",
    "memory_budget_mb": "memex.memory_budget_mb",
    "batch_size": "memex.embed_batch_size",
    "runtime": "memex.embed_runtime",
}
RUNTIMES = ("auto", "onnx", "sentence-transformers")


@dataclass(frozen=True)
class Settings:
    threads: int
    threads_explicit: bool  # memex.embed_threads was set: no adapting to concurrent embedders
    memory_budget_mb: int  # 0 = no budget
    batch_size: int
    runtime: str  # auto = the validated ONNX export when there is one, else sentence-transformers


def _int_setting(plpy: Plpy, name: str, default: int, minimum: int) -> int:
    rows = plpy.execute(f"select current_setting('{name}', true) as v")
    raw = rows[0]["v"] if rows else None
    if raw is None or str(raw).strip() == "":
        return default
    try:
        value = int(str(raw).strip())
    except ValueError:
        raise InvalidParameter(
            f"setting {name} must be an integer, not {raw!r}", hint=f"SET {name} = {default}"
        ) from None
    if value < minimum:
        raise InvalidParameter(f"setting {name} must be >= {minimum}, not {value}")
    return value


def default_threads(concurrent_embedders: int) -> int:
    """Cores shared by the backends embedding at once: two sessions must not oversubscribe."""
    return max(1, cpu_count() // max(1, concurrent_embedders))


def read(plpy: Plpy, concurrent_embedders: int = 1) -> Settings:
    threads = _int_setting(plpy, GUCS["threads"], 0, 0)
    return Settings(
        threads=threads or default_threads(concurrent_embedders),
        threads_explicit=threads > 0,
        memory_budget_mb=_int_setting(plpy, GUCS["memory_budget_mb"], 0, 0),
        batch_size=_int_setting(plpy, GUCS["batch_size"], 64, 1),
        runtime=_runtime_setting(plpy),
    )


def _runtime_setting(plpy: Plpy) -> str:
    rows = plpy.execute(f"select current_setting('{GUCS['runtime']}', true) as v")
    raw = (rows[0]["v"] if rows else None) or "auto"
    value = str(raw).strip()
    if value not in RUNTIMES:
        raise InvalidParameter(
            f"setting {GUCS['runtime']} must be one of {', '.join(RUNTIMES)}, not {value!r}"
        )
    return value
