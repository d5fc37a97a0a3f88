"""memex on a real Citus cluster (a coordinator and two workers on this machine, tests/citus.py).
Skipped where Citus is not installed (`make citus CITUS_SRC=dir`). What runs here today is
the stock install; the distribution itself is issue 27's work in progress (docs/scale.md)."""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest

from memex.install import install
from tests.citus import WORKERS, CitusCluster, citus_cluster, citus_missing

pytestmark = pytest.mark.skipif(citus_missing() is not None, reason=str(citus_missing()))


@pytest.fixture(scope="module")
def citus() -> Iterator[CitusCluster]:
    with citus_cluster() as cluster:
        yield cluster


def test_memex_installs_on_a_citus_coordinator_and_a_rerun_changes_nothing(
    citus: CitusCluster,
) -> None:
    install(citus.dsn(), say=lambda _m: None)
    with psycopg.connect(citus.dsn()) as conn:
        assert conn.execute("select count(*) from citus_get_active_worker_nodes()").fetchone() == (
            WORKERS,
        )
        before = conn.execute("select count(*) from memex.installs").fetchone()
    install(citus.dsn(), say=lambda _m: None)
    with psycopg.connect(citus.dsn()) as conn:
        assert conn.execute("select count(*) from memex.installs").fetchone() == before
        # the extensions memex needs went to every worker with it (Citus propagates them)
        found = conn.execute(
            "select result from run_command_on_workers("
            "$$select string_agg(extname, ',' order by extname) from pg_extension$$)"
        ).fetchall()
    assert all({"plpython3u", "vector"} <= set(row[0].split(",")) for row in found)
