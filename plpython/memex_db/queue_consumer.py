"""What makes `memex worker` a queue consumer (docs/worker.md): stopping on a signal between
batches, reconnecting with backoff when the database goes away, waking on NOTIFY with polling
as the fallback, and the heartbeat row admins read in memex.workers."""

from __future__ import annotations

import os
import signal
import socket
import time
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime
from types import FrameType
from typing import Any, Protocol

CHANNEL = "memex_pending"  # sql/143-queue.sql notifies it
# Refusals a server gives while it starts, stops or is full: worth waiting for. Any other
# FATAL at connect (no such database or role, a wrong password) is not.
TRANSIENT_REFUSALS = ("starting up", "shutting down", "in recovery mode",
                      "not yet accepting connections", "too many clients",
                      "remaining connection slots")  # fmt: skip
BACKOFF_MAX_S = 4.0  # the longest wait between connection attempts (with jitter under it)
RATE_WINDOW_S = 60.0  # rows/s in the heartbeat: over the last minute


class Stop:
    """SIGTERM and SIGINT ask for a stop: the batch in hand is finished and committed first.
    A second SIGINT (Ctrl-C twice) interrupts at once."""

    def __init__(self) -> None:
        self.signal: int | None = None

    def install(self) -> None:
        signal.signal(signal.SIGTERM, self._received)
        signal.signal(signal.SIGINT, self._received)

    def _received(self, signum: int, frame: FrameType | None) -> None:
        if self.signal is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.signal = signum

    @property
    def requested(self) -> bool:
        return self.signal is not None

    @property
    def name(self) -> str:
        return signal.Signals(self.signal).name if self.signal else "-"

    @property
    def exit_code(self) -> int:
        return 130 if self.signal == signal.SIGINT else 0


def connection_lost(exc: BaseException, conn: Any | None) -> bool:
    """The session is gone (a server restart, a network cut, pg_terminate_backend), as opposed
    to a statement that failed on a live session."""
    import psycopg

    if not isinstance(exc, psycopg.OperationalError):
        return False
    return conn is None or bool(conn.closed or conn.broken)


def first_line(error: BaseException | None) -> str:
    """An error's first line, for a one-line message."""
    return (str(error).strip().splitlines() or ["?"])[0] if error else "?"


def worth_retrying(exc: BaseException) -> bool:
    """A failed connection attempt that waiting may cure: no server listening yet, or one that
    starts, stops or is full. libpq gives no SQLSTATE at connect, hence the message."""
    import psycopg

    if not isinstance(exc, psycopg.OperationalError):
        return False
    text = str(exc)
    return "FATAL" not in text or any(refusal in text for refusal in TRANSIENT_REFUSALS)


def connect(dsn: str, stop: Stop, say: Callable[[str], None]) -> Any:
    """A new autocommit session, tried again with exponential backoff and full jitter (at most
    BACKOFF_MAX_S apart) while the server cannot be reached; gives up when a stop is asked
    (raising the last error) or the refusal is not transient."""
    import psycopg
    import tenacity
    from psycopg.conninfo import conninfo_to_dict

    named = "application_name" in conninfo_to_dict(dsn)
    extra: dict[str, Any] = {} if named else {"application_name": "memex worker"}

    def waiting(state: tenacity.RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome else None
        seconds = state.next_action.sleep if state.next_action else 0
        attempt = state.attempt_number + 1
        say(f"cannot connect ({first_line(error)}); attempt {attempt} in {seconds:.1f} s")

    for attempt in tenacity.Retrying(
        retry=tenacity.retry_if_exception(worth_retrying),
        wait=tenacity.wait_random_exponential(multiplier=0.25, max=BACKOFF_MAX_S),
        stop=lambda _state: stop.requested,
        before_sleep=waiting,
        reraise=True,
    ):
        with attempt:
            return psycopg.connect(dsn, autocommit=True, **extra)
    raise AssertionError("unreachable: tenacity returns or raises")


class Wake:
    """LISTEN on the session: a notification (received while waiting, or while a batch ran)
    ends the next wait at once; without one, a wait ends after `poll` seconds."""

    def __init__(self, conn: Any) -> None:
        self.woken = False
        conn.add_notify_handler(self._notified)
        conn.execute(f"listen {CHANNEL}")

    def _notified(self, _notification: Any) -> None:
        self.woken = True

    def wait(self, conn: Any, seconds: float, stop: Stop, tick: Callable[[], None]) -> None:
        """Returns on a notification, a stop, or after `seconds`; calls tick about every
        second (the heartbeat)."""
        deadline = time.monotonic() + seconds
        while not (self.woken or stop.requested):
            left = deadline - time.monotonic()
            if left <= 0:
                break
            for _ in conn.notifies(timeout=min(left, 1.0), stop_after=1):
                self.woken = True
            tick()
        self.woken = False


class Counted(Protocol):
    embedded: int


class Heartbeat:
    """The worker's row in memex.worker_heartbeats (memex.workers), written between batches and
    while idle, every `interval` seconds."""

    def __init__(self, space: str, provider: str, model: str, interval: float,
                 counter: Counted):  # fmt: skip
        self.space, self.provider, self.model = space, provider, model
        self.interval = interval
        self.counter = counter  # the run's count of chunks embedded is the worker's
        self.id: int | None = None
        self.started = time.monotonic()
        self.recent: deque[tuple[float, int]] = deque()
        self.last_batch_at: datetime | None = None
        self.error: str | None = None
        self.due = 0.0

    def batch(self, rows: int) -> None:
        self.recent.append((time.monotonic(), rows))
        self.last_batch_at = datetime.now(UTC)

    def failed(self, message: str) -> None:
        """An error to show in memex.workers (kept there until the next one)."""
        self.error = message[:1000]

    def rows_per_s(self) -> float:
        now = time.monotonic()
        while self.recent and self.recent[0][0] < now - RATE_WINDOW_S:
            self.recent.popleft()
        window = min(RATE_WINDOW_S, max(now - self.started, 1.0))
        return sum(rows for _, rows in self.recent) / window

    def beat(self, conn: Any, force: bool = False) -> None:
        if not force and time.monotonic() < self.due:
            return
        if self.id is None or not self._send(conn):  # first beat, or its row was removed
            self.id = conn.execute(
                "select memex._worker_started(%s, %s, %s, %s, %s, make_interval(secs => %s))",
                (socket.gethostname(), os.getpid(), self.space, self.provider, self.model,
                 self.interval),
            ).fetchone()[0]  # fmt: skip
            self._send(conn)
        self.error = None
        self.due = time.monotonic() + self.interval

    def _send(self, conn: Any) -> bool:
        row = conn.execute(
            "select memex._worker_beat(%s, %s, %s, %s, %s)",
            (self.id, self.counter.embedded, self.rows_per_s(), self.last_batch_at, self.error),
        ).fetchone()
        return bool(row[0])

    def stopped(self, conn: Any, reason: str) -> None:
        """The last heartbeat, with the final counts, and why the run ended."""
        self.beat(conn, force=True)
        if self.id is not None:
            conn.execute("select memex._worker_stopped(%s, %s)", (self.id, reason))
