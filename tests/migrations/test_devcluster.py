"""The embedded cluster survives what a machine snapshot or a hand copy does to its files."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

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


@pytest.fixture
def elsewhere(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    """`memex dev` with its clusters in a scratch MEMEX_HOME, on ports of their own."""
    home = Path(tempfile.mkdtemp(prefix="memex-home-"))
    home.chmod(0o755)  # the postgres OS user walks through it
    env = {**os.environ, "MEMEX_HOME": str(home), "MEMEX_DEV_PORT": "5446",
           "MEMEX_DEV_REPLICA_PORT": "5447"}  # fmt: skip
    try:
        yield env
    finally:
        subprocess.run([sys.executable, "-m", "memex.cli", "dev", "down"], env=env,
                       capture_output=True, timeout=120, check=False)  # fmt: skip
        shutil.rmtree(home, ignore_errors=True)


def memex_dev(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "memex.cli", "dev", *args], env=env,
                          capture_output=True, text=True, timeout=180, check=False)  # fmt: skip


@pytest.mark.slow
def test_dev_up_replica_starts_a_hot_standby_of_the_dev_cluster(elsewhere: dict[str, str]) -> None:
    refused = memex_dev(elsewhere, "up", "--replica")
    assert refused.returncode == 1
    assert "the dev cluster is not running" in refused.stderr and "memex dev up" in refused.stderr

    assert memex_dev(elsewhere, "up").returncode == 0
    with psycopg.connect(memex_dev(elsewhere, "dsn").stdout.strip(), autocommit=True) as primary:
        primary.execute("create table made_on_the_primary (n int)")
    started = memex_dev(elsewhere, "up", "--replica")
    assert started.returncode == 0, started.stderr
    assert memex_dev(elsewhere, "status", "--replica").returncode == 0
    with psycopg.connect(memex_dev(elsewhere, "dsn", "--replica").stdout.strip()) as replica:
        assert replica.execute("select pg_is_in_recovery()").fetchone() == (True,)
        assert replica.execute("select to_regclass('made_on_the_primary')::text").fetchone() == (
            "made_on_the_primary",
        )
    assert memex_dev(elsewhere, "down").returncode == 0
    assert memex_dev(elsewhere, "status", "--replica").returncode == 1  # stopped with it
