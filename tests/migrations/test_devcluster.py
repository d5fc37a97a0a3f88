"""The embedded cluster survives what a machine snapshot or a hand copy does to its files."""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest

from memex.devcluster import Cluster, cluster


@pytest.fixture
def scratch_cluster(monkeypatch: pytest.MonkeyPatch) -> Iterator[Cluster]:
    monkeypatch.setenv("MEMEX_SCRATCH_PORT", "5442")
    scratch = cluster("scratch")
    scratch.destroy()
    yield scratch
    scratch.destroy()


@pytest.mark.slow
def test_start_repairs_a_data_directory_left_world_readable(scratch_cluster: Cluster) -> None:
    scratch_cluster.start()
    scratch_cluster.stop()
    scratch_cluster.data_dir.chmod(0o755)

    scratch_cluster.start()

    assert scratch_cluster.data_dir.stat().st_mode & 0o777 == 0o700
    with psycopg.connect(scratch_cluster.dsn()) as conn:
        assert conn.execute("select 1").fetchone() == (1,)
