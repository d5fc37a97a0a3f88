"""The fast runtime: a sentence-transformers model exported to ONNX, run with onnxruntime and the
`tokenizers` library (no torch import: ~0.3 s to a first vector instead of ~4-6 s, ~1/3 the RAM).

An export lives in `<model_dir>/memex-onnx/` with a manifest written by onnx_export after a
parity check against sentence-transformers; only a validated variant is ever used:
  onnx        fp32, the graph fused by onnxruntime's transformer optimizer (attention, LayerNorm,
              GELU) where the model family allows it; parity: cosine >= 0.9999
  onnx-int8   the same graph with its MatMul weights quantized to int8 (dynamic quantization);
              parity: mean cosine >= 0.985 and min >= 0.96 over the parity texts
              (docs/embedding.md has its speed and retrieval cost)
"""

import hashlib
import json
import os
from typing import Any

from memex_db.errors import EnvironmentBroken

EXPORT_DIRNAME = "memex-onnx"
MANIFEST = "manifest.json"
# Bumped when the export changes what it writes: setup then exports again.
EXPORT_FORMAT = 2
MIN_PARITY_COSINE = 0.9999
MIN_PARITY = {"onnx": MIN_PARITY_COSINE, "onnx-int8": 0.96}
MEAN_PARITY = {"onnx": MIN_PARITY_COSINE, "onnx-int8": 0.985}
# Padded tokens per inference batch (attention memory grows with rows x width^2): the fastest
# budget with the least peak memory (docs/embedding.md, "Memory").
DEFAULT_TOKEN_BUDGET = 2048


def export_dir(model_dir: str) -> str:
    return os.path.join(model_dir, EXPORT_DIRNAME)


def file_digest(path: str) -> str:
    """sha256 of a file, read in 1 MB pieces."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while piece := handle.read(1 << 20):
            digest.update(piece)
    return digest.hexdigest()


# Files this backend verified, by path: (size, mtime) when they matched. A file rewritten since
# is verified again.
_VERIFIED: dict[str, tuple[int, int]] = {}


def verify_export_file(path: str, manifest: dict[str, Any]) -> None:
    """The file setup exported, as setup wrote it: its sha256 against the manifest's (a copy
    with 4 KB zeroed every 256 KB loaded silently and gave vectors at cosine 0.97-0.99 to the
    real ones, mixed into a live space). Once per backend and file (about 65 ms for MiniLM's
    90 MB, measured); an export older than the recorded digests is not checked."""
    expected = (manifest.get("files") or {}).get(os.path.basename(path))
    if expected is None:
        return
    stat = os.stat(path)
    stamp = (stat.st_size, stat.st_mtime_ns)
    if _VERIFIED.get(path) == stamp:
        return
    if file_digest(path) != expected:
        raise EnvironmentBroken(
            f"model file {path} does not match the sha256 setup recorded for it: the file is "
            "damaged or was replaced, and its vectors would be wrong",
            hint="on the database server, run `memex doctor --repair` (it exports the model "
            "again), then open a new session",
        )
    _VERIFIED[path] = stamp


def read_manifest(model_dir: str) -> dict[str, Any] | None:
    try:
        with open(os.path.join(export_dir(model_dir), MANIFEST), encoding="utf-8") as handle:
            manifest: dict[str, Any] = json.load(handle)
    except (OSError, ValueError):
        return None
    return manifest if manifest.get("format") == EXPORT_FORMAT else None


def validated_manifest(model_dir: str, variant: str = "onnx") -> dict[str, Any] | None:
    """The export's manifest for `variant` (its file in "onnx_file") if that variant exists and
    passed its parity check, else None."""
    manifest = read_manifest(model_dir)
    entry = (manifest or {}).get("variants", {}).get(variant)
    if manifest is None or not entry:
        return None
    if not passes_parity(variant, entry):
        return None
    if not os.path.isfile(os.path.join(export_dir(model_dir), entry.get("file", ""))):
        return None
    return {**manifest, "onnx_file": entry["file"], "variant": variant}


def passes_parity(variant: str, entry: dict[str, Any]) -> bool:
    return (
        float(entry.get("min_cosine", 0.0)) >= MIN_PARITY[variant]
        and float(entry.get("mean_cosine", 0.0)) >= MEAN_PARITY[variant]
    )


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


# What one more inference batch costs, in padded tokens (a run's fixed cost over its cost per
# token, docs/embedding.md "Batches"): a batch is worth cutting where it saves more padding.
BATCH_OVERHEAD_TOKENS = 8


def token_batches(lengths: list[int], max_rows: int, token_budget: int) -> list[list[int]]:
    """Indices of `lengths` grouped into inference batches: sorted by length, at most max_rows
    rows, past the first row at most token_budget padded tokens, and among such groupings the
    one with the fewest padded tokens plus BATCH_OVERHEAD_TOKENS a batch (an exact partition of
    the sorted rows: n x max_rows steps)."""
    order = sorted(range(len(lengths)), key=lengths.__getitem__)
    count = len(order)
    best = [0] * (count + 1)  # best[i]: the cost of batching the i shortest rows
    cut = [0] * (count + 1)  # where the last batch of those i rows starts
    for end in range(1, count + 1):
        width = lengths[order[end - 1]]  # sorted ascending: the widest of any batch ending here
        best[end] = best[end - 1] + BATCH_OVERHEAD_TOKENS + width
        cut[end] = end - 1
        for start in range(end - 2, max(end - max_rows, 0) - 1, -1):
            if (end - start) * width > token_budget:
                break
            cost = best[start] + BATCH_OVERHEAD_TOKENS + (end - start) * width
            if cost < best[end]:
                best[end], cut[end] = cost, start
    batches: list[list[int]] = []
    end = count
    while end > 0:
        batches.append(order[cut[end] : end])
        end = cut[end]
    batches.reverse()
    return batches


class OnnxEncoder:
    def __init__(self, model_dir: str, manifest: dict[str, Any], threads: int,
                 breakdown: dict[str, float], folder: str | None = None):  # fmt: skip
        """folder: where the ONNX file is, when not the model's export directory (the export
        validates its staging copy)."""
        from memex_db.environment import now

        started = now()
        import numpy
        import onnxruntime  # noqa: F401  (timed here; sessions are built in set_threads)
        from tokenizers import Tokenizer

        breakdown["import_onnxruntime"] = now() - started
        started = now()
        self._np = numpy
        self.provider = str(manifest.get("variant", "onnx"))
        self.dimensions = int(manifest["dimensions"])
        self.max_tokens = int(manifest["max_length"])
        self.token_budget = DEFAULT_TOKEN_BUDGET
        self._normalize = bool(manifest["normalize"])
        self.tokenizer = Tokenizer.from_file(os.path.join(model_dir, "tokenizer.json"))
        self.tokenizer.enable_truncation(max_length=self.max_tokens)
        self.tokenizer.no_padding()
        self._onnx_path = os.path.join(folder or export_dir(model_dir), manifest["onnx_file"])
        if folder is None:  # not the export's own staging copy, which has no digests yet
            verify_export_file(self._onnx_path, manifest)
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
        # Idle pool threads sleep instead of spinning: backends sharing the cores go faster
        # (docs/embedding.md, "Threads").
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
        # No CPU arena: it keeps its peak for the session's life; callers trim the heap after
        # a batch instead (docs/embedding.md, "Memory").
        options.enable_cpu_mem_arena = False
        self.session = None
        self.session = onnxruntime.InferenceSession(
            self._onnx_path, options, providers=["CPUExecutionProvider"]
        )
        self.threads = threads

    def encode(self, texts: list[str], batch_size: int) -> list[list[float]]:
        np = self._np
        encodings = self.tokenizer.encode_batch(texts)
        lengths = [len(e.ids) for e in encodings]
        out: list[list[float]] = [[] for _ in texts]
        for idx in token_batches(lengths, batch_size, self.token_budget):
            width = lengths[idx[-1]]
            ids = np.zeros((len(idx), width), dtype=np.int64)
            mask = np.zeros((len(idx), width), dtype=np.int64)
            for row, i in enumerate(idx):
                ids[row, : lengths[i]] = encodings[i].ids
                mask[row, : lengths[i]] = 1
            feeds = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
            hidden = self.session.run(None, {k: v for k, v in feeds.items()
                                             if k in self._input_names})[0]  # fmt: skip
            weights = mask[:, :, None].astype(np.float32)
            pooled = (hidden * weights).sum(axis=1) / np.clip(weights.sum(axis=1), 1e-9, None)
            if self._normalize:
                norms = np.linalg.norm(pooled, axis=1, keepdims=True)
                pooled = pooled / np.clip(norms, 1e-12, None)
            for row, vector in zip(idx, pooled.tolist(), strict=True):
                out[row] = vector
        return out
