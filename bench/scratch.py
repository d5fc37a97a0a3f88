"""What the benchmarks share: a scratch database made afresh, and a percentile."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from memex.paths import server_lib_dir


def scratch_database(dsn: str, name: str, reuse: bool = False) -> str:
    """The DSN of database `name` beside `dsn`'s: dropped and created again, or kept when it
    exists and `reuse` is asked for."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        exists = conn.execute("select 1 from pg_database where datname = %s", (name,)).fetchone()
        if not (reuse and exists):
            conn.execute(sql.SQL("drop database if exists {} with (force)").format(
                sql.Identifier(name)))  # fmt: skip
            conn.execute(sql.SQL("create database {}").format(sql.Identifier(name)))
    params = {k: v for k, v in conninfo_to_dict(dsn).items() if v is not None}
    return make_conninfo(**{**params, "dbname": name})


REPO = Path(__file__).resolve().parents[1]


def install_from(dsn: str, tree: Path) -> None:
    """memex installed by the installer, sql/ and memex_db found in the checkout `tree`."""
    code = "import sys; from memex.cli import main; sys.exit(main())"
    path = f"{tree / 'installer'}:{tree / 'plpython'}"
    subprocess.run([sys.executable, "-c", code, "install", "--dsn", dsn], check=True,
                   capture_output=True, cwd=tree,
                   env={"PYTHONPATH": path, "PATH": "/usr/bin:/bin"})  # fmt: skip


def install_commit(dsn: str, commit: str) -> str:
    """memex as of `commit` into `dsn`'s database: its sql/ and migrations/ from a git
    worktree, and its own memex_db in the server's lib dir under a version of its own (the
    SQL loads the lib of its version). Returns that version: drop_server_lib(version) once
    done."""
    sha = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short=12", commit], check=True,
                         capture_output=True, text=True).stdout.strip()  # fmt: skip
    version = f"0.0.0+baseline.{sha}"
    with tempfile.TemporaryDirectory(prefix="memex-baseline-") as tmp:
        tree = Path(tmp) / "tree"
        subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", str(tree), sha],
                       check=True, capture_output=True)  # fmt: skip
        try:
            init = tree / "plpython/memex_db/__init__.py"
            init.write_text(re.sub(r'__version__ = "[^"]*"', f'__version__ = "{version}"',
                                   init.read_text()))  # fmt: skip
            lib = server_lib_dir(version)
            shutil.rmtree(lib, ignore_errors=True)
            lib.mkdir(parents=True)
            shutil.copytree(tree / "plpython/memex_db", lib / "memex_db")
            install_from(dsn, tree)
        finally:
            subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(tree)],
                           check=True, capture_output=True)  # fmt: skip
    return version


def drop_server_lib(version: str) -> None:
    shutil.rmtree(server_lib_dir(version), ignore_errors=True)


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]
