"""The `wordllama` provider: the static embedding model shipped inside the wordllama wheel
(l2_supercat, 256 dimensions, 16 MB): token embeddings averaged, no transformer, so thousands of
texts a second on one core at a lower quality than MiniLM (docs/embedding.md has both).

Vectors are the package's own `embed(texts, norm=True)` (tests compare them, cosine >= 0.9999),
with one difference: memex truncates at MAX_TOKENS tokens, as transformer models do, so that a
batch's padded size stays bounded. Nothing is ever downloaded (disable_download).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

NAME = "wordllama"
CONFIG = "l2_supercat"
DIMENSIONS = 256
MAX_TOKENS = 512


def _import_wordllama() -> Any:
    # Its import calls logging.basicConfig(INFO): with no root handler that would route every
    # library's INFO lines to the server log. A NullHandler makes basicConfig a no-op.
    root = logging.getLogger()
    if not root.handlers:
        root.addHandler(logging.NullHandler())
    from wordllama import WordLlama

    return WordLlama


def _package_dir() -> Path:
    """The installed package: it holds weights/ and tokenizers/. Passed as the cache directory,
    since the package looks for its tokenizer in tokenizer/ (singular) of its own tree and
    would otherwise want ~/.cache or the network."""
    import wordllama

    return Path(wordllama.__file__).parent


def files() -> list[Path]:
    """The model's weights and tokenizer files, inside the installed wheel."""
    wordllama = _import_wordllama()
    uri = getattr(wordllama._wordllama, CONFIG)
    return [
        Path(wordllama.resolve_file(config_name=CONFIG, model_uri=uri, dim=DIMENSIONS,
                                    binary=False, file_type=kind, cache_dir=_package_dir(),
                                    disable_download=True))
        for kind in ("weights", "tokenizer")
    ]  # fmt: skip


def load_tokenizer() -> Any:
    """The model's tokenizer, without padding or truncation (chunking counts with it)."""
    wordllama = _import_wordllama()
    tokenizer = wordllama.load_tokenizer(files()[1], hf_model_id=None)
    tokenizer.no_padding()
    tokenizer.no_truncation()
    return tokenizer


class WordLlamaEncoder:
    provider = NAME
    dimensions = DIMENSIONS
    max_tokens = MAX_TOKENS
    token_budget = 0  # static embeddings: a batch costs tokens x 256 floats, nothing quadratic

    def __init__(self, threads: int, breakdown: dict[str, float]):
        from memex_db.environment import now

        started = now()
        wordllama = _import_wordllama()
        breakdown["import_wordllama"] = now() - started
        started = now()
        self.model = wordllama.load(config=CONFIG, dim=DIMENSIONS, cache_dir=_package_dir(),
                                    disable_download=True)  # fmt: skip
        self.model.tokenizer.enable_truncation(max_length=MAX_TOKENS)
        breakdown["load_model"] = now() - started
        self.threads = threads

    def set_threads(self, threads: int) -> None:
        self.threads = threads  # a gather and a mean in numpy: nothing to size

    def encode(self, texts: list[str], batch_size: int) -> list[list[float]]:
        import numpy

        # Sorted by length: the package pads each batch to its longest text.
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        vectors = self.model.embed([texts[i] for i in order], norm=True, batch_size=batch_size)
        out: list[list[float]] = [[] for _ in texts]
        for position, i in enumerate(order):
            row = vectors[position]
            # A text with no token at all (an empty string) averages nothing: NaN. It gets a
            # fixed unit vector, as a transformer gives one to its special tokens alone.
            out[i] = (
                row.tolist()
                if bool(numpy.isfinite(row).all())
                else [1.0] + [0.0] * (DIMENSIONS - 1)
            )
        return out
