"""hash:<dims>: deterministic unit vectors from SHA-256 of the text. FOR TESTS ONLY: no meaning
at all. Chunks with the bundled model's WordPiece."""

from __future__ import annotations

import hashlib
import math
import struct
from typing import Any

from memex_db.errors import InvalidParameter

PRIORITY = 10
PREFIX = "hash:"


def dimensions(model: str) -> int:
    raw = model[len(PREFIX) :]
    if not raw.isdigit() or not 1 <= int(raw) <= 16000:
        raise InvalidParameter(f"hash provider needs dimensions 1..16000: {model!r}")
    return int(raw)


class HashEncoder:
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


class Hash:
    family = "hash"

    def matches(self, model: str) -> bool:
        return model.startswith(PREFIX)

    def estimate_mb(self, model: str, runtime: str, token_budget: int) -> tuple[str, float]:
        return "hash", 1.0

    def make_encoder(self, model: str, runtime: str, threads: int, breakdown: dict[str, float],
                     endpoint: Any) -> HashEncoder:  # fmt: skip
        return HashEncoder(dimensions(model))

    def model_hash(self, model: str, endpoint: Any) -> str:
        dimensions(model)
        return hashlib.sha256(model.encode()).hexdigest()

    def tokenizer(self, model: str) -> tuple[Any, int]:
        from memex_db import chunking, models

        return chunking.wordpiece(models.resolve_model_dir(models.DEFAULT_MODEL))

    def inference_mb_per_token(self, model: str) -> float:
        return 0.001


PROVIDER = Hash()
