"""Embedding providers, one module each (docs/architecture.md, "Where a change goes").

A provider module defines `PROVIDER`, an object with the interface below, and `PRIORITY`:
modules are asked in increasing priority whether they serve a model name, and the last one
(sentence-transformers, local model directories) serves every name the others do not. Its
`family` is the value of `memex.spaces.provider`; the installer registers every family in
`memex.providers` (the spaces' foreign key), so a new provider needs no migration.
"""

from __future__ import annotations

import importlib
import pkgutil
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from memex_db.models import Encoder
    from memex_db.remote import Endpoint


class Provider(Protocol):
    family: str

    def matches(self, model: str) -> bool:
        """Whether this provider serves the model name (checked in priority order)."""
        ...

    def estimate_mb(self, model: str, runtime: str, token_budget: int) -> tuple[str, float]:
        """(what will serve it, resident MB its load and largest batch add), before loading."""
        ...

    def make_encoder(self, model: str, runtime: str, threads: int, breakdown: dict[str, float],
                     endpoint: Endpoint | None) -> Encoder:  # fmt: skip
        ...

    def model_hash(self, model: str, endpoint: Endpoint | None) -> str:
        """What the model computes, as a digest: part of a space's signature for reembed."""
        ...

    def tokenizer(self, model: str) -> tuple[Any, int]:
        """(tokenizer, largest chunk in tokens) that chunks text for this model."""
        ...

    def inference_mb_per_token(self, model: str) -> float:
        """A batch's working memory per padded token in this backend."""
        ...


_REGISTRY: list[Provider] = []


def registry() -> list[Provider]:
    """Every provider of this package, in priority order (imported once: light modules)."""
    if not _REGISTRY:
        found = []
        for info in pkgutil.iter_modules(__path__):
            module = importlib.import_module(f"{__name__}.{info.name}")
            found.append((int(module.PRIORITY), module.PROVIDER))
        _REGISTRY.extend(provider for _priority, provider in sorted(found, key=lambda f: f[0]))
    return _REGISTRY


def for_model(model: str) -> Provider:
    return next(provider for provider in registry() if provider.matches(model))


def families() -> list[str]:
    """The values memex.spaces.provider may take (the installer fills memex.providers)."""
    return sorted({provider.family for provider in registry()})
