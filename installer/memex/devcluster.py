"""The embedded local PostgreSQL cluster: memex's default database when no DSN is given.

Data lives outside git (under MEMEX_HOME, or XDG_DATA_HOME for a non-root user), on a
non-default port, with its own socket directory and no TCP listener. PostgreSQL refuses to run
as root, so when invoked as root every server command runs as the `postgres` OS user.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import psycopg
from psycopg import sql

from memex.errors import MemexError
from memex.paths import memex_home

PG_MAJOR = os.environ.get("MEMEX_PG_MAJOR", "15")
DEFAULT_DATABASE = "memex"
PORTS = {"dev": 5439, "test": 5440, "dev-replica": 5441, "test-replica": 5444}


def pg_bindir() -> Path:
    return Path(os.environ.get("MEMEX_PG_BINDIR", f"/usr/lib/postgresql/{PG_MAJOR}/bin"))


def _running_as_root() -> bool:
    return os.geteuid() == 0


@dataclass(frozen=True)
class Cluster:
    name: str
    root: Path
    port: int
    # postgresql.conf lines of its own (the Citus test nodes: shared_preload_libraries = 'citus')
    settings: tuple[str, ...] = ()

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def socket_dir(self) -> Path:
        return self.root / "run"

    @property
    def log_file(self) -> Path:
        return self.root / "postgresql.log"

    def dsn(
        self, database: str = DEFAULT_DATABASE, user: str = "postgres", role: str | None = None
    ) -> str:
        """The cluster's URI; with `role`, sessions start as that role (SET ROLE at connection):
        what an application sees, row-level security included, which the superuser bypasses."""
        host = quote(str(self.socket_dir), safe="")
        options = f"?options={quote(f'-c role={role}', safe='')}" if role else ""
        return f"postgresql://{user}@{host}:{self.port}/{database}{options}"

    # -- commands --------------------------------------------------------------------------
    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        cmd = [str(pg_bindir() / args[0]), *args[1:]]
        if _running_as_root():
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        # The server inherits MEMEX_HOME: memex._python_init finds the server venv through it.
        env = {**os.environ, "MEMEX_HOME": str(memex_home())}
        return subprocess.run(cmd, check=check, capture_output=True, text=True, env=env)

    def is_initialised(self) -> bool:
        return (self.data_dir / "PG_VERSION").exists()

    def is_running(self) -> bool:
        if not self.is_initialised():
            return False
        return self._run("pg_ctl", "status", "-D", str(self.data_dir), check=False).returncode == 0

    def _make_dirs(self) -> None:
        """The cluster's root and socket directory, the postgres OS user's when run as root."""
        self.root.mkdir(parents=True, exist_ok=True)
        self.socket_dir.mkdir(exist_ok=True)
        if _running_as_root():
            pg = pwd.getpwnam("postgres")
            for path in (self.root, self.socket_dir):
                os.chown(path, pg.pw_uid, pg.pw_gid)

    def init(self) -> None:
        if not (pg_bindir() / "initdb").exists():
            raise MemexError(
                f"PostgreSQL {PG_MAJOR} server binaries not found in {pg_bindir()}.\n"
                "Fix: run `make setup` (installs postgresql-15, its headers and plpython3)."
            )
        self._make_dirs()
        self._run(
            "initdb", "-D", str(self.data_dir), "-U", "postgres", "-E", "UTF8",
            "--locale=C.UTF-8", "--auth-local=trust", "--auth-host=scram-sha-256",
        )  # fmt: skip
        with (self.data_dir / "postgresql.conf").open("a") as conf:
            conf.write(self._config())

    def _config(self) -> str:
        lines = [
            "",
            "# --- memex dev cluster ---",
            f"port = {self.port}",
            "listen_addresses = ''",
            f"unix_socket_directories = '{self.socket_dir}'",
            # Only the postgres OS user (and root) may reach this trust-authenticated socket.
            "unix_socket_permissions = 0700",
            "shared_buffers = 256MB",
            "maintenance_work_mem = 512MB",
            "max_connections = 100",
            "log_min_messages = warning",
        ]
        if self.name == "test" or self.name.startswith("test-"):
            # Throwaway test data: durability only costs time here.
            lines += ["fsync = off", "synchronous_commit = off", "full_page_writes = off"]
        return "\n".join([*lines, *self.settings]) + "\n"

    def start(self) -> None:
        if not self.is_initialised():
            self.init()
        if self.is_running():
            return
        self._repair_ownership_and_mode()
        result = self._run(
            "pg_ctl", "start", "-D", str(self.data_dir), "-l", str(self.log_file), "-w", "-t", "60",
            check=False,
        )  # fmt: skip
        if result.returncode != 0:
            tail = self.log_file.read_text(errors="replace").splitlines()[-15:]
            raise MemexError(
                f"the {self.name} cluster did not start:\n{result.stderr}\n" + "\n".join(tail)
            )
        self._ensure_database()

    def _repair_ownership_and_mode(self) -> None:
        """A data directory restored from a snapshot or copied by hand comes back 0755 or owned by
        root, and PostgreSQL then refuses to start; both are safe to put right before starting."""
        if _running_as_root():
            pg = pwd.getpwnam("postgres")
            if self.data_dir.stat().st_uid != pg.pw_uid:
                for path in [self.root, *self.root.rglob("*")]:
                    os.chown(path, pg.pw_uid, pg.pw_gid, follow_symlinks=False)
            self.log_file.touch()
            os.chown(self.log_file, pg.pw_uid, pg.pw_gid)
        if self.data_dir.stat().st_mode & 0o027:
            self.data_dir.chmod(0o700)

    def start_as_replica_of(self, primary: Cluster) -> None:
        """Start this cluster as a hot standby streaming from `primary` (created the first time
        with pg_basebackup -R from the primary's socket), on its own port and socket directory
        with the same server venv. The primary must be running."""
        if not primary.is_running():
            raise MemexError(
                f"the {primary.name} cluster is not running: a replica streams from it.\n"
                "Fix: start it first (`memex dev up`), then `memex dev up --replica`"
            )
        if not self.is_initialised():
            self._base_backup(primary)
        self.start()

    def _base_backup(self, primary: Cluster) -> None:
        shutil.rmtree(self.root, ignore_errors=True)
        self._make_dirs()
        self._run(
            "pg_basebackup", "-D", str(self.data_dir), "-R", "-X", "stream", "-c", "fast",
            "-h", str(primary.socket_dir), "-p", str(primary.port), "-U", "postgres",
        )  # fmt: skip
        # The copied postgresql.conf names the primary's port and socket: these lines come
        # later and win. hot_standby_feedback: the primary keeps the row versions a standby
        # query still reads, instead of the standby cancelling that query (docs/scale.md).
        with (self.data_dir / "postgresql.conf").open("a") as conf:
            conf.write(
                f"\n# --- memex {self.name}: a hot standby of {primary.name} ---\n"
                f"port = {self.port}\nunix_socket_directories = '{self.socket_dir}'\n"
                "hot_standby = on\nhot_standby_feedback = on\n"
            )

    def is_standby(self) -> bool:
        return (self.data_dir / "standby.signal").exists()

    def _ensure_database(self) -> None:
        if self.is_standby():
            return  # read-only: its databases are the primary's
        with psycopg.connect(self.dsn("postgres"), autocommit=True) as conn:
            found = conn.execute(
                "select 1 from pg_database where datname = %s", (DEFAULT_DATABASE,)
            ).fetchone()
            if found is None:
                conn.execute(sql.SQL("create database {}").format(sql.Identifier(DEFAULT_DATABASE)))

    def stop(self) -> None:
        if self.is_running():
            self._run("pg_ctl", "stop", "-D", str(self.data_dir), "-m", "fast", "-w")

    def destroy(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)


def cluster(name: str = "dev") -> Cluster:
    if _running_as_root():
        base = memex_home() / "clusters"
    else:
        xdg = os.environ.get("XDG_DATA_HOME", str(Path.home() / ".local" / "share"))
        base = Path(xdg) / "memex" / "clusters"
    variable = f"MEMEX_{name.upper().replace('-', '_')}_PORT"
    port = int(os.environ.get(variable, PORTS.get(name, 5443)))
    return Cluster(name=name, root=base / f"pg{PG_MAJOR}-{name}", port=port)
