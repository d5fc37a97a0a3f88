"""A real Citus cluster for the Citus-mode tests: a coordinator and two workers on this machine,
each a PostgreSQL 15 with citus preloaded, its own port and socket directory, started by the
harness and destroyed afterwards (docs/scale.md, "Citus"). The nodes reach each other through
their Unix sockets: a node's name is its socket directory.

Citus is not in the package registries reachable here: `make citus CITUS_SRC=dir` builds it
from its source. Where citus.so is absent the tests that need it skip, saying so."""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from psycopg.pq import TransactionStatus

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

    def dsn(self, database: str = DEFAULT_DATABASE, role: str | None = None) -> str:
        return self.coordinator.dsn(database, role=role)

    @property
    def nodes(self) -> tuple[Cluster, ...]:
        return (self.coordinator, *self.workers)


def _node(name: str, logical: bool) -> Cluster:
    root = memex_home() / "clusters" / name
    # citus.local_hostname: how a node reaches itself (EXPLAIN, intermediate results); the
    # nodes listen on their sockets only. wal_level = logical and citus as an output plugin
    # (this PostgreSQL admits only those listed): an online distribution copies tables by
    # logical replication, which fails within the test's time rather than after 2 hours
    replication = ("wal_level = logical",
                   "output_plugin_libraries = 'pgoutput, test_decoding, citus'",
                   "citus.logical_replication_timeout = '2min'") if logical else ()  # fmt: skip
    return Cluster(name, root, free_port(),
                   settings=("shared_preload_libraries = 'citus'", "max_connections = 200",
                             "max_prepared_transactions = 100", *replication,
                             f"citus.local_hostname = '{root / 'run'}'"))  # fmt: skip


@contextmanager
def citus_cluster(
    name: str = "test-citus", workers: int = WORKERS, logical: bool = True
) -> Iterator[CitusCluster]:
    """A coordinator (`<name>-0`) and its workers, each with a `memex` database holding the
    citus extension and the workers added; everything stopped and removed on exit. Without
    `logical`, the nodes keep PostgreSQL's wal_level (replica)."""
    nodes = [_node(f"{name}-{n}", logical) for n in range(workers + 1)]
    cluster = CitusCluster(nodes[0], tuple(nodes[1:]))
    try:
        for node in cluster.nodes:
            shutil.rmtree(node.root, ignore_errors=True)  # a killed run's leftovers
            node.start()  # pg_ctl -w -t 60: bounded
            with psycopg.connect(node.dsn(), autocommit=True) as conn:
                conn.execute("create extension if not exists citus")
        _add_nodes(cluster, cluster.dsn())
        yield cluster
    finally:
        for node in cluster.nodes:
            node.destroy()


CITUS_TEMPLATE = "memex_citus_tmpl"
# Citus reaches the workers as the current role, so `SET ROLE memex_app` (how the database
# tests act as an application) needs these roles to log in there. Test clusters only: a
# deployment's applications log in as their own roles, members of memex_app.
SET_ROLE_TARGETS = ("memex_app", "memex_admin")


def make_template(cluster: CitusCluster, install: Callable[[str], object],
                  distribute: Callable[[str], object]) -> None:  # fmt: skip
    """CITUS_TEMPLATE on every node: memex installed and distributed, the workers added. It
    takes no connections afterwards (Citus's maintenance daemon holds one to every database
    with the extension, and CREATE DATABASE ... TEMPLATE needs none)."""
    dsn = empty_database(cluster, CITUS_TEMPLATE)
    install(dsn)
    distribute(dsn)
    with psycopg.connect(dsn, autocommit=True) as conn:
        for role in SET_ROLE_TARGETS:
            conn.execute(sql.SQL("alter role {} login").format(sql.Identifier(role)))
    for node in cluster.nodes:
        with psycopg.connect(node.dsn(), autocommit=True) as conn:
            conn.execute(f"alter database {CITUS_TEMPLATE} allow_connections false")
            _disconnect(conn, CITUS_TEMPLATE)


def empty_database(cluster: CitusCluster, name: str) -> str:
    """A new database `name` on every node with the citus extension and the workers added,
    without memex; the coordinator's DSN."""
    for node in cluster.nodes:
        _drop(node, name)
        with psycopg.connect(node.dsn(), autocommit=True) as conn:
            conn.execute(sql.SQL("create database {}").format(sql.Identifier(name)))
        with psycopg.connect(node.dsn(name), autocommit=True) as conn:
            conn.execute("create extension citus")
    dsn = cluster.coordinator.dsn(name)
    _add_nodes(cluster, dsn)
    return dsn


def _add_nodes(cluster: CitusCluster, dsn: str) -> None:
    """The coordinator and the workers in the Citus metadata of the database at `dsn`."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        coordinator = cluster.coordinator
        conn.execute("select citus_set_coordinator_host(%s, %s)",
                     (str(coordinator.socket_dir), coordinator.port))  # fmt: skip
        for worker in cluster.workers:
            conn.execute("select citus_add_node(%s, %s)", (str(worker.socket_dir), worker.port))


def _disconnect(conn: psycopg.Connection[tuple[object, ...]], database: str) -> None:
    conn.execute("select pg_terminate_backend(pid, 10000) from pg_stat_activity"
                 " where datname = %s and pid <> pg_backend_pid()", (database,))  # fmt: skip


def _drop(node: Cluster, database: str) -> None:
    """DROP DATABASE ... WITH (FORCE), again while Citus's maintenance daemon, which FORCE
    ends, connects back first (a few tries, 0.2 s apart)."""
    drop = sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(database))
    with psycopg.connect(node.dsn(), autocommit=True) as conn:
        for attempt in range(10):
            try:
                conn.execute(drop)
                return
            except psycopg.errors.ObjectInUse:
                if attempt == 9:
                    raise
                time.sleep(0.2)


_SET_TENANT_FOR_SESSION = re.compile(
    r"(memex\.set_tenant\((?:[^()]|\([^()]*\))*?,\s*(?:is_local\s*=>\s*)?)false\)", re.I
)
_NOT_IN_A_BLOCK = re.compile(
    r"^\s*(call|vacuum|begin|start|commit|rollback|copy|create database|drop database"
    r"|alter system|\w+ index concurrently|\w+ \w+ index concurrently)\b",
    re.I,
)


class TenantPerTransaction(psycopg.Connection[Any]):
    """The database suites act for a tenant for the session (`set_tenant(t, false)`); memex
    refuses that on Citus, where a session's setting never reaches the workers. Run with
    --citus, their connections are of this class: such a set_tenant runs for its transaction
    and the tenant is kept as the session's value on the coordinator, and every transaction
    that begins later first sets it with SET LOCAL (what memex._act_for does), as an
    application sets its tenant in each transaction."""

    def _bind_session_tenant(self) -> None:
        tenant = super().execute("select current_setting('memex.tenant_id', true)").fetchone()
        if tenant is not None and tenant[0]:
            super().execute("set local citus.propagate_set_commands = local")
            super().execute(
                sql.SQL("set local memex.tenant_id = {}").format(sql.Literal(tenant[0]))
            )

    def _run(self, query: Any, params: Any, kwargs: Any, *, begins: bool) -> Any:
        text = query if isinstance(query, str) else ""
        for_session = _SET_TENANT_FOR_SESSION.sub(r"\1true)", text)
        if for_session != text:
            cursor = super().execute(for_session, params, **kwargs)
            super().execute("select set_config('memex.tenant_id',"
                            " current_setting('memex.tenant_id'), false)")  # fmt: skip
            return cursor
        if begins:
            self._bind_session_tenant()
        return super().execute(query, params, **kwargs)

    def execute(self, query: Any, params: Any = None, **kwargs: Any) -> Any:  # type: ignore[override]
        idle = self.info.transaction_status == TransactionStatus.IDLE
        if isinstance(query, sql.Composable):
            query = query.as_string(self)
        if isinstance(query, str) and _NOT_IN_A_BLOCK.match(query):
            return super().execute(query, params, **kwargs)
        if idle and self.autocommit:
            with self.transaction():
                return self._run(query, params, kwargs, begins=False)  # transaction() bound it
        return self._run(query, params, kwargs, begins=idle)

    @contextmanager
    def transaction(self, *args: Any, **kwargs: Any) -> Iterator[Any]:  # type: ignore[override]
        outermost = self.info.transaction_status == TransactionStatus.IDLE
        with super().transaction(*args, **kwargs) as tx:
            if outermost:
                self._bind_session_tenant()
            yield tx


def create_database(cluster: CitusCluster, name: str) -> str:
    """A clone of CITUS_TEMPLATE under `name` on every node (Citus finds a shard in the
    worker's database of the coordinator's name); the coordinator's DSN."""
    for node in cluster.nodes:
        with psycopg.connect(node.dsn(), autocommit=True) as conn:
            conn.execute(sql.SQL("create database {} template {}").format(
                sql.Identifier(name), sql.Identifier(CITUS_TEMPLATE)))  # fmt: skip
    return cluster.dsn(name)


def drop_database(cluster: CitusCluster, name: str) -> None:
    for node in cluster.nodes:
        _drop(node, name)


__all__ = ["DEFAULT_DATABASE", "CitusCluster", "citus_cluster", "citus_missing"]
