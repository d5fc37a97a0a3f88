"""What the SQL functions do, one Python function each (called through entry.call)."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from typing import Any

from memex_db import __version__, chunking, models, remote, settings, spaces
from memex_db.environment import give_memory_back, now, process_rss_mb
from memex_db.errors import InvalidParameter
from memex_db.plpy_types import GD, Plpy, cached_plan

# Each backend embedding a batch (memex._drain_step: embed_pending, reembed, a worker) holds the
# 'embedders' advisory lock in shared mode for its transaction; the number of holders (the view
# memex.embedding_backends) is how many backends share the cores.
_EMBEDDERS = "select count(*)::int as n from memex.embedding_backends"


def _concurrent_embedders(plpy: Plpy, gd: GD) -> int:
    rows = plpy.execute(cached_plan(plpy, gd, "embedders", _EMBEDDERS, []))
    return max(1, int(rows[0]["n"])) if rows else 1


# embed_batch leaves up to this much freed heap mapped for the next call: the 250 MB
# settled-RSS goal holds for a backend that called it. Inside a load (a batch of
# memex._drain_step: embed_pending, reembed) up to HEAP_KEEP_FREE_MB_IN_LOAD: the claims of
# short texts free 14-84 MB, which the next claim reuses instead of faulting it in again;
# passages free 100-200 MB, trimmed every time (the 400 MB peak goal). Those CALLs trim all
# of it at their end (release_memory). docs/embedding.md ("Memory").
HEAP_KEEP_FREE_MB = 48
HEAP_KEEP_FREE_MB_IN_LOAD = 96
_IN_LOAD = "select current_setting('memex.in_load', true) = 'on' as in_load"


def _heap_to_keep_mb(plpy: Plpy, gd: GD) -> int:
    rows = plpy.execute(cached_plan(plpy, gd, "in_load", _IN_LOAD, []))
    return HEAP_KEEP_FREE_MB_IN_LOAD if rows and rows[0]["in_load"] else HEAP_KEEP_FREE_MB


_MODELS_IN_USE = "select distinct model from memex.spaces where status <> 'retired'"


def _models_in_use(plpy: Plpy, gd: GD) -> set[str]:
    rows = plpy.execute(cached_plan(plpy, gd, "models_in_use", _MODELS_IN_USE, []))
    return {str(r["model"]) for r in rows}


_ENDPOINT = remote.ROW_SQL.format("$1")


def _endpoint(plpy: Plpy, gd: GD, model: str) -> remote.Endpoint | None:
    """The endpoint a remote model names (read every load: an altered endpoint takes effect at
    the next statement); None for a local model."""

    def fetch_row(name: str) -> dict[str, Any] | None:
        rows = plpy.execute(cached_plan(plpy, gd, "endpoint", _ENDPOINT, ["text"]), [name])
        return dict(rows[0]) if rows else None

    return remote.endpoint_for(model, fetch_row)


def _loaded(plpy: Plpy, gd: GD, space: spaces.Space, batch: bool) -> tuple[models.LoadedModel, int]:
    """The space's model in this backend, and the batch size; for batches, with the threads
    re-balanced for how many backends embed at once."""
    conf = settings.read(plpy, _concurrent_embedders(plpy, gd) if batch else 1)
    runtime = space.runtime or conf.runtime
    loaded = models.load(gd, space.model, conf.threads, conf.memory_budget_mb, runtime,
                         in_use=lambda: _models_in_use(plpy, gd),
                         token_budget=conf.batch_tokens,
                         endpoint=_endpoint(plpy, gd, space.model))  # fmt: skip
    if batch and not conf.threads_explicit:
        loaded.adapt_threads(conf.threads)
    loaded.encoder.token_budget = _tokens_that_fit(conf, loaded)
    return loaded, conf.batch_size


# Under a memory budget, what a call holds beside its inference tensors: the texts, their
# encodings, the vectors it returns, what the runtime's threads keep (docs/embedding.md).
BATCH_RESERVE_MB = 128


def _tokens_that_fit(conf: settings.Settings, loaded: models.LoadedModel) -> int:
    """Padded tokens an inference batch may hold: memex.embed_batch_tokens, and under a memory
    budget no more than the room left in it buys (the model's working memory per token):
    checked before every call, so inference splits its batches to fit (at least one text a
    batch, whatever the room)."""
    if not conf.memory_budget_mb:
        return conf.batch_tokens
    room = conf.memory_budget_mb - process_rss_mb() - BATCH_RESERVE_MB
    return max(1, min(conf.batch_tokens, int(room / loaded.inference_mb_per_token)))


def embed(plpy: Plpy, gd: GD, text: str | None, space: str | None) -> str | None:
    if text is None:
        return None
    target = spaces.lookup(plpy, gd, space)
    loaded, batch_size = _loaded(plpy, gd, target, batch=False)
    return spaces.vector_literals(
        [spaces.fit(loaded.encoder.encode([text], batch_size)[0], target)]
    )[0]


def embed_batch(
    plpy: Plpy, gd: GD, texts: list[str | None] | None, space: str | None
) -> Iterator[tuple[int, str | None]]:
    """(ord, vector) for each input, ord from 1 in input order; a null input gives null."""
    if not texts:
        return iter(())
    target = spaces.lookup(plpy, gd, space)
    loaded, batch_size = _loaded(plpy, gd, target, batch=True)
    present = [(i, t) for i, t in enumerate(texts, 1) if t is not None]
    vectors = loaded.encoder.encode([t for _, t in present], batch_size) if present else []
    give_memory_back(keep_free_mb=_heap_to_keep_mb(plpy, gd))
    literals = spaces.vector_literals([spaces.fit(v, target) for v in vectors])
    by_ord = {i: v for (i, _), v in zip(present, literals, strict=True)}
    return iter([(i, by_ord.get(i)) for i in range(1, len(texts) + 1)])


def release_memory(plpy: Plpy, gd: GD) -> None:
    """All the heap's free memory back to the system: the end of a CALL that embedded."""
    give_memory_back()


def model_info(plpy: Plpy, gd: GD, model: str) -> tuple[str, int]:
    """(provider, native dimensions) of a model, for create_space."""
    conf = settings.read(plpy)
    return spaces.describe_model(gd, model, conf.threads, conf.memory_budget_mb, conf.runtime,
                                 _endpoint(plpy, gd, model))  # fmt: skip


def model_hash(plpy: Plpy, gd: GD, model: str) -> str:
    """The model's content hash (its provider's): part of a space's signature for reembed."""
    from memex_db import providers

    return providers.for_model(model).model_hash(model, _endpoint(plpy, gd, model))


def measure_rate(plpy: Plpy, gd: GD, model: str, texts: list[str] | None) -> float | None:
    """Texts per second of the model on these texts in this backend (load time excluded): the
    measured rate behind reembed's dry-run estimate. Null when there is nothing to measure."""
    texts = [t for t in texts or [] if t]
    if not texts:
        return None
    conf = settings.read(plpy)
    loaded = models.load(gd, model, conf.threads, conf.memory_budget_mb, conf.runtime,
                         in_use=lambda: _models_in_use(plpy, gd),
                         endpoint=_endpoint(plpy, gd, model))  # fmt: skip
    started = now()
    loaded.encoder.encode(texts, conf.batch_size)
    return len(texts) / max(now() - started, 1e-6)


def check_endpoint_options(plpy: Plpy, gd: GD, options: str | None) -> str:
    """The options of memex.create_endpoint, checked (22023 for an unknown or bad one)."""
    return json.dumps(remote.check_options(json.loads(options or "{}")))


def set_endpoint_key(plpy: Plpy, gd: GD, endpoint: str, key: str | None) -> bool:
    """Keeps an endpoint's API key in a file of the server (memex_db.remote), not in a table.
    Without a key argument it takes memex.endpoint_key (SET LOCAL in the caller's
    transaction), and clears it: the key is then in no statement the server may log."""
    if key is None:
        rows = plpy.execute(
            "select current_setting('memex.endpoint_key', true) as k,"
            " set_config('memex.endpoint_key', '', true) as cleared"
        )
        key = (rows[0]["k"] if rows else None) or None
    _endpoint(plpy, gd, remote.PREFIX + endpoint)  # 22023 for an unknown endpoint
    return remote.store_key(endpoint, key)


def chunk_text(
    plpy: Plpy,
    gd: GD,
    text: str | None,
    max_tokens: int | None,
    overlap: int | None,
    space: str | None,
) -> Iterator[tuple[int, str, int]]:
    if text is None:
        return iter(())
    tokenizer, cap = chunking.load_tokenizer(gd, spaces.lookup(plpy, gd, space).model)
    return chunking.chunk(tokenizer, cap, text, max_tokens, overlap)


def chunk_source(
    plpy: Plpy, gd: GD, text: str | None, domain: str | None
) -> Iterator[tuple[int, str, int, str]]:
    """(ord, content, token_count, domain) of a source's chunks (memex_db.domains' rule): with
    a domain every chunk has it; without, fenced blocks are code chunks of their own and prose
    chunks that are mostly code lines are code."""
    if text is None:
        return iter(())
    from memex_db import domains

    if domain is not None and domain not in domains.DOMAINS:
        raise InvalidParameter(f"invalid domain {domain!r}: expected text or code")
    tokenizer, cap = chunking.load_tokenizer(gd, spaces.lookup(plpy, gd, None).model)
    parts = [(domain, text)] if domain else list(domains.split_fences(text))
    rows: list[tuple[int, str, int, str]] = []
    for part_domain, part in parts:
        for _ord, content, tokens in chunking.chunk(tokenizer, cap, part, None, None):
            kind = part_domain
            if kind == "text" and not domain and domains.looks_like_code(content):
                kind = "code"
            rows.append((len(rows), content, tokens, kind or "text"))
    return iter(rows)


def count_tokens(plpy: Plpy, gd: GD, text: str | None, space: str | None) -> int | None:
    """Tokens of `text` for the space's model (special tokens excluded), as chunk_text counts."""
    if text is None:
        return None
    tokenizer, _cap = chunking.load_tokenizer(gd, spaces.lookup(plpy, gd, space).model)
    return len(tokenizer.encode(text, add_special_tokens=False).ids)


def python_check(plpy: Plpy, gd: GD) -> list[tuple[str, bool, str]]:
    home = gd.get("memex_paths", {}).get("home") or os.environ.get("MEMEX_HOME", "/var/lib/memex")
    from memex_db import probe  # importlib.metadata: 40 ms of every backend's cold start

    pins = probe.pinned_requirements()
    checks = probe.run(home, __version__, pins, deep=True)
    try:
        path = models.bundled_model_path()
        checks.append({"name": "bundled model", "ok": True, "detail": path})
    except Exception as exc:
        checks.append({"name": "bundled model", "ok": False, "detail": str(exc)})
    return [(c["name"], bool(c["ok"]), str(c["detail"])) for c in checks]


def status(plpy: Plpy, gd: GD) -> str:
    loaded: dict[str, models.LoadedModel] = gd.get("memex_models", {})
    report: dict[str, Any] = {
        "memex_db_version": __version__,
        "python": sys.version.split()[0],
        "backend_pid": os.getpid(),
        "backend_rss_mb": round(process_rss_mb(), 1),
        "paths": gd.get("memex_paths", {}),
        "loaded_models": [m.describe() for m in loaded.values()],
    }
    return json.dumps(report)
