"""`memex embed` (CALL memex.embed_pending with a progress bar) and `memex worker` (the same
memex_db code outside the database, in the server venv)."""

from __future__ import annotations

import json
import os
import sys
from typing import NoReturn

import psycopg
from tqdm import tqdm

from memex import __version__
from memex.dsn import connect
from memex.errors import MemexError
from memex.paths import server_lib_dir, server_python
from memex.progress import progress


def embed_figures(diag: psycopg.errors.Diagnostic) -> dict[str, object] | None:
    """The figures a memex.embed_pending NOTICE carries as JSON in its DETAIL, if any."""
    if not (diag.message_primary or "").startswith("memex.embed_pending:"):
        return None
    try:
        figures = json.loads(diag.message_detail or "")
    except ValueError:
        return None
    return figures if isinstance(figures, dict) else None


def embed(dsn: str, space: str | None, batch_size: int, max_rows: int | None) -> int:
    """CALL memex.embed_pending with a progress bar. Every batch commits: an interrupted run
    keeps what it embedded, and says so."""
    with connect(dsn) as conn:
        row = conn.execute("select memex.pending_count(%s)", (space,)).fetchone()
        total = int(row[0]) if row else 0
        if max_rows is not None:
            total = min(total, max_rows)
        bar: tqdm[int] = progress(total=total, desc="embedding", unit="chunk")
        done = [0]
        last: list[str] = []

        def on_notice(diag: psycopg.errors.Diagnostic) -> None:
            figures = embed_figures(diag)
            if figures is None and diag.message_primary:  # e.g. the index being built
                bar.write(diag.message_primary, file=sys.stderr)
            elif figures is not None and isinstance(figures.get("done"), int):
                done[0] = int(figures["done"])  # type: ignore[call-overload]
                bar.update(max(0, done[0] - bar.n))
                if figures.get("event") == "done":
                    last[:] = [diag.message_primary or ""]

        conn.add_notice_handler(on_notice)
        try:
            conn.execute("call memex.embed_pending(%s, %s, %s)", (space, batch_size, max_rows))
        except (KeyboardInterrupt, psycopg.errors.QueryCanceled):
            bar.close()
            raise MemexError(
                f"interrupted after {done[0]:,} chunks embedded (each batch is committed): "
                "run `memex embed` again to resume",
                exit_code=130,
            ) from None
        bar.close()
        left = conn.execute("select memex.pending_count(%s)", (space,)).fetchone()
    print(last[0] if last else "memex.embed_pending: nothing to do")
    print(f"pending now: {left[0] if left else '?'}")
    return 0


def worker(dsn: str, args: list[str]) -> NoReturn:
    """Replace this process with the worker, run by the server venv's interpreter."""
    python = server_python()
    lib = server_lib_dir(__version__)
    if not python.exists() or not (lib / "memex_db").is_dir():
        raise MemexError(
            f"the server venv ({python}) or memex_db {__version__} ({lib}) is missing on this "
            "machine: the worker runs the model with the same packages as the database.\n"
            "Fix: run `make setup` (or `make server-venv`) here"
        )
    # The DSN (a password, maybe) goes in the environment, not on a command line that every
    # user of the machine can read in `ps`.
    env = {**os.environ, "PYTHONPATH": str(lib), "HF_HUB_OFFLINE": "1", "MEMEX_DSN": dsn}
    os.execve(str(python), [str(python), "-m", "memex_db.worker", *args], env)
