"""Upgrade == fresh install: every released migration level, taken from the repository's history
(its installer, sql/ and migrations/ as they were), installed, loaded with data, then upgraded
by today's installer, must end with the schema, the privileges and the search results of a
fresh install."""

from __future__ import annotations

import itertools
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import uuid
from collections.abc import Iterator
from io import BytesIO
from pathlib import Path

import psycopg
import pytest

from memex.devcluster import Cluster
from memex.install import RECHUNKING_MIGRATIONS, install
from memex.paths import memex_home
from tests.conftest import TEMPLATE, create_database, drop_database
from tests.db.test_tenancy import privileges_snapshot
from tests.migrations.test_install import schema_dump

ROOT = Path(__file__).resolve().parents[2]
DOCS = [
    ("kb/keys.md", "Rotating keys", "Rotate the signing keys: publish the new key first, then "
     "switch the signers, then retire the old key after a day.", {"language": "en"}),
    ("kb/backup.md", "Backups", "Nightly base backups with WAL archiving; test a restore every "
     "month on a scratch server.", {}),
    ("kb/orage.md", "Orage", "Pendant un orage, débranchez les appareils et restez à l'abri.",
     {"language": "fr"}),
    ("src/rotate.py", None, "def rotate(keys):\n    new = generate()\n    publish(new)\n"
     "    return [new, *keys]\n", {}),
]  # fmt: skip
QUERIES = ["how do I rotate keys", "restore a backup", "orage appareils", "publish new key"]


def _git(*args: str) -> str:
    return subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True,
                          check=True).stdout.strip()  # fmt: skip


def released_levels() -> list[tuple[str, str]]:
    """(last migration, commit) for each level: the commit right before the next migration was
    added (for the newest migration not yet committed: HEAD)."""
    if not (ROOT / ".git").exists():
        return []
    if _git("rev-parse", "--is-shallow-repository") == "true":
        # A shallow clone (some CI checkouts): fetch the history once; without it there are no
        # levels, and test_the_history_gives_every_released_level says why it skipped.
        subprocess.run(["git", "-C", str(ROOT), "fetch", "--quiet", "--unshallow"],
                       capture_output=True, timeout=120, check=False)  # fmt: skip
        if _git("rev-parse", "--is-shallow-repository") == "true":
            return []
    released = (ROOT / "migrations" / "RELEASED").read_text().splitlines()
    names = [line.split()[1].removesuffix(".sql") for line in released
             if line and not line.startswith("#")]  # fmt: skip
    levels: dict[str, str] = {}
    for previous, following in itertools.pairwise(names):
        added = _git("log", "--diff-filter=A", "--format=%H", "--", f"migrations/{following}.sql")
        commit = _git("rev-parse", f"{added.splitlines()[-1]}^" if added else "HEAD")
        levels[commit] = previous  # migrations added together: the level before all of them
    return [(level, commit) for commit, level in levels.items()]


def _old_install(commit: str, dsn: str, lib_root: Path) -> None:
    """That commit's installer, sql/, migrations/ and server-side lib (memex_db), as a release of
    its own: both say version 0.1.0+<commit>, so its SQL wrappers import its own lib from
    lib_root/<that version>, beside today's, as two releases live side by side."""
    parts = ["installer", "sql", "migrations", "plpython"]
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", commit, *parts],
                             capture_output=True, check=True).stdout  # fmt: skip
    version = f"0.1.0+{commit[:12]}"
    with tempfile.TemporaryDirectory(prefix="memex-level-") as tree:
        with tarfile.open(fileobj=BytesIO(archive)) as tar:
            tar.extractall(tree, filter="data")
        for init in ("installer/memex/__init__.py", "plpython/memex_db/__init__.py"):
            path = Path(tree) / init
            path.write_text(path.read_text().replace('"0.1.0"', f'"{version}"'))
        lib = lib_root / version
        shutil.copytree(Path(tree) / "plpython" / "memex_db", lib / "memex_db")
        for folder in [lib_root, lib, *lib.rglob("*")]:
            if folder.is_dir():
                folder.chmod(0o755)
            else:
                folder.chmod(0o644)
        code = "import sys; from memex.cli import main; sys.argv[0] = 'memex'; sys.exit(main())"
        result = subprocess.run(
            [sys.executable, "-c", code, "install", "--dsn", dsn], cwd=tree, capture_output=True,
            text=True, timeout=300,
            env=os.environ | {"PYTHONPATH": f"{tree}/installer:{tree}/plpython"},
        )  # fmt: skip
        assert result.returncode == 0, f"installing {commit}: {result.stdout}\n{result.stderr}"


def _load(dsn: str) -> bool:
    """The same documents under tenant acme, with whatever upsert the schema has; False for a
    level before content."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        if conn.execute("select to_regproc('memex.upsert_document')").fetchone() == (None,):
            return False
        known = conn.execute("select count(*) from memex.tenants where name = 'acme'").fetchone()
        if known == (0,):
            conn.execute("select memex.create_tenant('acme')")
        conn.execute("select memex.set_tenant('acme', false)")
        for uri, title, text, meta in DOCS:
            conn.execute("select memex.upsert_document(%s, %s, %s, %s::jsonb)",
                         (uri, text, title, psycopg.types.json.Jsonb(meta)))  # fmt: skip
    return True


def _results(dsn: str) -> list[list[tuple[str, str, float]]]:
    """After embedding what is pending: each query's hybrid results (uri, chunk, score)."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("call memex.embed_pending()")
        conn.execute("select memex.set_tenant('acme', false)")
        found = []
        for query in QUERIES:
            rows = conn.execute(
                "select metadata ->> 'uri', content, round(score::numeric, 4)::float"
                " from memex.rag_search(%s, k => 5)",
                (query,),
            ).fetchall()
            found.append([(str(u), str(c), float(s)) for u, c, s in rows])
        return found


@pytest.fixture(scope="module")
def fresh(pg_cluster: Cluster, template_dsn: str) -> Iterator[dict[str, object]]:
    name = f"fresh_{uuid.uuid4().hex[:8]}"
    dsn = create_database(pg_cluster, name, template=TEMPLATE)
    _load(dsn)
    with psycopg.connect(dsn, autocommit=True) as conn:
        privileges = privileges_snapshot(conn)
    yield {"schema": schema_dump(dsn), "privileges": privileges, "results": _results(dsn)}
    drop_database(pg_cluster, name)


@pytest.mark.parametrize(("level", "commit"), released_levels(), ids=lambda v: str(v)[:12])
def test_an_upgrade_from_each_released_level_equals_a_fresh_install(
    pg_cluster: Cluster, fresh: dict[str, object], level: str, commit: str
) -> None:
    name = f"up_{uuid.uuid4().hex[:8]}"
    dsn = create_database(pg_cluster, name)
    lib = memex_home() / "lib" / f"0.1.0+{commit[:12]}"
    try:
        _old_install(commit, dsn, memex_home() / "lib")
        loaded = _load(dsn)
        report = install(dsn, say=lambda _m: None)
        # Content cut or embedded by older rules: the upgrade says so, and memex.rechunk redoes it.
        assert report.rechunk_advised == (loaded and level < max(RECHUNKING_MIGRATIONS))
        with psycopg.connect(dsn, autocommit=True) as admin:
            admin.execute("set role memex_admin")
            admin.execute("call memex.rechunk()")
        _load(dsn)  # as an application would go on writing: idempotent where nothing changed
        assert schema_dump(dsn) == fresh["schema"]
        with psycopg.connect(dsn, autocommit=True) as conn:
            assert privileges_snapshot(conn) == fresh["privileges"]
        assert _results(dsn) == fresh["results"]
    finally:
        drop_database(pg_cluster, name)
        shutil.rmtree(lib, ignore_errors=True)


def test_the_history_gives_every_released_level() -> None:
    levels = released_levels()
    if not levels:
        pytest.skip(
            "no git history here (not a checkout, or a shallow clone that could not be"
            " deepened): the upgrade levels cannot be taken from it"
        )
    assert levels[0][0] == "0001_core" and len(levels) >= 10
