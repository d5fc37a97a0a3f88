"""Export a sentence-transformers model to ONNX once (at setup), and prove it gives the same
vectors before anything may use it.

Three steps, each checked against sentence-transformers' own vectors: the plain export (eager
attention, so the graph has the pattern onnxruntime's transformer optimizer fuses), the fused
fp32 graph (`onnx`, used when its parity holds, else the plain one), and its dynamic int8
quantization (`onnx-int8`, kept only when its own, looser, parity holds).

    python -m memex_db.onnx_export [--model DIR] [--force] [--quiet]

Runs in the server venv (needs torch, transformers, sentence-transformers and onnx: setup time
only; the backends then need only onnxruntime and tokenizers). Without --model it exports the
bundled all-MiniLM-L6-v2. The export goes to `<model_dir>/memex-onnx/` with manifest.json.
"""

import argparse
import json
import logging
import os
import shutil
import sys
import time
import warnings

from memex_db.environment import prepare_process
from memex_db.onnx_runtime import (
    EXPORT_DIRNAME,
    EXPORT_FORMAT,
    MANIFEST,
    OnnxEncoder,
    file_digest,
    passes_parity,
    read_manifest,
    read_pipeline_config,
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


# Model families whose graphs onnxruntime's BERT optimizer knows how to fuse.
_FUSABLE = {"bert", "roberta", "xlm-roberta", "distilbert", "electra", "mpnet", "camembert"}


def _optimize(model_dir: str, source: str, target: str) -> dict[str, int] | None:
    """The graph fused by onnxruntime's transformer optimizer, or None for a family it does not
    know. Fusion statistics are returned for the manifest."""
    from onnxruntime.transformers.optimizer import optimize_model

    with open(os.path.join(model_dir, "config.json"), encoding="utf-8") as handle:
        config = json.load(handle)
    if config.get("model_type") not in _FUSABLE:
        return None
    optimized = optimize_model(
        source, model_type="bert", num_heads=int(config["num_attention_heads"]),
        hidden_size=int(config["hidden_size"]), opt_level=1,
    )  # fmt: skip
    optimized.save_model_to_file(target)
    return {k: int(v) for k, v in optimized.get_fused_operator_statistics().items() if v}


def _quantize(source: str, target: str) -> None:
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    # Per-channel with reduced range, MatMul weights only: the variant whose parity holds on
    # AVX2 (u8s8 saturation hurts the others; docs/embedding.md, "Runtimes").
    quantize_dynamic(source, target, weight_type=QuantType.QInt8, per_channel=True,
                     reduce_range=True, op_types_to_quantize=["MatMul"],
                     extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})  # fmt: skip


def _parity(
    model_dir: str,
    folder: str,
    manifest: dict[str, object],
    file: str,
    reference: list[list[float]],
) -> dict[str, float]:
    """Min and mean cosine of the file's vectors to the reference's, over the parity texts."""
    encoder = OnnxEncoder(model_dir, {**manifest, "onnx_file": file}, threads=2, breakdown={},
                          folder=folder)  # fmt: skip
    vectors = encoder.encode(PARITY_TEXTS, batch_size=4)
    cosines = [
        float(sum(a * b for a, b in zip(ref, vec, strict=True)))
        for ref, vec in zip(reference, vectors, strict=True)
    ]
    return {"min_cosine": min(cosines), "mean_cosine": sum(cosines) / len(cosines)}


def _export_plain(model_dir: str, path: str) -> str:
    import torch
    from transformers import AutoModel

    try:  # eager attention exports the MatMul/Softmax pattern the optimizer fuses
        base = AutoModel.from_pretrained(model_dir, local_files_only=True,
                                         attn_implementation="eager").eval()  # fmt: skip
    except (TypeError, ValueError):
        base = AutoModel.from_pretrained(model_dir, local_files_only=True).eval()

    class HiddenStates(torch.nn.Module):  # type: ignore[misc]  # exactly three tensor inputs
        def __init__(self) -> None:
            super().__init__()
            self.base = base

        def forward(self, input_ids, attention_mask, token_type_ids):  # type: ignore[no-untyped-def]
            return self.base(input_ids=input_ids, attention_mask=attention_mask,
                             token_type_ids=token_type_ids).last_hidden_state  # fmt: skip

    sample = torch.ones((2, 8), dtype=torch.long)
    axes = {0: "batch", 1: "sequence"}
    torch.onnx.export(
        HiddenStates(), (sample, sample, torch.zeros_like(sample)), path,
        input_names=["input_ids", "attention_mask", "token_type_ids"],
        output_names=["last_hidden_state"],
        dynamic_axes={"input_ids": axes, "attention_mask": axes, "token_type_ids": axes,
                      "last_hidden_state": axes},
        opset_version=OPSET, do_constant_folding=True, dynamo=False,
    )  # fmt: skip
    return str(torch.__version__)


def _digests(folder: str) -> dict[str, str]:
    """sha256 of every file of an export but its manifest."""
    return {name: file_digest(os.path.join(folder, name))
            for name in sorted(os.listdir(folder)) if name != MANIFEST}  # fmt: skip


def _write_manifest(folder: str, manifest: dict[str, object]) -> None:
    path = os.path.join(folder, MANIFEST)
    with open(path + ".tmp", "w", encoding="utf-8") as handle:
        json.dump(manifest, handle, indent=2)
    os.replace(path + ".tmp", path)


def export(model_dir: str, force: bool = False, quiet: bool = False) -> dict[str, object]:
    prepare_process()
    target = os.path.join(model_dir, EXPORT_DIRNAME)
    present = read_manifest(model_dir)
    if not force and present is not None and present.get("variants", {}).get("onnx"):
        if "files" not in present:  # exported before digests were recorded: record them now
            present["files"] = _digests(target)
            _write_manifest(target, present)
        if not quiet:
            print(f"ONNX export present and validated: {target}", file=sys.stderr)
        return present
    pipeline = read_pipeline_config(model_dir)
    if quiet:
        warnings.filterwarnings("ignore")
        logging.disable(logging.WARNING)  # the quantizer logs advice through the root logger
    from sentence_transformers import SentenceTransformer

    started = time.perf_counter()
    staging = target + ".tmp"
    shutil.rmtree(staging, ignore_errors=True)
    os.makedirs(staging)
    torch_version = _export_plain(model_dir, os.path.join(staging, "plain.onnx"))
    reference = (
        SentenceTransformer(model_dir, device="cpu", local_files_only=True)
        .encode(PARITY_TEXTS, batch_size=4, normalize_embeddings=True)
        .tolist()
    )
    manifest: dict[str, object] = {
        "format": EXPORT_FORMAT, "opset": OPSET, **pipeline, "torch": torch_version,
        "parity_texts": len(PARITY_TEXTS),
    }  # fmt: skip
    variants: dict[str, dict[str, object]] = {}
    # Validated in staging through the very encoder code the backends run; nothing outside
    # staging changes until the manifest is complete.
    fused = _optimize(model_dir, os.path.join(staging, "plain.onnx"),
                      os.path.join(staging, "model.onnx"))  # fmt: skip
    if fused is not None:
        parity = _parity(model_dir, staging, manifest, "model.onnx", reference)
        if passes_parity("onnx", parity):
            variants["onnx"] = {"file": "model.onnx", **parity, "fused": fused}
            os.remove(os.path.join(staging, "plain.onnx"))
    if "onnx" not in variants:
        os.replace(os.path.join(staging, "plain.onnx"), os.path.join(staging, "model.onnx"))
        parity = _parity(model_dir, staging, manifest, "model.onnx", reference)
        if not passes_parity("onnx", parity):
            shutil.rmtree(staging, ignore_errors=True)
            raise SystemExit(f"ONNX export failed parity: min cosine {parity['min_cosine']:.6f}")
        variants["onnx"] = {"file": "model.onnx", **parity, "fused": {}}
    int8 = os.path.join(staging, "model.int8.onnx")
    try:  # optional: a graph the quantizer cannot handle keeps its fp32 export
        _quantize(os.path.join(staging, "model.onnx"), int8)
        parity = _parity(model_dir, staging, manifest, "model.int8.onnx", reference)
    except Exception as exc:  # any quantizer failure means: no int8 variant
        print(f"no int8 variant: {type(exc).__name__}: {exc}", file=sys.stderr)
        parity = {"min_cosine": 0.0, "mean_cosine": 0.0}
    if passes_parity("onnx-int8", parity):
        variants["onnx-int8"] = {"file": "model.int8.onnx", **parity}
    elif os.path.exists(int8):
        os.remove(int8)
    manifest["variants"] = variants
    manifest["export_seconds"] = round(time.perf_counter() - started, 2)
    manifest["files"] = _digests(staging)  # every backend checks the file it loads against it
    _write_manifest(staging, manifest)
    shutil.rmtree(target, ignore_errors=True)
    os.rename(staging, target)
    if not quiet:
        summary = ", ".join(f"{k} min cosine {v['min_cosine']:.6f}" for k, v in variants.items())
        print(f"ONNX export validated ({summary}): {target}", file=sys.stderr)
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
