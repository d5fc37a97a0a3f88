"""memex on a real Citus cluster (a coordinator and two workers on this machine, tests/citus.py),
distributed by `memex install --citus`, against a single node holding the same data. Skipped
where Citus is not installed (`make citus CITUS_SRC=dir`). Run as the superuser: RLS as
memex_app on the workers is not done yet (docs/scale.md, "Citus")."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from memex.citus import REFERENCE_TABLES, TENANT_TABLES, distribute
from memex.install import install
from tests.citus import WORKERS, CitusCluster, citus_cluster, citus_missing

pytestmark = pytest.mark.skipif(citus_missing() is not None, reason=str(citus_missing()))

DOCUMENTS = {
    "acme": {
        "backups.md": "PostgreSQL backups run nightly with pg_dump; WAL archiving covers the "
        "hours between, and a restore is rehearsed every month.",
        "cats.md": "The office cat sleeps on the server rack, where the air is warm.",
        "vacuum.md": "Autovacuum keeps table bloat in check; tune its cost limit on busy tables.",
    },
    "globex": {
        "widgets.md": "Globex sells widgets, and backups of widget designs live in a vault.",
        "hr.md": "Holidays are booked through the HR portal two weeks ahead.",
    },
}
QUERIES = ("nightly backups", "warm cat", "table bloat", "widget vault", "holiday booking")


@pytest.fixture(scope="module")
def citus() -> Iterator[CitusCluster]:
    with citus_cluster() as cluster:
        install(cluster.dsn(), say=lambda _m: None)
        assert distribute(cluster.dsn(), say=lambda _m: None)
        yield cluster


def _load(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        for tenant, docs in DOCUMENTS.items():
            conn.execute("select memex.create_tenant(%s)", (tenant,))
            with conn.transaction():
                conn.execute("select memex.set_tenant(%s)", (tenant,))
                for uri, text in docs.items():
                    conn.execute("select memex.upsert_document(%s, %s)", (uri, text))
        conn.execute("call memex.embed_pending()")


def _answers(dsn: str) -> dict[str, Any]:
    found: dict[str, Any] = {}
    with psycopg.connect(dsn, autocommit=True) as conn:
        for tenant in DOCUMENTS:
            with conn.transaction():
                conn.execute("select memex.set_tenant(%s)", (tenant,))
                for mode in ("hybrid", "vector", "text"):
                    for q in QUERIES:
                        found[f"{tenant} {mode} {q}"] = conn.execute(
                            "select metadata ->> 'uri', round(score::numeric, 6)::text"
                            " from memex.rag_search(%s, k => 3, mode => %s)", (q, mode),
                        ).fetchall()  # fmt: skip
                found[f"{tenant} context"] = conn.execute(
                    "select memex.compose_context('nightly backups', 300)").fetchone()  # fmt: skip
                found[f"{tenant} text index"] = conn.execute(
                    "select language, sum(chunks), sum(tokens) from memex.text_segments"
                    " where tenant_id = memex.current_tenant() group by 1"
                ).fetchall()
    return found


def test_install_citus_distributes_by_tenant_and_a_rerun_changes_nothing(
    citus: CitusCluster,
) -> None:
    with psycopg.connect(citus.dsn()) as conn:
        assert conn.execute("select count(*) from citus_get_active_worker_nodes()").fetchone() == (
            WORKERS,
        )
        kinds = dict(conn.execute(
            "select logicalrelid::regclass::text, partmethod::text || ':' || colocationid"
            " from pg_dist_partition").fetchall())  # fmt: skip
    tenant_kinds = {kinds[f"memex.{t}"] for t in TENANT_TABLES}
    assert len(tenant_kinds) == 1 and next(iter(tenant_kinds)).startswith("h:")  # one group
    assert all(kinds[f"memex.{t}"].startswith("n:") for t in REFERENCE_TABLES)
    assert "memex.worker_heartbeats" not in kinds  # bookkeeping stays on the coordinator
    report = install(citus.dsn(), say=lambda _m: None)
    assert not report.migrations_applied
    assert not distribute(citus.dsn(), say=lambda _m: None)


def test_the_workflow_on_citus_equals_a_single_node(citus: CitusCluster, db: str) -> None:
    """Upserts, CALL embed_pending (every pending chunk embedded: the tenant reaches the
    workers inside a CALL), searches in every mode, compose_context, the text index's
    statistics, and a delete_document: the same on both."""
    for dsn in (citus.dsn(), db):
        _load(dsn)
        with psycopg.connect(dsn) as conn:
            assert conn.execute("select memex.pending_count()").fetchone() == (0,)
            assert conn.execute("select count(*) from memex.embeddings").fetchone() == (5,)
    assert _answers(citus.dsn()) == _answers(db)
    for dsn in (citus.dsn(), db):
        with psycopg.connect(dsn) as conn:
            conn.execute("select memex.set_tenant('acme')")
            assert conn.execute("select memex.delete_document('cats.md')").fetchone() == (True,)
            conn.commit()
    assert _answers(citus.dsn()) == _answers(db)
