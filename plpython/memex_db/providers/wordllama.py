"""wordllama: the static embedding model inside the wordllama wheel (memex_db.wordllama_model):
a lookup table, no attention, its own tokenizer."""

from __future__ import annotations

import os
from typing import Any

from memex_db import wordllama_model

PRIORITY = 30


class WordLlama:
    family = wordllama_model.NAME

    def matches(self, model: str) -> bool:
        return model == wordllama_model.NAME

    def estimate_mb(self, model: str, runtime: str, token_budget: int) -> tuple[str, float]:
        weights = sum(p.stat().st_size for p in wordllama_model.files()) / 2**20
        return wordllama_model.NAME, weights * 2

    def make_encoder(self, model: str, runtime: str, threads: int, breakdown: dict[str, float],
                     endpoint: Any) -> wordllama_model.WordLlamaEncoder:  # fmt: skip
        return wordllama_model.WordLlamaEncoder(threads, breakdown)

    def model_hash(self, model: str, endpoint: Any) -> str:
        from memex_db import models

        paths = wordllama_model.files()
        root = os.path.commonpath([str(p.parent) for p in paths])
        return models.files_digest(root, [models.file_entry(root, str(p)) for p in paths])

    def tokenizer(self, model: str) -> tuple[Any, int]:
        return wordllama_model.load_tokenizer(), wordllama_model.MAX_TOKENS

    def inference_mb_per_token(self, model: str) -> float:
        return 0.001


PROVIDER = WordLlama()
