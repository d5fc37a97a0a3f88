"""Local transformer models: the bundled all-MiniLM-L6-v2, or a sentence-transformers model
directory under the model roots. Served by a validated ONNX export through onnxruntime where
one exists (memex_db.onnx_runtime, made by onnx_export at setup), else by sentence-transformers
itself (torch). The last provider asked: it serves every name the others do not."""

from __future__ import annotations

import json
import os
from typing import Any

from memex_db import models
from memex_db.environment import now
from memex_db.errors import InvalidParameter, ResourceLimit
from memex_db.onnx_runtime import EXPORT_DIRNAME, OnnxEncoder, validated_manifest

PRIORITY = 100
# Resident memory a runtime adds besides the weights (docs/embedding.md, "Memory").
RUNTIME_OVERHEAD_MB = {"onnx": 60.0, "sentence-transformers": 350.0}
# Working memory of an ONNX inference batch per padded token (memex.embed_batch_tokens), for
# MiniLM (384 hidden), rounded up from bench_embedding's peak RSS: what a budget must hold.
INFERENCE_MB_PER_TOKEN = 0.09
# Files derived from the model's own (the ONNX export) do not change what it computes.
HASH_SKIP_DIRS = {"memex-onnx", "__pycache__", ".git"}


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


def _dir_size_mb(path: str, suffixes: tuple[str, ...]) -> float:
    total = 0
    for name in os.listdir(path):
        if name.endswith(suffixes):
            total += os.path.getsize(os.path.join(path, name))
    return total / 2**20


def onnx_variant(runtime: str) -> str | None:
    """The ONNX export variant a runtime setting asks for (None: not an ONNX runtime)."""
    return {"auto": "onnx", "onnx": "onnx", "onnx-int8": "onnx-int8"}.get(runtime)


class SentenceTransformers:
    family = "sentence-transformers"  # the model's family; onnx is how it runs

    def matches(self, model: str) -> bool:
        return True

    def estimate_mb(self, model: str, runtime: str, token_budget: int) -> tuple[str, float]:
        model_dir = models.resolve_model_dir(model)
        variant = onnx_variant(runtime)
        manifest = validated_manifest(model_dir, variant) if variant else None
        if manifest is not None:
            path = os.path.join(model_dir, EXPORT_DIRNAME, manifest["onnx_file"])
            weights = os.path.getsize(path) / 2**20
            working = token_budget * self.inference_mb_per_token(model)
            return str(variant), weights * 1.2 + RUNTIME_OVERHEAD_MB["onnx"] + working
        weights = _dir_size_mb(model_dir, (".safetensors", ".bin"))
        return "sentence-transformers", weights * 1.5 + RUNTIME_OVERHEAD_MB["sentence-transformers"]

    def make_encoder(self, model: str, runtime: str, threads: int, breakdown: dict[str, float],
                     endpoint: Any) -> models.Encoder:  # fmt: skip
        model_dir = models.resolve_model_dir(model)
        variant = onnx_variant(runtime)
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

    def model_hash(self, model: str, endpoint: Any) -> str:
        """sha256 over the model directory's files (names and bytes, sorted): a model whose
        weights changed under the same name or path is another signature."""
        root = models.resolve_model_dir(model)
        files = []
        total = 0
        for folder, dirs, names in os.walk(root):
            dirs[:] = sorted(d for d in dirs if d not in HASH_SKIP_DIRS)
            for name in sorted(names):
                files.append(models.file_entry(root, os.path.join(folder, name)))
                total += files[-1][1]
                if len(files) > models.MAX_MODEL_FILES or total > models.MAX_MODEL_BYTES:
                    raise ResourceLimit(
                        f"model directory {root} holds more than {models.MAX_MODEL_FILES} files "
                        f"or {models.MAX_MODEL_BYTES >> 30} GiB: not a model",
                        sqlstate="54000",
                    )
        return models.files_digest(root, files)

    def tokenizer(self, model: str) -> tuple[Any, int]:
        from memex_db import chunking

        return chunking.wordpiece(models.resolve_model_dir(model))

    def inference_mb_per_token(self, model: str) -> float:
        """MiniLM's figure scaled by the model's layers x width (config.json)."""
        try:
            path = os.path.join(models.resolve_model_dir(model), "config.json")
            with open(path, encoding="utf-8") as handle:
                config = json.load(handle)
            scale = int(config["num_hidden_layers"]) * int(config["hidden_size"]) / (6 * 384)
        except (OSError, ValueError, KeyError, TypeError):
            scale = 1.0  # no readable config: as MiniLM
        return INFERENCE_MB_PER_TOKEN * scale


PROVIDER = SentenceTransformers()
