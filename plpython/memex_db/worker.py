"""`memex worker`: embeds pending chunks outside the database, with the same memex_db code.

It takes its batches from the same engine as CALL memex.embed_pending (memex._drain_step: row
locks, SKIP LOCKED, tenant by tenant, one transaction per batch), encodes them with the space's
model in this process, and stores them with memex._store_embeddings, so it can run beside
in-database runners, on this machine or another one with the same server venv, and produces
the same vectors. Between batches it behaves as a queue consumer (memex_db.queue_consumer):
it wakes on NOTIFY, reconnects, stops on a signal, and keeps a heartbeat row.

Run it with the server venv's interpreter (the `memex worker` command does), as a role granted
memex_admin.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

from memex_db import catalog, models, queue_consumer, remote, spaces
from memex_db.errors import InvalidParameter, MemexDbError
from memex_db.queue_consumer import Heartbeat, Stop, Wake
from memex_db.settings import DEFAULT_BATCH_ROWS, default_threads

# SQLSTATE classes that can be one chunk's own fault: data exceptions, program limits.
CHUNK_FAULTS = ("22", "54")
# Exit statuses (memex's own: 1 bad input, 2 a system failed, 3 a missing prerequisite).
EXIT_BAD_INPUT, EXIT_FAILED, EXIT_NO_MEMEX, EXIT_SPACE_GONE = 1, 2, 3, 4


class SpaceGone(Exception):
    """The worker's space was retired or dropped while it ran: nothing left to work for."""


class NotInstalled(Exception):
    """The database has no memex (or one older than the worker's heartbeats)."""


def vector_array_literal(vectors: list[list[float]]) -> str:
    """A vector[] literal: '{"[1e-10,2e-10]","[...]"}' (PostgreSQL parses each element)."""
    return "{" + ",".join(f'"{v}"' for v in spaces.vector_literals(vectors)) + "}"


class Worker:
    def __init__(self, conn: Any, space: str | None, batch_size: int, threads: int,
                 runtime: str = "auto", endpoint_options: dict[str, int] | None = None,
                 on_failure: Callable[[str], None] = lambda _message: None):  # fmt: skip
        cur = conn.cursor(row_factory=_dict_rows())
        row = cur.execute(catalog.SPACE_SQL.format("%s"), (space,)).fetchone()
        self.conn = conn
        self.space = spaces.Space.from_row(row)
        self.batch_size = batch_size
        self.endpoint_options = endpoint_options or {}
        self.on_failure = on_failure
        self.loaded = models.load({}, self.space.model, threads, 0, self.space.runtime or runtime,
                                  endpoint=self._endpoint(cur))  # fmt: skip
        self.embedded = 0
        schema = conn.execute(catalog.VECTOR_SCHEMA_SQL).fetchone()[0]
        from psycopg import sql

        # The vector[] literal is cast by name: pgvector may live in any schema.
        self.store_sql = sql.SQL(
            "select memex._store_embeddings(%s, %s, %s, %s::text::{}.vector[])"
        ).format(sql.Identifier(schema))

    def attach(self, conn: Any) -> None:
        """Go on with a new session (after a reconnection)."""
        self.conn = conn

    def _endpoint(self, cur: Any) -> remote.Endpoint | None:
        """The endpoint of a remote space (its key: MEMEX_ENDPOINT_KEY_<NAME> in this
        process's environment, docs/embedding.md), with this worker's --concurrency,
        --requests-per-minute and --tokens-per-minute over the endpoint's own options."""
        endpoint = remote.endpoint_for(
            self.space.model,
            lambda name: cur.execute(remote.ROW_SQL.format("%s"), (name,)).fetchone(),
        )
        if not self.endpoint_options:
            return endpoint
        flags = ", ".join("--" + name.replace("_", "-") for name in self.endpoint_options)
        if endpoint is None:
            raise InvalidParameter(
                f"{flags}: for spaces on an embedding endpoint; space {self.space.name} runs "
                f"model {self.space.model} in this process",
                hint="leave them out (--threads sets this process's cores)",
            )
        return dataclasses.replace(endpoint, options={**endpoint.options, **self.endpoint_options})

    def drain(
        self, stop: Stop | None = None, after_batch: Callable[[int], None] | None = None
    ) -> int:
        """One pass over every tenant, the tenants served in turn, batch after batch, each
        committed; stops early when a stop is asked (the batch in hand is finished first).
        Returns the chunks that went through the model (those that failed alone are recorded,
        not counted)."""
        done = 0
        cursors: Any = None
        while not (stop and stop.requested):
            with self.conn.transaction():
                self._check_space()
                step = self.conn.execute(
                    "select finished, cursors, ids, contents, hashes"
                    " from memex._claim_step(%s, %s, %s::jsonb)",
                    (self.space.id, self.batch_size, _json(cursors)),
                ).fetchone()
                finished, cursors, ids, contents, hashes = step
                if finished:
                    break
                stored = self._embed_or_isolate(list(ids), list(contents), list(hashes))
            done += stored
            self.embedded += stored
            if after_batch:
                after_batch(stored)
        return done

    def _check_space(self) -> None:
        """Before each claim: a space retired (a reembed switched to another) or dropped since
        the worker started gets no more work from it."""
        row = self.conn.execute(
            "select status, retired_at from memex.spaces where id = %s", (self.space.id,)
        ).fetchone()
        if row is None:
            raise SpaceGone(f"space {self.space.name} was dropped")
        if row[0] == "retired":
            raise SpaceGone(
                f"space {self.space.name} was retired at {row[1]:%Y-%m-%d %H:%M:%S%z} (another "
                "space of its domain is active now): start a worker for the active space"
            )

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
            self.on_failure(f"chunk {ids[0]}: [{state}] {message}")
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


HELP = """\
Embeds the pending chunks of one space, batch after batch (each batch one committed
transaction), with several workers and CALL memex.embed_pending sharing the queue.

the database:
  $MEMEX_DSN (a libpq DSN or URI; `memex worker` sets it from its own --dsn, $MEMEX_DSN or
  the dev cluster). The DSN is never taken from this command line: `ps` shows command lines
  to every user of the machine. Connect as a role granted memex_admin.

waking up:
  LISTEN memex_pending: a committed write of chunks wakes the worker at once; without a
  notification it looks again every --poll seconds.

the database going away:
  a lost session (server restart, network cut) is reconnected with exponential backoff and
  jitter (at most 4 s between attempts) for as long as it takes, then the work goes on; the
  batch that was in flight was rolled back with the session and is claimed again.

signals:
  SIGTERM, SIGINT  finish the batch in hand, commit it, then exit (a second SIGINT: at once)
  SIGKILL          loses the uncommitted batch only: its row locks go with the session and
                   another worker (or the next start) embeds those chunks

heartbeat:
  a row in memex.workers every --heartbeat seconds (between batches and while idle): host,
  pid, space, provider, rows/s over the last minute, last batch, last error. A worker silent
  for more than three heartbeats is shown as lost.

exit status:
  0    --once and nothing left, or stopped by SIGTERM
  1    bad input (an option out of range, an unknown space)
  2    the database or the embedding endpoint failed (other than a lost connection)
  3    no memex in this database (run `memex install`)
  4    its space was retired or dropped while it ran (after finishing its batch)
  130  stopped by SIGINT (Ctrl-C)
"""


class _Parser(argparse.ArgumentParser):
    """A command-line mistake is bad input: exit 1, as for every memex command."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(EXIT_BAD_INPUT, f"{self.prog}: error: {message}\n")


def _bounded(kind: type[int] | type[float], low: float, high: float) -> Callable[[str], Any]:
    def parse(text: str) -> int | float:
        try:
            value = kind(text)
        except ValueError:
            value = None
        if value is None or not low <= value <= high:
            raise argparse.ArgumentTypeError(
                f"must be {'an integer' if kind is int else 'a number'} from {low:g} to "
                f"{high:g} (got {text})"
            )
        return value

    return parse


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="memex worker", description=HELP,
                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("--space", default=None, help="space name (default: the active text space)")
    parser.add_argument("--batch-size", type=_bounded(int, 1, 4096), default=64,
                        help="chunks a claimed batch (default 64)")  # fmt: skip
    parser.add_argument("--threads", type=_bounded(int, 0, 1024), default=0,
                        help="cores for a local model (0: every core of this machine)")  # fmt: skip
    endpoint = parser.add_argument_group(
        "a space on an embedding endpoint (default: the endpoint's own options)"
    )
    endpoint.add_argument("--concurrency", type=_bounded(int, 1, 64), default=None,
                          help="requests in flight; a batch needs --batch-size >= N x the "
                          "endpoint's batch_size to keep N busy")  # fmt: skip
    endpoint.add_argument("--requests-per-minute", type=_bounded(int, 0, 1_000_000),
                          default=None, help="request starts a minute, evenly spaced (0: no "
                          "limit)")  # fmt: skip
    endpoint.add_argument("--tokens-per-minute", type=_bounded(int, 0, 1_000_000_000),
                          default=None, help="tokens sent a minute, counted with the bundled "
                          "WordPiece tokenizer (0: no limit)")  # fmt: skip
    parser.add_argument("--runtime", default="auto", help="local model runtime (default auto)")
    parser.add_argument("--once", action="store_true", help="drain what is pending, then exit")
    parser.add_argument("--poll", type=_bounded(float, 0.1, 3600), default=5.0,
                        help="seconds between looks with no notification (default 5)")  # fmt: skip
    parser.add_argument("--heartbeat", type=_bounded(float, 0.1, 3600), default=10.0,
                        help="seconds between heartbeats (default 10)")  # fmt: skip
    return parser


def say(message: str) -> None:
    print(f"memex worker: {message}", file=sys.stderr, flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    dsn = os.environ.get("MEMEX_DSN")
    if not dsn:
        say("no database: set MEMEX_DSN (or run `memex worker --dsn ...`)")
        return EXIT_BAD_INPUT

    import psycopg

    try:
        return _run(args, dsn)
    except psycopg.Error as exc:
        hint = f" (hint: {exc.diag.message_hint})" if exc.diag.message_hint else ""
        message = exc.diag.message_primary or str(exc).strip()
        say(f"[{exc.sqlstate or '08006'}] {message}{hint}")
        return EXIT_BAD_INPUT if (exc.sqlstate or "").startswith("22") else EXIT_FAILED
    except MemexDbError as exc:  # e.g. a remote endpoint that cannot be reached
        hint = f" (hint: {exc.hint})" if exc.hint else ""
        say(f"[{exc.sqlstate}] {exc.message}{hint}")
        return EXIT_BAD_INPUT if exc.sqlstate.startswith("22") else EXIT_FAILED
    except NotInstalled as exc:
        say(str(exc))
        return EXIT_NO_MEMEX
    except KeyboardInterrupt:
        return 130


def _endpoint_options(args: argparse.Namespace) -> dict[str, int]:
    """The endpoint options this worker's flags override."""
    names = ("concurrency", "requests_per_minute", "tokens_per_minute")
    return {name: getattr(args, name) for name in names if getattr(args, name) is not None}


def _check_installed(conn: Any) -> None:
    found = conn.execute(
        "select to_regnamespace('memex') is not null"
        ", to_regclass('memex.worker_heartbeats') is not null"
    ).fetchone()
    if not found[0]:
        raise NotInstalled(
            f"memex is not installed in database {conn.info.dbname!r}: run `memex install` there"
            " (or point MEMEX_DSN at the database that has it)"
        )
    if not found[1]:
        raise NotInstalled(
            f"the memex in database {conn.info.dbname!r} predates this worker (no "
            "memex.worker_heartbeats): run `memex install` to upgrade it"
        )


def _run(args: argparse.Namespace, dsn: str) -> int:
    stop = Stop()
    stop.install()
    worker: Worker | None = None
    heartbeat: Heartbeat | None = None
    while True:
        try:
            conn = queue_consumer.connect(dsn, stop, say)
        except Exception:
            if stop.requested:
                say(f"stopped by {stop.name} while connecting")
                return stop.exit_code
            raise
        with conn:
            try:
                if worker is None or heartbeat is None:
                    _check_installed(conn)
                    worker = Worker(conn, args.space, args.batch_size,
                                    args.threads or default_threads(1), args.runtime,
                                    _endpoint_options(args))  # fmt: skip
                    heartbeat = Heartbeat(worker.space.name, worker.loaded.encoder.provider,
                                          worker.space.model, args.heartbeat,
                                          worker)  # fmt: skip
                    worker.on_failure = heartbeat.failed
                    say(f"space {worker.space.name}, model {worker.space.model} "
                        f"({worker.loaded.encoder.provider}, {worker.loaded.encoder.threads} "
                        f"threads); listening on {queue_consumer.CHANNEL}")  # fmt: skip
                else:
                    worker.attach(conn)
                    say("connected again; resuming")
                return _serve(conn, worker, heartbeat, args, stop)
            except SpaceGone as exc:
                say(f"{exc}; stopping")
                if heartbeat:
                    heartbeat.stopped(conn, str(exc))
                return EXIT_SPACE_GONE
            except Exception as exc:
                if not queue_consumer.connection_lost(exc, conn):
                    if heartbeat and not conn.closed:
                        heartbeat.failed(str(exc))
                        # the failure itself is what the caller must see, not this one's
                        with contextlib.suppress(Exception):
                            heartbeat.stopped(conn, f"failed: {str(exc)[:200]}")
                    raise
                said = queue_consumer.first_line(exc)
                say(f"connection lost ({said}); reconnecting")
                if heartbeat:
                    heartbeat.failed(f"connection lost: {said}")


def _serve(conn: Any, worker: Worker, heartbeat: Heartbeat, args: argparse.Namespace,
           stop: Stop) -> int:  # fmt: skip
    """Drain, then wait for a notification (or --poll), until stopped."""
    wake = Wake(conn)
    heartbeat.beat(conn, force=True)

    def after_batch(rows: int) -> None:
        heartbeat.batch(rows)
        heartbeat.beat(conn)

    while True:
        started = time.perf_counter()
        done = worker.drain(stop, after_batch)
        if done:
            rate = done / max(time.perf_counter() - started, 1e-6)
            print(f"memex worker: embedded {done} chunks ({rate:.0f}/s)", flush=True)
        if stop.requested:
            heartbeat.stopped(conn, f"stopped by {stop.name}")
            say(f"stopped by {stop.name}, {worker.embedded} chunks embedded")
            return stop.exit_code
        if args.once:
            heartbeat.stopped(conn, "--once: nothing left to embed")
            print(f"memex worker: done, {worker.embedded} chunks embedded", flush=True)
            return 0
        heartbeat.beat(conn)
        if not done:
            wake.wait(conn, args.poll, stop, lambda: heartbeat.beat(conn))


if __name__ == "__main__":
    sys.exit(main())
