"""Where memex's files live: packaged resources, and the install root outside the repository."""

from __future__ import annotations

import os
from pathlib import Path

_PACKAGE_DIR = Path(__file__).resolve().parent
# In an editable install sql/ and migrations/ sit at the repository root; in a wheel they are
# force-included inside the memex package.
_REPO_ROOT = _PACKAGE_DIR.parent.parent


def _resource_dir(name: str) -> Path:
    packaged = _PACKAGE_DIR / name
    if packaged.is_dir():
        return packaged
    return _REPO_ROOT / name


def sql_dir() -> Path:
    return _resource_dir("sql")


def migrations_dir() -> Path:
    return _resource_dir("migrations")


def samples_dir() -> Path:
    return _PACKAGE_DIR / "samples"


def memex_home() -> Path:
    """Root of the server venv, the per-version memex_db lib dirs and the dev clusters."""
    return Path(os.environ.get("MEMEX_HOME", "/var/lib/memex"))


def server_venv() -> Path:
    return memex_home() / "server-venv" / "current"


def server_python() -> Path:
    return server_venv() / "bin" / "python"


def server_lib_dir(version: str) -> Path:
    return memex_home() / "lib" / version
