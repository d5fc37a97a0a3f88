"""The fast runtime: a sentence-transformers model exported to ONNX, run with onnxruntime and the
`tokenizers` library (no torch import: ~0.2 s to a first vector instead of ~4-6 s, ~1/3 the RAM).

An export lives in `<model_dir>/memex-onnx/` with a manifest written by onnx_export after a
parity check against sentence-transformers; only a validated export is ever used.
"""

import json
import os
from typing import Any

EXPORT_DIRNAME = "memex-onnx"
MANIFEST = "manifest.json"
MIN_PARITY_COSINE = 0.9999


def export_dir(model_dir: str) -> str:
    return os.path.join(model_dir, EXPORT_DIRNAME)


def validated_manifest(model_dir: str) -> dict[str, Any] | None:
    """The export's manifest if an export exists and passed its parity check, else None."""
    path = os.path.join(export_dir(model_dir), MANIFEST)
    try:
        with open(path, encoding="utf-8") as handle:
            manifest: dict[str, Any] = json.load(handle)
    except (OSError, ValueError):
        return None
    if float(manifest.get("min_cosine", 0.0)) < MIN_PARITY_COSINE:
        return None
    if not os.path.isfile(os.path.join(export_dir(model_dir), manifest.get("onnx_file", ""))):
        return None
    return manifest


def read_pipeline_config(model_dir: str) -> dict[str, Any]:
    """What the exported graph must reproduce: mean pooling, normalisation, truncation length.

    Raises ValueError for a pipeline the fast path does not implement (CLS/max pooling, Dense
    layers...): those models stay on sentence-transformers.
    """
    with open(os.path.join(model_dir, "modules.json"), encoding="utf-8") as handle:
        modules = [m["type"].rsplit(".", 1)[-1] for m in json.load(handle)]
    if modules not in (["Transformer", "Pooling", "Normalize"], ["Transformer", "Pooling"]):
        raise ValueError(f"unsupported module pipeline {modules}")
    pooling_path = os.path.join(model_dir, "1_Pooling", "config.json")
    with open(pooling_path, encoding="utf-8") as handle:
        pooling = json.load(handle)
    modes = [k for k, v in pooling.items() if k.startswith("pooling_mode_") and v is True]
    if modes != ["pooling_mode_mean_tokens"]:
        raise ValueError(f"unsupported pooling {modes}")
    max_length = 512
    config_path = os.path.join(model_dir, "sentence_bert_config.json")
    if os.path.isfile(config_path):
        with open(config_path, encoding="utf-8") as handle:
            max_length = int(json.load(handle).get("max_seq_length", max_length))
    return {
        "dimensions": int(pooling["word_embedding_dimension"]),
        "normalize": modules[-1] == "Normalize",
        "max_length": max_length,
    }


class OnnxEncoder:
    provider = "onnx"

    def __init__(self, model_dir: str, manifest: dict[str, Any], threads: int,
                 breakdown: dict[str, float]):  # fmt: skip
        from memex_db.environment import now

        started = now()
        import numpy
        import onnxruntime  # noqa: F401  (timed here; sessions are built in set_threads)
        from tokenizers import Tokenizer

        breakdown["import_onnxruntime"] = now() - started
        started = now()
        self._np = numpy
        self.dimensions = int(manifest["dimensions"])
        self.max_tokens = int(manifest["max_length"])
        self._normalize = bool(manifest["normalize"])
        self.tokenizer = Tokenizer.from_file(os.path.join(model_dir, "tokenizer.json"))
        self.tokenizer.enable_truncation(max_length=self.max_tokens)
        self.tokenizer.no_padding()
        self._onnx_path = os.path.join(export_dir(model_dir), manifest["onnx_file"])
        self.session: Any = None
        self.threads = 0
        self.set_threads(threads)
        self._input_names = {i.name for i in self.session.get_inputs()}  # type: ignore[attr-defined]
        breakdown["load_model"] = now() - started

    def set_threads(self, threads: int) -> None:
        """onnxruntime fixes its thread pool per session: a new count means a new session
        (about 0.1 s). The old one is dropped first so memory never holds both."""
        if threads == self.threads:
            return
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        # Idle pool threads sleep instead of spinning: measured 350 -> 405 sentences/s for two
        # backends embedding at once on 2 cores, and no cost for one (docs/embedding.md).
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = None
        self.session = onnxruntime.InferenceSession(
            self._onnx_path, options, providers=["CPUExecutionProvider"]
        )
        self.threads = threads

    def encode(self, texts: list[str], batch_size: int) -> list[list[float]]:
        np = self._np
        encodings = self.tokenizer.encode_batch(texts)
        # Batches of similar lengths waste less work on padding (sentence-transformers does too).
        order = sorted(range(len(texts)), key=lambda i: len(encodings[i].ids))
        out: list[list[float]] = [[] for _ in texts]
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            width = max(len(encodings[i].ids) for i in idx)
            ids = np.zeros((len(idx), width), dtype=np.int64)
            mask = np.zeros((len(idx), width), dtype=np.int64)
            types = np.zeros((len(idx), width), dtype=np.int64)
            for row, i in enumerate(idx):
                enc = encodings[i]
                n = len(enc.ids)
                ids[row, :n] = enc.ids
                mask[row, :n] = enc.attention_mask
                types[row, :n] = enc.type_ids
            feeds = {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}
            hidden = self.session.run(None, {k: v for k, v in feeds.items()
                                             if k in self._input_names})[0]  # fmt: skip
            weights = mask[:, :, None].astype(np.float32)
            pooled = (hidden * weights).sum(axis=1) / np.clip(weights.sum(axis=1), 1e-9, None)
            if self._normalize:
                norms = np.linalg.norm(pooled, axis=1, keepdims=True)
                pooled = pooled / np.clip(norms, 1e-12, None)
            for row, i in enumerate(idx):
                out[i] = pooled[row].tolist()
        return out
