"""Prerequisite checks shared by `memex install` and `memex doctor`.

Every check reads only: the server-Python probe runs inside a transaction that is rolled back,
so a failed install or a doctor run changes nothing.
"""

from __future__ import annotations

import inspect
import re
from dataclasses import dataclass
from importlib.resources import files
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

import memex_db.probe
from memex import __version__

MIN_VECTOR = (0, 8, 0)
# Minor releases carrying the 2025 RLS/search_path security fixes, per major.
SECURE_MINOR = {15: 14, 16: 10, 17: 6}


@dataclass(frozen=True)
class Finding:
    name: str
    ok: bool
    detail: str
    fix: str = ""
    warning_only: bool = False

    def line(self) -> str:
        mark = "ok  " if self.ok else ("WARN" if self.warning_only else "FAIL")
        text = f"[{mark}] {self.name}: {self.detail}"
        if not self.ok and self.fix:
            text += f"\n       fix: {self.fix}"
        return text


def _version_tuple(text: str) -> tuple[int, ...]:
    return tuple(int(p) for p in re.findall(r"\d+", text)[:3])


def pinned_requirements() -> dict[str, str]:
    return memex_db.probe.pinned_requirements(
        files("memex_db").joinpath("server-requirements.txt").read_text()
    )


# Roles are cluster-wide: one created before memex (or changed since) may void RLS. Which role
# must not be a member of which (a member acts with the other's rights).
_ROLE_MEMBERSHIPS = (("memex_app", "memex_admin"), ("memex_app", "memex_owner"),
                     ("memex_admin", "memex_owner"))  # fmt: skip


def _roles_finding(conn: psycopg.Connection[tuple[object, ...]]) -> Finding:
    """memex's roles, where they exist already: no SUPERUSER, no BYPASSRLS, and neither
    memex_app nor memex_admin a member of a more powerful memex role."""
    problems: list[str] = []
    fixes: list[str] = []
    rows = conn.execute(
        "select rolname, rolsuper, rolbypassrls from pg_roles"
        " where rolname in ('memex_app', 'memex_admin', 'memex_owner') order by rolname"
    ).fetchall()
    for name, is_super, bypass in rows:
        if is_super or bypass:
            problems.append(f"{name} has {'SUPERUSER' if is_super else 'BYPASSRLS'}")
            fixes.append(f"ALTER ROLE {name} NOSUPERUSER NOBYPASSRLS;")
    existing = {str(r[0]) for r in rows}
    for member, group in _ROLE_MEMBERSHIPS:
        if {member, group} <= existing:
            row = conn.execute("select pg_has_role(%s, %s, 'MEMBER')", (member, group)).fetchone()
            if row and row[0]:
                problems.append(f"{member} is a member of {group}")
                fixes.append(f"REVOKE {group} FROM {member};")
    return Finding(
        "memex roles",
        not problems,
        "; ".join(problems) + " (row-level security would not hold)" if problems else "safe",
        " ".join(fixes),
    )


def check_server(conn: psycopg.Connection[tuple[object, ...]]) -> list[Finding]:
    findings: list[Finding] = []
    num = int(str(conn.execute("show server_version_num").fetchone()[0]))  # type: ignore[index]
    major, minor = num // 10000, num % 10000
    findings.append(
        Finding("postgresql", major >= 15, f"{major}.{minor}", "memex needs PostgreSQL 15 or later")
    )
    if major in SECURE_MINOR and minor < SECURE_MINOR[major]:
        findings.append(
            Finding(
                "postgresql security fixes",
                False,
                f"{major}.{minor} predates {major}.{SECURE_MINOR[major]}"
                " (RLS and search_path security fixes)",
                f"upgrade to {major}.{SECURE_MINOR[major]} or later",
                warning_only=True,
            )
        )
    is_super = conn.execute("select rolsuper from pg_roles where rolname = current_user").fetchone()
    findings.append(
        Finding(
            "installing role",
            bool(is_super and is_super[0]),
            "superuser" if is_super and is_super[0] else "not a superuser",
            "run memex install as a superuser (plpython3u is an untrusted language)",
        )
    )
    findings.append(_roles_finding(conn))
    available: dict[str, object] = dict(
        conn.execute(  # type: ignore[arg-type]
            "select name, coalesce(installed_version, default_version) from pg_available_extensions"
            " where name in ('vector', 'plpython3u')"
        ).fetchall()
    )
    vector = available.get("vector")
    findings.append(
        Finding(
            "extension vector",
            vector is not None and _version_tuple(str(vector)) >= MIN_VECTOR,
            f"{vector} available" if vector else "not available on this server",
            "install pgvector >= 0.8 on the database server: `make setup` builds it here; "
            "elsewhere install your distribution's postgresql-NN-pgvector package",
        )
    )
    findings.append(
        Finding(
            "extension plpython3u",
            "plpython3u" in available,
            "available" if "plpython3u" in available else "not available on this server",
            "install the server package for PL/Python: apt-get install postgresql-15-plpython3 "
            "(`make setup` does it)",
        )
    )
    return findings


def probe_server_python(
    conn: psycopg.Connection[tuple[object, ...]], deep: bool = False
) -> list[Finding]:
    """Run memex_db.probe inside the backend, as a function that returns its findings as jsonb:
    memex may not be installed yet, so the probe's source travels with the call, in a
    temporary function created and dropped in a transaction that is always rolled back."""
    source = inspect.getsource(memex_db.probe)
    body = (
        source
        + "\nimport json as _json\n"
        + "import os as _os\n"
        + "_args = _json.loads(probe_args)\n"
        + "return _json.dumps(run(_os.environ.get('MEMEX_HOME') or '/var/lib/memex',"
        + " _args['version'], _args['requirements'], _args['deep']))\n"
    )
    args = {"version": __version__, "requirements": pinned_requirements(), "deep": deep}
    with conn.transaction(force_rollback=True):
        conn.execute("create extension if not exists plpython3u")
        conn.execute(
            psycopg.sql.SQL(
                "create function pg_temp.memex_probe(probe_args jsonb) returns jsonb"
                " language plpython3u as {}"
            ).format(psycopg.sql.Literal(body))
        )
        row = conn.execute("select pg_temp.memex_probe(%s)", (Jsonb(args),)).fetchone()
    results: list[dict[str, Any]] = row[0] if row and isinstance(row[0], list) else []
    return [Finding(r["name"], r["ok"], r["detail"], r["fix"]) for r in results]


def check_all(conn: psycopg.Connection[tuple[object, ...]], deep: bool = False) -> list[Finding]:
    findings = check_server(conn)
    if any(f.name == "extension plpython3u" and f.ok for f in findings) and any(
        f.name == "installing role" and f.ok for f in findings
    ):
        findings += probe_server_python(conn, deep=deep)
    return findings


def blocking(findings: list[Finding]) -> list[Finding]:
    return [f for f in findings if not f.ok and not f.warning_only]
