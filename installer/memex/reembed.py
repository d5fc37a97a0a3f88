"""`memex reembed`: CALL memex.reembed with a progress bar, `--dry-run` (memex.reembed_plan),
and `--concurrent-index`: the new space's index built with CREATE INDEX CONCURRENTLY from here,
since a procedure cannot, so that writers of vectors never wait for the build."""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql
from tqdm import tqdm

from memex.dsn import connect
from memex.errors import MemexError
from memex.progress import progress


def event(diag: psycopg.errors.Diagnostic) -> dict[str, Any]:
    """The JSON a memex.reembed NOTICE carries in its DETAIL ({} for the others)."""
    if not (diag.message_primary or "").startswith("memex.reembed"):
        return {}
    try:
        found = json.loads(diag.message_detail or "")
    except ValueError:
        return {}
    return found if isinstance(found, dict) else {}


Conn = psycopg.Connection[tuple[Any, ...]]


@dataclass(frozen=True)
class Target:
    model: str
    dimensions: int | None
    space_name: str | None
    batch_size: int


def reembed(
    dsn: str, target: Target, *, activate: bool, dry_run: bool, concurrent_index: bool,
    as_json: bool = False,
) -> int:  # fmt: skip
    if as_json and not dry_run:
        raise MemexError("--json goes with --dry-run (a run prints its progress)")
    with connect(dsn) as conn:
        if dry_run:
            return _dry_run(conn, target, as_json)
        if concurrent_index:
            _check_can_build_concurrently(conn)
        bar: tqdm[int] = progress(total=0, desc="re-embedding", unit="chunk")
        stopped: list[str] = []

        def on_notice(diag: psycopg.errors.Diagnostic) -> None:
            message = diag.message_primary or ""
            figures = event(diag)
            kind = figures.get("event")
            if kind == "progress":
                bar.total = int(figures["total"])
                bar.update(max(0, int(figures["done"]) - bar.n))
                return
            if kind in ("no_op", "busy"):
                stopped.append(str(kind))
            if concurrent_index and activate and kind == "ready":
                return  # the CLI switches itself once the index is built
            tqdm.write(f"{diag.severity}: {message}", file=sys.stderr)

        conn.add_notice_handler(on_notice)
        try:
            _call(conn, target, activate=activate and not concurrent_index,
                  build_index=not concurrent_index)  # fmt: skip
            if concurrent_index and not stopped:
                _build_index_concurrently(conn, target)
                if activate:
                    _call(conn, target, activate=True, build_index=False)
        finally:
            bar.close()
    return 1 if stopped == ["busy"] else 0


def _call(conn: Conn, target: Target, *, activate: bool, build_index: bool) -> None:
    conn.execute(
        "call memex.reembed(%s, %s, %s, %s, activate => %s, build_index => %s)",
        (target.model, target.dimensions, target.space_name, target.batch_size, activate,
         build_index),
    )  # fmt: skip


def _dry_run(conn: Conn, target: Target, as_json: bool) -> int:
    row = conn.execute(
        "select memex.reembed_plan(%s, %s, %s, %s)",
        (target.model, target.dimensions, target.space_name, target.batch_size),
    ).fetchone()
    plan: dict[str, Any] = row[0] if row else {}
    if as_json:
        print(json.dumps(plan, indent=2))
        return 0
    if plan["no_op"]:
        print(f"nothing to do: the active space {plan['active_space']} already has this signature")
        return 0
    if not plan["chunks_to_embed"]:
        print(f"nothing to embed: space {plan['target_space']} is up to date (a CALL would "
              "only build its index and switch)")  # fmt: skip
        return 0
    dims = f"{plan['active_dimensions']} -> {plan['dimensions']}"
    lines = [
        ("target space", f"{plan['target_space']}"
         + (f" (exists, {plan['target_status']})" if plan["target_exists"] else " (new)")),
        ("active space", f"{plan['active_space']} (search keeps using it until the switch)"),
        ("dimensions", dims + (" (changes)" if plan["dimension_change"] else " (same)")),
        ("chunks to embed", f"{plan['chunks_to_embed']} of {plan['chunks']}"),
        ("batches", f"{plan['batches']} of {target.batch_size}"),
        ("measured rate", f"{plan['measured_rate']} chunks/s on {plan['rate_sample']} chunks"),
        ("estimated time", f"{plan['estimated_seconds']} s, plus the index build"),
    ]  # fmt: skip
    if plan["running_pid"]:
        lines.append(("running now", f"in backend {plan['running_pid']}"))
    for label, value in lines:
        print(f"{label:>16}: {value}")
    print("dry run: nothing was written")
    return 0


def _check_can_build_concurrently(conn: Conn) -> None:
    """CREATE INDEX needs the table's owner: become memex_owner for this session, or stop now
    (before any embedding) with what to do."""
    row = conn.execute(
        "select pg_has_role(current_user, 'memex_owner', 'MEMBER')"
        " or (select rolsuper from pg_roles where rolname = current_user)"
    ).fetchone()
    if not (row and row[0]):
        raise MemexError(
            "--concurrent-index builds the index from this connection, which needs the owner of "
            "memex.embeddings (memex_owner); this role is not a member of it.\n"
            "Fix: connect as a role granted memex_owner (or a superuser), or drop "
            "--concurrent-index (the index is then built inside the procedure, and writers of "
            "vectors wait for it)"
        )


def _build_index_concurrently(conn: Conn, target: Target) -> None:
    """CREATE INDEX CONCURRENTLY of the target space's index; an INVALID one left by an
    interrupted build is dropped (concurrently) and built again."""
    row = conn.execute(
        "select s.id, memex._space_index_name(s.id), s.index_kind, memex._space_index_valid(s.id)"
        " from memex.spaces as s"
        " where s.name = (select t.name from memex._reembed_target(%s, %s, %s) as t)",
        (target.model, target.dimensions, target.space_name),
    ).fetchone()
    if row is None:
        raise MemexError("the target space does not exist after the reembed call")
    space_id, index_name, index_kind, valid = row
    if index_kind == "none":
        return
    conn.execute("set role memex_owner")
    try:
        if valid is False:
            tqdm.write(f"index {index_name} is INVALID (an interrupted build): rebuilding it",
                       file=sys.stderr)  # fmt: skip
            conn.execute(sql.SQL("drop index concurrently if exists memex.{}").format(
                sql.Identifier(index_name)))  # fmt: skip
        if valid is not True:
            statement = conn.execute("select memex._space_index_sql(%s, true)", (space_id,))
            text = statement.fetchone()
            started = time.monotonic()
            tqdm.write(f"building index {index_name} concurrently (writers do not wait)",
                       file=sys.stderr)  # fmt: skip
            conn.execute(text[0] if text else "")
            tqdm.write(f"index built in {time.monotonic() - started:.1f} s", file=sys.stderr)
    finally:
        conn.execute("reset role")
