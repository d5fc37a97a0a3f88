"""Export a sentence-transformers model to ONNX once (at setup), and prove it gives the same
vectors before anything may use it.

    python -m memex_db.onnx_export [--model DIR] [--force] [--quiet]

Runs in the server venv (needs torch, transformers, sentence-transformers and onnx: setup time
only; the backends then need only onnxruntime and tokenizers). Without --model it exports the
bundled all-MiniLM-L6-v2. The export goes to `<model_dir>/memex-onnx/` with manifest.json.
"""

import argparse
import json
import os
import shutil
import sys
import time
import warnings

from memex_db.environment import prepare_process
from memex_db.onnx_runtime import (
    EXPORT_DIRNAME,
    MANIFEST,
    MIN_PARITY_COSINE,
    OnnxEncoder,
    read_pipeline_config,
    validated_manifest,
)

OPSET = 17
# Parity texts: English, French, code, punctuation, empty-ish, and one past the token limit.
PARITY_TEXTS = [
    "hello world",
    "How do I rotate the signing keys without downtime?",
    "PostgreSQL row-level security isolates each tenant's rows.",
    "Le chat dort sur le canapé pendant que la pluie tombe.",
    "Les résumés hiérarchiques couvrent plusieurs messages de la conversation.",
    "def embed(texts: list[str]) -> list[list[float]]:\n    return model.encode(texts)",
    "SELECT id FROM memex.chunks WHERE tenant_id = memex.current_tenant();",
    "?!",
    "a",
    "数据库 向量 搜索",
    " ".join(["long text to be truncated by the tokenizer"] * 80),
]


def export(model_dir: str, force: bool = False, quiet: bool = False) -> dict[str, object]:
    prepare_process()
    target = os.path.join(model_dir, EXPORT_DIRNAME)
    if not force and validated_manifest(model_dir) is not None:
        if not quiet:
            print(f"ONNX export present and validated: {target}", file=sys.stderr)
        with open(os.path.join(target, MANIFEST), encoding="utf-8") as handle:
            manifest: dict[str, object] = json.load(handle)
            return manifest
    pipeline = read_pipeline_config(model_dir)
    if quiet:
        warnings.filterwarnings("ignore")
    import torch
    from sentence_transformers import SentenceTransformer
    from transformers import AutoModel

    started = time.perf_counter()
    base = AutoModel.from_pretrained(model_dir, local_files_only=True).eval()

    class HiddenStates(torch.nn.Module):  # type: ignore[misc]  # exactly three tensor inputs
        def __init__(self) -> None:
            super().__init__()
            self.base = base

        def forward(self, input_ids, attention_mask, token_type_ids):  # type: ignore[no-untyped-def]
            return self.base(input_ids=input_ids, attention_mask=attention_mask,
                             token_type_ids=token_type_ids).last_hidden_state  # fmt: skip

    staging = target + ".tmp"
    shutil.rmtree(staging, ignore_errors=True)
    os.makedirs(staging)
    sample = torch.ones((2, 8), dtype=torch.long)
    axes = {0: "batch", 1: "sequence"}
    torch.onnx.export(
        HiddenStates(), (sample, sample, torch.zeros_like(sample)),
        os.path.join(staging, "model.onnx"),
        input_names=["input_ids", "attention_mask", "token_type_ids"],
        output_names=["last_hidden_state"],
        dynamic_axes={"input_ids": axes, "attention_mask": axes, "token_type_ids": axes,
                      "last_hidden_state": axes},
        opset_version=OPSET, do_constant_folding=True, dynamo=False,
    )  # fmt: skip
    manifest = {"onnx_file": "model.onnx", "opset": OPSET, **pipeline,
                "torch": torch.__version__, "export_seconds": 0.0}  # fmt: skip
    reference = SentenceTransformer(model_dir, device="cpu", local_files_only=True).encode(
        PARITY_TEXTS, batch_size=4, normalize_embeddings=True
    )
    # Move the staged export into place with a not-yet-valid manifest (min_cosine 0: nothing
    # will use it), then validate it through the very encoder code the backends run.
    shutil.rmtree(target, ignore_errors=True)
    os.rename(staging, target)
    with open(os.path.join(target, MANIFEST), "w", encoding="utf-8") as handle:
        json.dump({**manifest, "min_cosine": 0.0}, handle)
    candidate = OnnxEncoder(model_dir, manifest, threads=2, breakdown={})
    vectors = candidate.encode(PARITY_TEXTS, batch_size=4)
    cosines = [
        float(sum(a * b for a, b in zip(ref, vec, strict=True)))
        for ref, vec in zip(reference.tolist(), vectors, strict=True)
    ]
    manifest["min_cosine"] = min(cosines)
    manifest["parity_texts"] = len(PARITY_TEXTS)
    manifest["export_seconds"] = round(time.perf_counter() - started, 2)
    with open(os.path.join(target, MANIFEST), "w", encoding="utf-8") as handle:
        json.dump(manifest, handle, indent=2)
    if manifest["min_cosine"] < MIN_PARITY_COSINE:  # type: ignore[operator]
        raise SystemExit(f"ONNX export failed parity: min cosine {manifest['min_cosine']:.6f}")
    if not quiet:
        print(f"ONNX export validated (min cosine {manifest['min_cosine']:.6f}): {target}",
              file=sys.stderr)  # fmt: skip
    return manifest


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", help="a local sentence-transformers model directory")
    parser.add_argument("--force", action="store_true")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args()
    if args.model:
        model_dir = args.model
    else:
        from memex_db.models import bundled_model_path

        model_dir = bundled_model_path()
    export(model_dir, force=args.force, quiet=args.quiet)


if __name__ == "__main__":
    main()
