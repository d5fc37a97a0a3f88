"""`memex worker`: embeds pending chunks outside the database, with the same memex_db code.

It takes its batches from the same engine as CALL memex.embed_pending (memex._drain_step: row
locks, SKIP LOCKED, tenant by tenant, one transaction per batch), encodes them with the space's
model in this process, and stores them with memex._store_embeddings, so it can run beside
in-database runners, on this machine or another one with the same server venv, and produces
the same vectors.

Run it with the server venv's interpreter (the `memex worker` command does), as a role granted
memex_admin.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

from memex_db import catalog, models, remote, spaces
from memex_db.errors import MemexDbError
from memex_db.settings import DEFAULT_BATCH_ROWS, default_threads

# SQLSTATE classes that can be one chunk's own fault: data exceptions, program limits.
CHUNK_FAULTS = ("22", "54")


def vector_array_literal(vectors: list[list[float]]) -> str:
    """A vector[] literal: '{"[1e-10,2e-10]","[...]"}' (PostgreSQL parses each element)."""
    return "{" + ",".join(f'"{v}"' for v in spaces.vector_literals(vectors)) + "}"


class Worker:
    def __init__(self, conn: Any, space: str | None, batch_size: int, threads: int,
                 runtime: str = "auto", say: Callable[[str], None] = print):  # fmt: skip
        cur = conn.cursor(row_factory=_dict_rows())
        row = cur.execute(catalog.SPACE_SQL.format("%s"), (space,)).fetchone()
        self.conn = conn
        self.space = spaces.Space.from_row(row)
        self.batch_size = batch_size
        self.say = say
        self.loaded = models.load({}, self.space.model, threads, 0, self.space.runtime or runtime,
                                  endpoint=self._endpoint(cur))  # fmt: skip
        self.embedded = 0
        schema = conn.execute(catalog.VECTOR_SCHEMA_SQL).fetchone()[0]
        from psycopg import sql

        # The vector[] literal is cast by name: pgvector may live in any schema.
        self.store_sql = sql.SQL(
            "select memex._store_embeddings(%s, %s, %s, %s::text::{}.vector[])"
        ).format(sql.Identifier(schema))

    def _endpoint(self, cur: Any) -> remote.Endpoint | None:
        """The endpoint of a remote space (its key: MEMEX_ENDPOINT_KEY_<NAME> in this
        process's environment, docs/embedding.md)."""
        return remote.endpoint_for(
            self.space.model,
            lambda name: cur.execute(remote.ROW_SQL.format("%s"), (name,)).fetchone(),
        )

    def drain(self) -> int:
        """One pass over every tenant, the tenants served in turn; returns the chunks that went
        through the model (those that failed alone are recorded, not counted)."""
        done = 0
        cursors: Any = None
        while True:
            with self.conn.transaction():
                step = self.conn.execute(
                    "select finished, cursors, ids, contents, hashes"
                    " from memex._claim_step(%s, %s, %s::jsonb)",
                    (self.space.id, self.batch_size, _json(cursors)),
                ).fetchone()
                finished, cursors, ids, contents, hashes = step
                if finished:
                    break
                done += self._embed_or_isolate(list(ids), list(contents), list(hashes))
        self.embedded += done
        return done

    def _embed_or_isolate(
        self, ids: list[Any], contents: list[str], hashes: list[bytes], checked: bool = False
    ) -> int:
        """The worker's side of memex._embed_or_isolate (sql/141-drain.sql), with the same
        rules: a batch that fails for what may be a chunk's fault (SQLSTATE class 22 or 54,
        while the model still embeds a harmless text) is split down to the chunk that fails
        alone, whose failure is recorded; anything else stops the worker as before."""
        if not ids:
            return 0
        try:
            with self.conn.transaction():  # a savepoint: a refused store keeps the claim usable
                vectors = [spaces.fit(v, self.space) for v in
                           self.loaded.encoder.encode(contents, DEFAULT_BATCH_ROWS)]  # fmt: skip
                self.conn.execute(self.store_sql, (self.space.id, ids, hashes,
                                                   vector_array_literal(vectors)))  # fmt: skip
            return len(ids)
        except Exception as exc:
            state = str(getattr(exc, "sqlstate", "") or "")
            if state[:2] not in CHUNK_FAULTS or not (checked or self._embeds_at_all()):
                raise
            message = getattr(exc, "message", None) or str(exc)
        if len(ids) == 1:
            self.conn.execute(
                "select memex._record_embedding_failure(%s, %s, %s, %s, %s)",
                (self.space.id, ids[0], hashes[0], state, message),
            )
            return 0
        half = len(ids) // 2
        return self._embed_or_isolate(ids[:half], contents[:half], hashes[:half], True) + (
            self._embed_or_isolate(ids[half:], contents[half:], hashes[half:], True)
        )

    def _embeds_at_all(self) -> bool:
        try:
            self.loaded.encoder.encode(["memex"], 1)
        except Exception:  # whatever it is, it is not one chunk's fault
            return False
        return True


def _json(value: Any) -> str | None:
    import json

    return None if value is None else json.dumps(value)


def _dict_rows() -> Any:
    from psycopg.rows import dict_row

    return dict_row


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="memex worker",
        epilog="the database: $MEMEX_DSN (memex worker sets it from its own --dsn, "
        "$MEMEX_DSN or the dev cluster); never put a password on a command line",
    )
    parser.add_argument("--dsn", default=os.environ.get("MEMEX_DSN"),
                        help="default $MEMEX_DSN (prefer it: ps shows command lines)")  # fmt: skip
    parser.add_argument("--space", default=None)
    parser.add_argument("--batch-size", type=int, default=64, help="rows per claim")
    parser.add_argument("--threads", type=int, default=0, help="0: all cores of this machine")
    parser.add_argument("--runtime", default="auto")
    parser.add_argument("--once", action="store_true", help="drain what is pending, then exit")
    parser.add_argument("--poll", type=float, default=5.0, help="seconds between idle passes")
    args = parser.parse_args(argv)
    if not args.dsn:
        parser.error("no database: set MEMEX_DSN")

    import psycopg

    try:
        return _run(args, psycopg.connect(args.dsn, autocommit=True))
    except psycopg.Error as exc:
        hint = f" (hint: {exc.diag.message_hint})" if exc.diag.message_hint else ""
        message = exc.diag.message_primary or str(exc).strip()
        print(f"memex worker: [{exc.sqlstate}] {message}{hint}", file=sys.stderr)
        return 2
    except MemexDbError as exc:  # e.g. a remote endpoint that cannot be reached
        hint = f" (hint: {exc.hint})" if exc.hint else ""
        print(f"memex worker: [{exc.sqlstate}] {exc.message}{hint}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def _run(args: argparse.Namespace, conn: Any) -> int:
    with conn:
        worker = Worker(conn, args.space, args.batch_size, args.threads or default_threads(1),
                        args.runtime)  # fmt: skip
        print(f"memex worker: space {worker.space.name}, model {worker.space.model} "
              f"({worker.loaded.encoder.provider}, {worker.loaded.encoder.threads} threads)",
              file=sys.stderr, flush=True)  # fmt: skip
        while True:
            started = time.perf_counter()
            done = worker.drain()
            if done:
                rate = done / max(time.perf_counter() - started, 1e-6)
                print(f"memex worker: embedded {done} chunks ({rate:.0f}/s)", flush=True)
            if args.once:
                print(f"memex worker: done, {worker.embedded} chunks embedded", flush=True)
                return 0
            if not done:
                time.sleep(args.poll)


if __name__ == "__main__":
    sys.exit(main())
