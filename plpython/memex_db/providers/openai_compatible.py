"""endpoint:NAME: an OpenAI-compatible /v1/embeddings endpoint (memex.endpoints, memex_db.remote).
The model runs elsewhere; texts are chunked with the bundled model's WordPiece (counts close to
most BERT-family models')."""

from __future__ import annotations

from typing import Any

from memex_db import remote

PRIORITY = 20


class OpenAICompatible:
    family = remote.PROVIDER

    def matches(self, model: str) -> bool:
        return remote.endpoint_name(model) is not None

    def estimate_mb(self, model: str, runtime: str, token_budget: int) -> tuple[str, float]:
        return remote.PROVIDER, 5.0  # an HTTP pool: the model runs elsewhere

    def make_encoder(self, model: str, runtime: str, threads: int, breakdown: dict[str, float],
                     endpoint: remote.Endpoint | None) -> remote.RemoteEncoder:  # fmt: skip
        return remote.RemoteEncoder(remote.required(model, endpoint), breakdown)

    def model_hash(self, model: str, endpoint: remote.Endpoint | None) -> str:
        return remote.required(model, endpoint).signature()

    def tokenizer(self, model: str) -> tuple[Any, int]:
        from memex_db import chunking, models

        return chunking.wordpiece(models.resolve_model_dir(models.DEFAULT_MODEL))

    def inference_mb_per_token(self, model: str) -> float:
        return 0.001


PROVIDER = OpenAICompatible()
