"""Shared fixtures: a throwaway PostgreSQL cluster (started as `postgres`, reused between runs),
a template database built once per session by the real installer, and a clone of it per test."""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from memex.devcluster import Cluster, cluster, pg_bindir
from memex.install import install

TEMPLATE = "memex_template"


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
    test_cluster = cluster("test")
    test_cluster.start()
    return test_cluster


def admin_dsn(pg: Cluster, database: str = "postgres") -> str:
    return pg.dsn(database)


def create_database(pg: Cluster, name: str, template: str | None = None) -> str:
    with psycopg.connect(admin_dsn(pg), autocommit=True) as conn:
        conn.execute(
            sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(name))
        )
        if template:
            conn.execute(
                sql.SQL("create database {} template {}").format(
                    sql.Identifier(name), sql.Identifier(template)
                )
            )
        else:
            conn.execute(sql.SQL("create database {}").format(sql.Identifier(name)))
    return pg.dsn(name)


def drop_database(pg: Cluster, name: str) -> None:
    with psycopg.connect(admin_dsn(pg), autocommit=True) as conn:
        conn.execute(
            sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(name))
        )


@pytest.fixture(scope="session")
def template_dsn(pg_cluster: Cluster) -> str:
    dsn = create_database(pg_cluster, TEMPLATE)
    install(dsn, say=lambda _m: None)
    return dsn


@pytest.fixture
def db(pg_cluster: Cluster, template_dsn: str) -> Iterator[str]:
    """DSN of a fresh clone of the installed template database, dropped after the test."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    dsn = create_database(pg_cluster, name, template=TEMPLATE)
    yield dsn
    drop_database(pg_cluster, name)


@pytest.fixture
def empty_db(pg_cluster: Cluster) -> Iterator[str]:
    """DSN of a new database without memex."""
    name = f"e_{uuid.uuid4().hex[:12]}"
    dsn = create_database(pg_cluster, name)
    yield dsn
    drop_database(pg_cluster, name)


@pytest.fixture
def conn(db: str) -> Iterator[psycopg.Connection[tuple[object, ...]]]:
    with psycopg.connect(db, autocommit=True) as connection:
        yield connection


def server_python() -> str:
    home = os.environ.get("MEMEX_HOME", "/var/lib/memex")
    return f"{home}/server-venv/current/bin/python"
