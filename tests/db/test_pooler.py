"""Tenants behind a real PgBouncer in transaction pooling mode (Debian's pgbouncer, started on
loopback by the test, stopped after): many clients interleaving tenants over few server
connections, `set_tenant` transaction-local as docs/tenancy.md says. A setting that leaked from
one client's transaction into another's would show as a row of the wrong tenant."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict

from tests.db.helpers import make_tenants, stop_process

CLIENTS = 20
TENANTS = 10
# Transactions per client, on a fixed schedule (_client): the counts are known in advance.
ROUNDS = int(os.environ.get("MEMEX_POOLER_ROUNDS", "300"))
SEARCH = "select metadata ->> 'uri' from memex.rag_search('rotate keys', k => 5, mode => 'text')"
PGBOUNCER = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def pooler(db: str) -> Iterator[tuple[str, str]]:
    """(pooled DSN for the app login role, its name): pgbouncer, transaction mode, 4 server
    connections for every client."""
    if not Path(PGBOUNCER).exists():
        pytest.fail("pgbouncer is missing: `make setup` installs it")
    role = f"api_{uuid.uuid4().hex[:8]}"
    params = conninfo_to_dict(db)
    # pgbouncer refuses to run as root: it runs as postgres (-u), in a folder it can reach
    # (pytest's tmp folders are private to root).
    folder = Path(tempfile.mkdtemp(prefix="memex-pgbouncer-"))
    folder.chmod(0o755)
    shutil.chown(folder, "postgres")
    port = _free_port()
    (folder / "users.txt").write_text(f'"{role}" ""\n')
    (folder / "pgbouncer.ini").write_text(
        f"[databases]\nmemex = host={params['host']} port={params['port']} "
        f"dbname={params['dbname']}\n"
        "[pgbouncer]\nlisten_addr = 127.0.0.1\n"
        f"listen_port = {port}\nunix_socket_dir =\nauth_type = trust\n"
        f"auth_file = {folder / 'users.txt'}\npool_mode = transaction\n"
        "default_pool_size = 4\nmax_client_conn = 100\n"
        f"logfile = {folder / 'pgbouncer.log'}\npidfile = {folder / 'pgbouncer.pid'}\n"
    )
    for name in ("users.txt", "pgbouncer.ini"):
        (folder / name).chmod(0o644)
    with psycopg.connect(db, autocommit=True) as su:
        su.execute(f'create role "{role}" login in role memex_app')
    process = subprocess.Popen([PGBOUNCER, "-u", "postgres", str(folder / "pgbouncer.ini")],
                               stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)  # fmt: skip
    dsn = f"host=127.0.0.1 port={port} dbname=memex user={role}"
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                psycopg.connect(dsn, connect_timeout=2).close()
                break
            except psycopg.OperationalError:
                if time.monotonic() > deadline or process.poll() is not None:
                    log = (
                        (folder / "pgbouncer.log").read_text()
                        if (folder / "pgbouncer.log").exists()
                        else ""
                    )
                    pytest.fail(f"pgbouncer did not start: {log[-2000:]}")
                time.sleep(0.2)
        yield dsn, role
    finally:
        stop_process(process, timeout=10)
        with psycopg.connect(db, autocommit=True) as su:
            su.execute("select pg_terminate_backend(pid) from pg_stat_activity where usename = %s",
                       (role,))  # fmt: skip
            su.execute(f'drop role "{role}"')
        shutil.rmtree(folder, ignore_errors=True)


def _client(dsn: str, names: list[str], client: int, found: Counter[str],
            errors: list[str]) -> None:  # fmt: skip
    """ROUNDS transactions on a fixed schedule: every tenth sets no tenant and must see nothing;
    the others set a tenant (transaction-local; the client's tenants in turn, each client from
    its own), read its documents and text search, and every fifth writes one. Prepared
    statements off: PgBouncer 1.18 in transaction mode cannot carry them (docs/tenancy.md)."""
    with psycopg.connect(dsn, autocommit=True, prepare_threshold=None) as conn:
        for n in range(ROUNDS):
            try:
                with conn.transaction():
                    if n % 10 == 0:
                        rows = conn.execute("select uri from memex.documents").fetchall()
                        rows += conn.execute(SEARCH).fetchall()
                        found["no tenant"] += 1
                        found["cross-tenant rows"] += len(rows)
                        continue
                    tenant = names[(client + n) % len(names)]
                    conn.execute("select memex.set_tenant(%s)", (tenant,))
                    rows = conn.execute("select uri from memex.documents").fetchall()
                    rows += conn.execute(SEARCH).fetchall()
                    if n % 5 == 1:
                        uri = f"{tenant}/note-{client}-{n}.md"
                        conn.execute("select memex.upsert_document(%s, %s)",
                                     (uri, f"{tenant} rotates keys, note {n}."))  # fmt: skip
                        rows += conn.execute("select uri from memex.documents where uri = %s",
                                             (uri,)).fetchall()  # fmt: skip
                        found["writes"] += 1
                    found["transactions"] += 1
                    found["rows"] += len(rows)
                    strangers = [u for (u,) in rows if not str(u).startswith(f"{tenant}/")]
                    found["cross-tenant rows"] += len(strangers)
            except psycopg.Error as exc:
                errors.append(f"{type(exc).__name__}: {exc}")


def test_twenty_clients_ten_tenants_through_pgbouncer_transaction_mode(
    conn: psycopg.Connection[tuple[object, ...]], pooler: tuple[str, str]
) -> None:
    dsn, _role = pooler
    names = [f"t{i:02d}" for i in range(TENANTS)]
    make_tenants(conn, *names)
    for name in names:
        conn.execute("select memex.set_tenant(%s, false)", (name,))
        for j in range(3):
            conn.execute("select memex.upsert_document(%s, %s)",
                         (f"{name}/kb-{j}.md", f"{name}: rotate the keys, step {j}."))  # fmt: skip
    found: Counter[str] = Counter()
    errors: list[str] = []
    threads = [threading.Thread(target=_client, args=(dsn, names, i, found, errors))
               for i in range(CLIENTS)]  # fmt: skip
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=600)
    assert not [t for t in threads if t.is_alive()]
    print(f"through pgbouncer: {dict(found)}")  # shown with -s
    assert errors == []
    assert found["cross-tenant rows"] == 0
    no_tenant = sum(1 for n in range(ROUNDS) if n % 10 == 0)
    writes = sum(1 for n in range(ROUNDS) if n % 10 != 0 and n % 5 == 1)
    assert found["no tenant"] == CLIENTS * no_tenant
    assert found["transactions"] == CLIENTS * (ROUNDS - no_tenant)
    assert found["writes"] == CLIENTS * writes and found["rows"] > 0
    with psycopg.connect(dsn, prepare_threshold=None) as probe:
        # Far more clients than server connections: the pool really was shared.
        assert probe.execute("select count(*) from pg_stat_activity where usename = current_user"
                             ).fetchone()[0] <= 4  # type: ignore[index]  # fmt: skip
