"""memex settings: a session's GUCs, under the ceilings memex_admin keeps in memex.limits.

memex.embed_threads, memex.memory_budget_mb, memex.embed_batch_size, memex.embed_batch_tokens
and memex.embed_runtime are placeholder GUCs that any role may SET, so a limit cannot live
there: a session's value may only go below the ceiling in memex.limits (threads are never more
than the cores; a budget of 0, "none", is the ceiling itself; the batch sizes have built-in
ceilings when memex.limits sets none), and when memex.limits fixes a runtime a session may not
pick another one.
Documented in docs/embedding.md ("Settings" and "Limits").
"""

from __future__ import annotations

from dataclasses import dataclass

from memex_db.environment import cpu_count
from memex_db.errors import InvalidParameter, MemexDbError
from memex_db.onnx_runtime import DEFAULT_TOKEN_BUDGET
from memex_db.plpy_types import Plpy

GUCS = {
    "threads": "memex.embed_threads",
    "memory_budget_mb": "memex.memory_budget_mb",
    "batch_size": "memex.embed_batch_size",
    "batch_tokens": "memex.embed_batch_tokens",
    "runtime": "memex.embed_runtime",
}
RUNTIMES = ("auto", "onnx", "onnx-int8", "sentence-transformers")
# Rows per inference batch (memex.embed_batch_size); a claim of embed_pending or the worker
# (batch_size) is cut into batches of this size, sorted by length.
DEFAULT_BATCH_ROWS = 64
# Ceilings of the settings that size an inference batch when memex.limits sets none: any role
# may SET them, and 4,096 texts of 256 tokens in one batch would need tens of GB (the OOM
# killer restarts every backend of the cluster). memex_admin may raise them in memex.limits;
# what they allow is measured in docs/embedding.md ("Limits").
BATCH_ROWS_CEILING = 256
BATCH_TOKENS_CEILING = 8192
_LIMITS = "select name, value from memex.limits"


@dataclass(frozen=True)
class Settings:
    threads: int
    threads_explicit: bool  # memex.embed_threads was set: no adapting to concurrent embedders
    memory_budget_mb: int  # 0 = no budget
    batch_size: int
    batch_tokens: int  # padded tokens per inference batch (ONNX): bounds peak memory
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


def _limits(plpy: Plpy) -> dict[str, str]:
    return {str(r["name"]): str(r["value"]) for r in plpy.execute(_LIMITS)}


def _ceiling(limits: dict[str, str], name: str) -> int | None:
    raw = limits.get(name)
    if raw is None:
        return None
    try:
        value = int(raw.strip())
    except ValueError:
        raise InvalidParameter(
            f"memex.limits {name} must be an integer, not {raw!r}",
            hint=f"memex_admin sets the {name} row of memex.limits to a whole number",
        ) from None
    return value if value > 0 else None


def read(plpy: Plpy, concurrent_embedders: int = 1) -> Settings:
    limits = _limits(plpy)
    threads = _int_setting(plpy, GUCS["threads"], 0, 0)
    thread_cap = min(_ceiling(limits, "embed_threads") or cpu_count(), cpu_count())
    budget = _int_setting(plpy, GUCS["memory_budget_mb"], 0, 0)
    budget_cap = _ceiling(limits, "memory_budget_mb")
    if budget_cap is not None:
        budget = budget_cap if budget == 0 else min(budget, budget_cap)
    return Settings(
        threads=min(threads or default_threads(concurrent_embedders), thread_cap),
        threads_explicit=threads > 0,
        memory_budget_mb=budget,
        batch_size=min(
            _int_setting(plpy, GUCS["batch_size"], DEFAULT_BATCH_ROWS, 1),
            _ceiling(limits, "embed_batch_size") or BATCH_ROWS_CEILING,
        ),
        batch_tokens=min(
            _int_setting(plpy, GUCS["batch_tokens"], DEFAULT_TOKEN_BUDGET, 1),
            _ceiling(limits, "embed_batch_tokens") or BATCH_TOKENS_CEILING,
        ),
        runtime=_allowed_runtime(_runtime_setting(plpy), limits.get("embed_runtime")),
    )


def _allowed_runtime(asked: str, fixed: str | None) -> str:
    if fixed is None or fixed == "auto":
        return asked
    if fixed not in RUNTIMES:
        raise InvalidParameter(f"memex.limits embed_runtime must be one of {', '.join(RUNTIMES)}")
    if asked not in ("auto", fixed):
        raise MemexDbError(
            f"setting {GUCS['runtime']} = {asked!r} is not allowed here: the administrator fixed "
            f"the runtime to {fixed!r}",
            hint=f"RESET {GUCS['runtime']}",
            sqlstate="42501",
        )
    return fixed


def _runtime_setting(plpy: Plpy) -> str:
    rows = plpy.execute(f"select current_setting('{GUCS['runtime']}', true) as v")
    raw = (rows[0]["v"] if rows else None) or "auto"
    value = str(raw).strip()
    if value not in RUNTIMES:
        raise InvalidParameter(
            f"setting {GUCS['runtime']} must be one of {', '.join(RUNTIMES)}, not {value!r}"
        )
    return value
