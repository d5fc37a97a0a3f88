"""`memex import langchain|llamaindex|legacy`: the data of another store into a tenant, written
through the same upserts as `memex ingest` (so a second run changes nothing), with the
source's vectors kept where its model is the space's (checked on a sample: the space's model
re-embeds it, cosine >= 0.999); other rows wait for embedding. docs/integrations.md."""

from __future__ import annotations

import math
from collections import Counter
from contextlib import closing
from dataclasses import dataclass, field
from itertools import islice
from typing import Any

import psycopg
from psycopg import sql

from memex.dsn import connect
from memex.errors import MemexError
from memex.imports.sources import (
    SOURCES,
    LangChainSource,
    LegacySource,
    LlamaIndexSource,
    Record,
    Source,
    Vector,
)
from memex.ingest.store import store
from memex.progress import progress
from memex.tenants import check_tenant
from memex_db import catalog

SAMPLE = 8  # texts per source model re-embedded to decide whether its vectors are the space's
SAME_MODEL = 0.999  # the least cosine between a source vector and the space's own, on each
BATCH = 200  # records a transaction
CHUNKS = {  # where a source's text landed: its chunks in memex whose content is that text
    "document": "join memex.documents as d on d.tenant_id = c.tenant_id and d.id = c.document_id"
    " where d.uri = %s",
    "message": "join memex.messages as m on m.tenant_id = c.tenant_id and m.id = c.message_id"
    " join memex.conversations as v on v.tenant_id = m.tenant_id and v.id = m.conversation_id"
    " where v.slug = %s and m.seq = %s",
    "summary": "join memex.summaries as s on s.tenant_id = c.tenant_id and s.id = c.summary_id"
    " join memex.conversations as v on v.tenant_id = s.tenant_id and v.id = s.conversation_id"
    " where v.slug = %s and s.level = %s and s.index = %s",
}


@dataclass
class ModelCheck:
    model: str | None
    same: bool
    least_cosine: float | None
    why: str = ""


@dataclass
class ImportReport:
    kind: str
    outcomes: Counter[str] = field(default_factory=Counter)
    failures: list[tuple[str, str]] = field(default_factory=list)
    checks: list[ModelCheck] = field(default_factory=list)
    vectors_kept: int = 0
    vectors_present: int = 0  # kept by an earlier run: nothing to write

    def summary(self) -> str:
        counts = ", ".join(f"{self.outcomes[o]} {o}"
                           for o in ("inserted", "updated", "unchanged"))  # fmt: skip
        lines = [f"{sum(self.outcomes.values()) + len(self.failures)} records from {self.kind}: "
                 f"{counts}, {len(self.failures)} failed"]  # fmt: skip
        for check in self.checks:
            model = f"model {check.model!r}" if check.model else "the source's vectors"
            if check.same:
                lines.append(f"{model}: the space's own (least cosine {check.least_cosine:.5f} on "
                             f"a sample): vectors kept, not re-embedded")  # fmt: skip
            else:
                lines.append(f"{model}: not the space's ({check.why}): its texts wait for "
                             "embedding")  # fmt: skip
        lines.append(f"vectors kept: {self.vectors_kept} written, {self.vectors_present} "
                     "already there")  # fmt: skip
        return "\n".join(lines)


def _parse(vector: str) -> list[float]:
    return [float(x) for x in vector.strip("[]").split(",") if x.strip()]


def _cosine(a: list[float], b: list[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    norm = math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b))
    return dot / norm if norm else 0.0


def _samples(source: Source) -> dict[str | None, list[Vector]]:
    """Up to SAMPLE vectors of each source model, from the first records."""
    found: dict[str | None, list[Vector]] = {}
    with closing(source.records()) as records:  # closed early: its cursor's transaction ends
        for record in islice(records, 5000):
            for vector in record.vectors:
                kept = found.setdefault(vector.model, [])
                if len(kept) < SAMPLE and vector.text.strip():
                    kept.append(vector)
            if found and all(len(v) >= SAMPLE for v in found.values()):
                break
    return found


def check_models(conn: psycopg.Connection[Any], source: Source) -> list[ModelCheck]:
    """Each source model against the active text space: its sample re-embedded there."""
    row = conn.execute(
        "select s.dimensions from memex.spaces as s where s.id = memex._space_id()"
    ).fetchone()
    dimensions = int(row[0]) if row else 0
    checks = []
    for model, sample in _samples(source).items():
        vectors = [_parse(v.vector) for v in sample]
        if any(len(v) != dimensions for v in vectors):
            sizes = sorted({len(v) for v in vectors})
            checks.append(ModelCheck(model, False, None, f"{sizes[0]} dimensions, the space has "
                                                          f"{dimensions}"))  # fmt: skip
            continue
        ours = conn.execute("select array_agg(memex.embed(t)::text order by n) from "
                            "unnest(%s::text[]) with ordinality as x (t, n)",
                            ([v.text for v in sample],)).fetchone()  # fmt: skip
        assert ours is not None
        least = min(_cosine(a, _parse(b)) for a, b in zip(vectors, ours[0], strict=True))
        why = f"least cosine {least:.3f} on a sample, under {SAME_MODEL}"
        checks.append(ModelCheck(model, least >= SAME_MODEL, least, why))
    return checks


def _vector_type(conn: psycopg.Connection[Any]) -> sql.Composable:
    row = conn.execute(catalog.VECTOR_SCHEMA_SQL).fetchone()
    if row is None:
        raise MemexError("pgvector is not installed in the target database (memex install)")
    return sql.Identifier(str(row[0]), "vector")


def _landed(conn: psycopg.Connection[Any], vector: Vector) -> list[tuple[Any, Any]]:
    """The chunks (id, content hash) of the text a source vector was made from, when memex
    kept that text as one chunk of the text domain (so the model embeds that very text)."""
    where = CHUNKS[vector.lands[0]]
    rows = conn.execute(
        "select c.id, c.content_hash from memex.chunks as c " + where +  # noqa: S608 - constants
        " and c.content = %s and c.domain = 'text'", (*vector.lands[1:], vector.text),
    ).fetchall()  # fmt: skip
    return [(r[0], r[1]) for r in rows]


def _keep_vectors(conn: psycopg.Connection[Any], vector_type: sql.Composable,
                  found: list[tuple[Any, Any, str]]) -> tuple[int, int]:  # fmt: skip
    """Stores source vectors for their chunks in the active space: (written, already there)."""
    if not found:
        return 0, 0
    statement = sql.SQL(
        "select memex._store_embeddings(memex._space_id(), %s::uuid[], %s::bytea[],"
        " %s::text[]::{}[])"
    ).format(vector_type)
    columns = ([f[0] for f in found], [f[1] for f in found], [f[2] for f in found])
    row = conn.execute(statement, columns).fetchone()
    written = int(row[0]) if row and row[0] is not None else 0
    return written, len(found) - written


def _write(conn: psycopg.Connection[Any], record: Record, keep: set[str | None],
           report: ImportReport) -> list[tuple[Any, Any, str]]:  # fmt: skip
    """One record in its own savepoint: a failure is reported and the others go on."""
    try:
        with conn.transaction():
            report.outcomes[store(conn, record.item).outcome] += 1
            return [(chunk, digest, v.vector) for v in record.vectors if v.model in keep
                    for chunk, digest in _landed(conn, v)]  # fmt: skip
    except psycopg.Error as exc:
        message = exc.diag.message_primary or str(exc).strip()
        report.failures.append((record.key, f"[{exc.sqlstate}] {message}"))
        return []


def run_import(
    kind: str, dsn: str, tenant: str, *, source_dsn: str | None = None, name: str | None = None,
    schema: str = "public", batch: int = BATCH,
) -> ImportReport:  # fmt: skip
    """Reads the source (checked to be of `kind` before anything is written) and writes it
    into the tenant, BATCH records a transaction; a record that fails is reported."""
    if kind not in SOURCES:
        raise MemexError(f"unknown source {kind!r}; known: {', '.join(sorted(SOURCES))}")
    report = ImportReport(kind)
    with connect(source_dsn or dsn) as source_conn, connect(dsn) as conn:
        source = _open(kind, source_conn, schema, name)
        check_tenant(conn, tenant, None)
        vector_type = _vector_type(conn)
        with conn.transaction():
            conn.execute("select memex.set_tenant(%s)", (tenant,))
            report.checks = check_models(conn, source)
        keep = {c.model for c in report.checks if c.same}
        records = source.records()
        bar: Any = progress(total=source.count(), desc=f"importing from {kind}", unit="row")
        while chunk := list(islice(records, batch)):
            with conn.transaction():
                conn.execute("select memex.set_tenant(%s)", (tenant,))
                found = [f for record in chunk for f in _write(conn, record, keep, report)]
                written, present = _keep_vectors(conn, vector_type, found)
            report.vectors_kept += written
            report.vectors_present += present
            bar.update(len(chunk))
        bar.close()
    return report


def _open(kind: str, conn: psycopg.Connection[Any], schema: str, name: str | None) -> Source:
    if kind == "legacy":
        return LegacySource(conn, schema)
    if not name:
        flag = "--collection" if kind == "langchain" else "--table"
        raise MemexError(f"memex import {kind} needs {flag} NAME")
    if kind == "langchain":
        return LangChainSource(conn, schema, name)
    return LlamaIndexSource(conn, schema, name)
