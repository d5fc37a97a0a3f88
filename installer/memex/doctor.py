"""`memex doctor`: every prerequisite and the installed state, each with a fix when broken."""

from __future__ import annotations

import os
import subprocess
import sys

import psycopg

from memex import __version__
from memex.dsn import connect
from memex.errors import MemexError
from memex.migrate import pending_migrations
from memex.paths import server_lib_dir, server_python
from memex.prereqs import Finding, check_all


def _other_databases(conn: psycopg.Connection[tuple[object, ...]]) -> Finding:
    """memex's roles are cluster-wide: credentials meant for this database also open every other
    database that lets memex_app connect (PostgreSQL grants CONNECT to PUBLIC by default)."""
    others = [
        str(r[0])
        for r in conn.execute(
            "select datname from pg_database where datallowconn and datname <> current_database()"
            " and not datistemplate and has_database_privilege('memex_app', datname, 'CONNECT')"
            " order by datname"
        )
    ]
    return Finding(
        "other databases",
        not others,
        f"memex_app may connect to {', '.join(others)}"
        if others
        else "memex_app connects here only",
        "in each: REVOKE CONNECT ON DATABASE <name> FROM PUBLIC; then GRANT CONNECT to the roles "
        "that use it (docs/tenancy.md, Roles)",
        warning_only=True,
    )


# What bounds an application session's hold on locks and resources (docs/tenancy.md).
APP_TIMEOUTS = ("statement_timeout", "idle_in_transaction_session_timeout", "lock_timeout",
                "temp_file_limit")  # fmt: skip
_APP_LOGINS = """
select r.rolname,
       array(select split_part(c, '=', 1) from pg_db_role_setting as s, unnest(s.setconfig) as c
              where s.setrole in (r.oid, 0)
                and s.setdatabase in (0, (select d.oid from pg_database as d
                                           where d.datname = current_database()))
                and (s.setrole <> 0 or s.setdatabase <> 0)) as set
  from pg_roles as r
 where r.rolcanlogin and not r.rolsuper and pg_has_role(r.oid, 'memex_app', 'member')
 order by 1
"""


def _app_timeouts(conn: psycopg.Connection[tuple[object, ...]]) -> Finding:
    """Login roles of memex_app without the settings that bound a session's locks: a LOCK
    TABLE or a transaction left open holds every tenant's writers until it ends."""
    missing = []
    for role, configured in conn.execute(_APP_LOGINS).fetchall():
        present = {str(name) for name in configured or []}  # type: ignore[attr-defined]
        absent = [name for name in APP_TIMEOUTS if name not in present]
        if absent:
            missing.append(f"{role} ({', '.join(absent)})")
    return Finding(
        "application timeouts",
        not missing,
        "unset for " + "; ".join(missing) if missing else "every login role of memex_app has them",
        "ALTER ROLE <role> SET statement_timeout = '30s' (and the others): docs/tenancy.md",
        warning_only=True,
    )


def _installed_state(conn: psycopg.Connection[tuple[object, ...]], dsn: str) -> list[Finding]:
    row = conn.execute("select to_regprocedure('memex.version()')").fetchone()
    if row == (None,):
        return [Finding("memex installed", False, "not installed", "run `memex install`")]
    installed = conn.execute("select memex.version()").fetchone()
    version = str(installed[0]) if installed else "?"
    findings = [
        Finding(
            "memex installed",
            version == __version__,
            f"SQL {version}, CLI {__version__}",
            "run `memex install` to upgrade the database",
        )
    ]
    findings.append(_other_databases(conn))
    findings.append(_app_timeouts(conn))
    pending = pending_migrations(dsn)
    findings.append(
        Finding(
            "migrations",
            not pending,
            f"{len(pending)} pending: {', '.join(pending)}" if pending else "all applied",
            "run `memex install`",
        )
    )
    return findings


def repair_model_export() -> None:
    """Export the bundled model to ONNX again, over a damaged copy, with the server venv of this
    machine (run on the database server, as the user that ran `make setup`)."""
    python = server_python()
    lib = server_lib_dir(__version__)
    if not python.exists():
        raise MemexError(f"no server venv here ({python}): run `memex doctor --repair` on the "
                         "database server, where `make setup` built it")  # fmt: skip
    print("re-exporting the bundled model to ONNX (about 10 s)...", file=sys.stderr)
    done = subprocess.run(
        [str(python), "-m", "memex_db.onnx_export", "--force", "--quiet"],
        env={**os.environ, "PYTHONPATH": str(lib), "HF_HUB_OFFLINE": "1"},
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if done.returncode != 0:
        raise MemexError(f"the export failed: {done.stderr.strip()[-500:]}")
    print("model exported again and validated; open new sessions to use it", file=sys.stderr)


def doctor(dsn: str, repair: bool = False) -> int:
    if repair:
        repair_model_export()
    with connect(dsn) as conn:
        findings = check_all(conn, deep=True)
        if all(f.ok or f.warning_only for f in findings):
            findings += _installed_state(conn, dsn)
    for finding in findings:
        print(finding.line())
    broken = [f for f in findings if not f.ok and not f.warning_only]
    warnings = [f for f in findings if not f.ok and f.warning_only]
    if broken:
        print(
            f"\n{len(broken)} problem(s) found"
            + (f", {len(warnings)} warning(s)" if warnings else "")
        )
    elif warnings:
        print(f"\nall checks passed, with {len(warnings)} warning(s): see WARN above")
    else:
        print("\nall checks passed")
    return 1 if broken else 0
