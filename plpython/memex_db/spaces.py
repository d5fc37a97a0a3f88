"""Embedding spaces seen from Python: which model a space uses, and its vectors.

A space (row of memex.spaces) fixes provider, model, dimensions and distance. Vectors of a
space are the model's output truncated to the space's dimensions and re-normalised, so a
smaller space is a cheaper index over the same model. Every vector leaving here has exactly
the space's dimensions: nothing of one space can be compared with another's by accident.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from memex_db import catalog, models, remote
from memex_db.errors import EnvironmentBroken
from memex_db.plpy_types import GD, Plpy, cached_plan


@dataclass(frozen=True)
class Space:
    id: int
    name: str
    provider: str
    model: str
    dimensions: int
    model_dimensions: int
    domain: str
    distance: str
    runtime: str | None  # options.runtime: overrides memex.embed_runtime for this space
    status: str

    @classmethod
    def from_row(cls, row: Any) -> Space:
        import json

        options = row["options"]
        if isinstance(options, str):
            options = json.loads(options)
        return cls(
            id=int(row["id"]), name=row["name"], provider=row["provider"], model=row["model"],
            dimensions=int(row["dimensions"]), model_dimensions=int(row["model_dimensions"]),
            domain=row["domain"], distance=row["distance"], runtime=(options or {}).get("runtime"),
            status=row["status"],
        )  # fmt: skip


def lookup(plpy: Plpy, gd: GD, name: str | None) -> Space:
    """The named space, or the active text space when name is null: memex._space, the one
    lookup SQL and Python share (22023 for an unknown name, P0002 with no active space). Read
    every call (a prepared plan, microseconds): activate_space takes effect at the next
    statement."""
    plan = cached_plan(plpy, gd, "space", catalog.SPACE_SQL.format("$1"), ["text"])
    return Space.from_row(plpy.execute(plan, [name])[0])


def fit(vector: list[float], space: Space) -> list[float]:
    """The model's vector in the space's dimensions: truncated and re-normalised if smaller."""
    if len(vector) != space.model_dimensions:
        # A local model that changed is the server's environment (58000); a remote endpoint
        # answering other dimensions is bad data from outside (22000).
        raise EnvironmentBroken(
            f"model {space.model!r} produced {len(vector)} dimensions but space {space.name!r} "
            f"was created for {space.model_dimensions}",
            hint="the model on the server changed under this space: restore it, or re-embed into "
            "a new space (CALL memex.reembed(...))",
            sqlstate="22000" if remote.endpoint_name(space.model) else None,
        )
    if space.dimensions == space.model_dimensions:
        return vector
    head = vector[: space.dimensions]
    norm = math.sqrt(sum(v * v for v in head)) or 1.0
    return [v / norm for v in head]


def describe_model(
    gd: GD,
    model: str,
    threads: int,
    budget_mb: int,
    runtime: str,
    endpoint: remote.Endpoint | None = None,
) -> tuple[str, int]:
    """(provider, native dimensions) of a model, loading it (once per backend) to be sure."""
    from memex_db import providers

    loaded = models.load(gd, model, threads, budget_mb, runtime, endpoint=endpoint)
    return providers.for_model(model).family, loaded.encoder.dimensions


# Vectors cross from Python to SQL as text that pgvector parses. str() of a list of floats
# spells each with up to 17 digits (0.82 s for 2,000 vectors of 384, about 3% of embed_batch
# on short texts); fixed-point integers with an exponent ("123456789e-10") come out of numpy
# 3x faster and 35% shorter, so pgvector parses them faster too. At 1e-10 this is exact to
# float32 for components above about 0.001 and within 5e-11 below.
VECTOR_SCALE = 10_000_000_000


def vector_literals(vectors: list[list[float]]) -> list[str]:
    """pgvector input for each vector: '[123e-10,-45e-10,...]'."""
    if not vectors:
        return []
    import numpy

    values = numpy.asarray(vectors, dtype=numpy.float64)
    if not numpy.isfinite(values).all():  # pgvector refuses them too: say where they came from
        raise EnvironmentBroken(
            "the model returned a vector holding NaN or infinity", sqlstate="22000",
            hint="a remote endpoint's answer, or a broken model file: nothing was stored",
        )  # fmt: skip
    if numpy.abs(values).max() >= 1e8:  # would overflow int64 once scaled
        return [str(list(v)) for v in vectors]
    scaled = numpy.rint(values * VECTOR_SCALE).astype(numpy.int64)
    return ["[" + "e-10,".join(map(str, row)) + "e-10]" for row in scaled.tolist()]
