"""A real Citus cluster for the Citus-mode tests: a coordinator and two workers on this machine,
each a PostgreSQL 15 with citus preloaded, its own port and socket directory, started by the
harness and destroyed afterwards (docs/scale.md, "Citus"). The nodes reach each other through
their Unix sockets: a node's name is its socket directory.

Citus is not in the package registries reachable here: `make citus CITUS_SRC=dir` builds it
from its source. Where citus.so is absent the tests that need it skip, saying so."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psycopg

from memex.devcluster import DEFAULT_DATABASE, Cluster, pg_bindir
from memex.paths import memex_home
from tests.servers import free_port

WORKERS = 2


def _pkglibdir() -> Path:
    out = subprocess.run([str(pg_bindir() / "pg_config"), "--pkglibdir"], capture_output=True,
                         text=True, check=True).stdout  # fmt: skip
    return Path(out.strip())


def citus_missing() -> str | None:
    """Why the Citus tests cannot run here, or None when they can."""
    if not (_pkglibdir() / "citus.so").exists():
        return (
            f"Citus is not installed ({_pkglibdir()}/citus.so is absent): build it with "
            "`make citus CITUS_SRC=dir` from github.com/citusdata/citus at v13.2.2"
        )
    return None


@dataclass(frozen=True)
class CitusCluster:
    coordinator: Cluster
    workers: tuple[Cluster, ...]

    def dsn(self, role: str | None = None) -> str:
        return self.coordinator.dsn(role=role)

    @property
    def nodes(self) -> tuple[Cluster, ...]:
        return (self.coordinator, *self.workers)


def _node(name: str) -> Cluster:
    return Cluster(name, memex_home() / "clusters" / name, free_port(),
                   settings=("shared_preload_libraries = 'citus'", "max_connections = 200",
                             "max_prepared_transactions = 100"))  # fmt: skip


@contextmanager
def citus_cluster() -> Iterator[CitusCluster]:
    """A coordinator and its workers, each with a `memex` database holding the citus extension
    and the workers added; everything stopped and removed on exit."""
    workers = tuple(_node(f"test-citus-{n}") for n in range(1, WORKERS + 1))
    cluster = CitusCluster(_node("test-citus-0"), workers)
    try:
        for node in cluster.nodes:
            shutil.rmtree(node.root, ignore_errors=True)  # a killed run's leftovers
            node.start()  # pg_ctl -w -t 60: bounded
            with psycopg.connect(node.dsn(), autocommit=True) as conn:
                conn.execute("create extension if not exists citus")
        with psycopg.connect(cluster.dsn(), autocommit=True) as conn:
            coordinator = cluster.coordinator
            conn.execute("select citus_set_coordinator_host(%s, %s)",
                         (str(coordinator.socket_dir), coordinator.port))  # fmt: skip
            for worker in cluster.workers:
                conn.execute("select citus_add_node(%s, %s)", (str(worker.socket_dir), worker.port))
        yield cluster
    finally:
        for node in cluster.nodes:
            node.destroy()


__all__ = ["DEFAULT_DATABASE", "CitusCluster", "citus_cluster", "citus_missing"]
