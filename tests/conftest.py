"""Shared fixtures: memex's test cluster (`memex dev`'s, started as `postgres`, reused between
runs), served to pytest-postgresql as an existing server (its noproc fixture), whose template
database the real installer loads once per session; each test gets a clone of it (the
library's DatabaseJanitor creates and drops the databases)."""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from pytest_postgresql import factories
from pytest_postgresql.executors import NoopExecutor
from pytest_postgresql.janitor import DatabaseJanitor

from memex import paths
from memex.citus import distribute
from memex.devcluster import Cluster, cluster, pg_bindir
from memex.install import install
from tests import citus

TEST_CLUSTER = cluster("test")
BASE = "memex"
TEMPLATE = f"{BASE}_tmpl"  # pytest-postgresql's name for the template of BASE


def _extension_dir() -> Path:
    """The extension directory of the server the tests start (its pg_config's SHAREDIR)."""
    sharedir = subprocess.run(
        [str(pg_bindir() / "pg_config"), "--sharedir"], capture_output=True, text=True, check=True
    ).stdout.strip()
    return Path(sharedir) / "extension"


EXTENSION_DIR = _extension_dir()
HIDDEN_SUFFIX = ".memex-test-hidden"


def _restore_hidden_extensions() -> None:
    """A killed run of the missing-prerequisite tests may have left a control file hidden."""
    for hidden in EXTENSION_DIR.glob(f"*{HIDDEN_SUFFIX}"):
        hidden.rename(str(hidden)[: -len(HIDDEN_SUFFIX)])


@pytest.fixture(scope="session")
def pg_cluster() -> Cluster:
    _restore_hidden_extensions()
    TEST_CLUSTER.start()
    return TEST_CLUSTER


def _install_memex(*, dbname: str, **_connection: object) -> None:
    """pytest-postgresql's loader for the template: the real installer, once per session."""
    install(TEST_CLUSTER.dsn(dbname), say=lambda _m: None)


memex_noproc = factories.postgresql_noproc(
    host=str(TEST_CLUSTER.socket_dir), port=TEST_CLUSTER.port, user="postgres", dbname=BASE,
    load=[_install_memex],
)  # fmt: skip


@pytest.fixture(scope="session")
def memex_server(pg_cluster: Cluster, request: pytest.FixtureRequest) -> NoopExecutor:
    """The test cluster as pytest-postgresql's existing server, its template installed."""
    server: NoopExecutor = request.getfixturevalue("memex_noproc")
    return server


def admin_dsn(pg: Cluster, database: str = "postgres") -> str:
    return pg.dsn(database)


def _janitor(pg: Cluster, name: str, template: str | None = None) -> DatabaseJanitor:
    return DatabaseJanitor(
        user="postgres", host=str(pg.socket_dir), port=pg.port, dbname=name,
        template_dbname=template,
    )  # fmt: skip


def create_database(pg: Cluster, name: str, template: str | None = None) -> str:
    """A new database (a clone of `template` when given), replacing one of that name."""
    janitor = _janitor(pg, name, template)
    janitor.drop()
    janitor.init()
    return pg.dsn(name)


def drop_database(pg: Cluster, name: str) -> None:
    _janitor(pg, name).drop()


@pytest.fixture(scope="session")
def template_dsn(pg_cluster: Cluster, memex_server: NoopExecutor) -> str:
    return pg_cluster.dsn(memex_server.template_dbname)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--citus", action="store_true",
        help="the `db` fixture is a database on a Citus cluster (a coordinator and 2 workers "
        "started by tests/citus.py), memex installed and distributed: `make test-citus`",
    )  # fmt: skip


def on_citus(config: pytest.Config) -> bool:
    return bool(config.getoption("citus"))


def pytest_runtest_setup(item: pytest.Item) -> None:
    marker = item.get_closest_marker("single_node")
    if marker is not None and on_citus(item.config):
        pytest.skip(f"single node only: {marker.args[0]}")


@pytest.fixture(scope="session")
def citus_nodes() -> Iterator[citus.CitusCluster]:
    """The Citus cluster of a --citus run, with its distributed template."""
    if (missing := citus.citus_missing()) is not None:
        pytest.skip(missing)
    with citus.citus_cluster() as nodes, pytest.MonkeyPatch.context() as patch:
        patch.setattr(psycopg, "connect", citus.TenantPerTransaction.connect)
        citus.make_template(
            nodes, lambda dsn: install(dsn, say=lambda _m: None),
            lambda dsn: distribute(dsn, say=lambda _m: None),
        )  # fmt: skip
        yield nodes


@pytest.fixture
def db(request: pytest.FixtureRequest) -> Iterator[str]:
    """DSN of a fresh clone of the installed template database, dropped after the test (with
    --citus: of the distributed template, on every node of the Citus cluster)."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    if on_citus(request.config):
        nodes: citus.CitusCluster = request.getfixturevalue("citus_nodes")
        try:
            yield citus.create_database(nodes, name)
        finally:
            citus.drop_database(nodes, name)
        return
    pg_cluster: Cluster = request.getfixturevalue("pg_cluster")
    request.getfixturevalue("template_dsn")
    with _janitor(pg_cluster, name, TEMPLATE):
        yield pg_cluster.dsn(name)


@pytest.fixture
def empty_db(pg_cluster: Cluster) -> Iterator[str]:
    """DSN of a new database without memex."""
    name = f"e_{uuid.uuid4().hex[:12]}"
    with _janitor(pg_cluster, name):
        yield pg_cluster.dsn(name)


@pytest.fixture
def conn(db: str) -> Iterator[psycopg.Connection[tuple[object, ...]]]:
    with psycopg.connect(db, autocommit=True) as connection:
        yield connection


def server_python() -> str:
    return str(paths.server_python())
