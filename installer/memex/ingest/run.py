"""The ingest loop: every file in its own transaction, a progress bar, a line per file and a
summary. One bad file is reported by name and rolled back whole; the others go on."""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, TextIO

import psycopg
from psycopg.types.json import Jsonb
from tqdm import tqdm

from memex.dsn import connect
from memex.errors import MemexError
from memex.ingest.documents import read_document
from memex.ingest.items import Conversation, Document, FileRejected, FileSkipped, Item
from memex.ingest.jsonfiles import export_companion, read_json_file
from memex.ingest.sources import SourceFile, discover
from memex.ingest.store import store
from memex.progress import progress
from memex.tenants import check_tenant

STATUSES = ("inserted", "updated", "unchanged", "skipped", "failed")


@dataclass
class FileResult:
    source: SourceFile
    status: str
    detail: str = ""
    items: Counter[str] = field(default_factory=Counter)
    messages_removed: int = 0
    messages_left_out: int = 0


@dataclass
class IngestReport:
    files: list[FileResult] = field(default_factory=list)

    @property
    def counts(self) -> Counter[str]:
        return Counter(result.status for result in self.files)

    @property
    def failed(self) -> list[FileResult]:
        return [result for result in self.files if result.status == "failed"]

    def summary(self) -> str:
        counts = self.counts
        parts = ", ".join(f"{counts[s]} {s}" for s in STATUSES)
        lines = [f"{len(self.files)} files: {parts}"]
        removed = sum(r.messages_removed for r in self.files)
        if removed:
            lines.append(
                f"{_plural(removed, 'message')} removed from re-imported conversations: "
                "no longer in their file (another branch, or deleted in the app)"
            )
        left_out = sum(r.messages_left_out for r in self.files)
        if left_out:
            lines.append(f"{_plural(left_out, 'message')} of chat exports left out: "
                         "the reasons are on each file's line")  # fmt: skip
        return "\n".join(lines)


def _plural(n: int, noun: str) -> str:
    return f"{n:,} {noun}{'' if n == 1 else 's'}"


def read_items(source: SourceFile, extra_metadata: dict[str, Any]) -> list[Item]:
    if export_companion(source.path):
        raise FileSkipped("part of a chat export: conversations.json beside it holds the chats")
    suffix = source.path.suffix.lower()
    if suffix == ".json":
        return read_json_file(source.path)
    return [read_document(source.path, source.uri, source.folder, extra_metadata)]


def _file_status(items: Counter[str]) -> str:
    if not items or set(items) == {"unchanged"}:
        return "unchanged"
    return "inserted" if set(items) == {"inserted"} else "updated"


def _describe(
    items: list[Item], outcomes: Counter[str], removed: int, left_out: Counter[str]
) -> str:
    kinds = Counter(type(item).__name__.lower() for item in items)
    what = ", ".join(_plural(n, kind) for kind, n in sorted(kinds.items()))
    if len(items) > 1:
        what += " (" + ", ".join(f"{n} {o}" for o, n in sorted(outcomes.items())) + ")"
    if removed:
        what += f"; {_plural(removed, 'message')} removed (no longer in the file)"
    if left_out:
        reasons = ", ".join(f"{n} {reason}" for reason, n in left_out.most_common())
        what += f"; {_plural(left_out.total(), 'message')} left out: {reasons}"
    return what


def _database_error(exc: psycopg.Error) -> str:
    diag = exc.diag
    message = diag.message_primary or str(exc).strip()
    hint = f" (hint: {diag.message_hint})" if diag.message_hint else ""
    return f"[{exc.sqlstate}] {message.removeprefix('plpy.Error: ')}{hint}"


def keep_stored_uri(conn: psycopg.Connection[Any], doc: Document) -> Document:
    """The same file keeps its uri: a document's uri is its path relative to where ingest runs,
    so `memex ingest kb/notes` from `~` and `memex ingest notes` from `~/kb` would store one file
    twice. A document already stored from the same file (metadata.source_path) is updated under
    its uri and folder instead; deleting it first is how a file takes a new uri. Every query
    names the tenant: RLS does not apply to a superuser's connection."""
    path = doc.metadata.get("source_path")
    if not path:
        return doc
    row = conn.execute(
        "select d.uri, f.path from memex.documents as d left join memex.folders as f"
        " on f.tenant_id = d.tenant_id and f.id = d.folder_id"
        " where d.tenant_id = memex.current_tenant() and d.metadata @> %s and d.uri <> %s"
        " order by d.created_at, d.uri limit 1",
        (Jsonb({"source_path": path}), doc.uri),
    ).fetchone()
    if row is None or _uri_taken(conn, doc.uri):
        return doc
    return replace(doc, uri=str(row[0]), folder=None if row[1] is None else str(row[1]))


def _uri_taken(conn: psycopg.Connection[Any], uri: str) -> bool:
    """This file's own uri is stored already (an earlier run from here): it stays there."""
    row = conn.execute(
        "select exists (select 1 from memex.documents"
        " where tenant_id = memex.current_tenant() and uri = %s)",
        (uri,),
    )
    found = row.fetchone()
    return bool(found and found[0])


def ingest_file(
    conn: psycopg.Connection[Any], source: SourceFile, tenant: str, max_bytes: int,
    extra_metadata: dict[str, Any],
) -> FileResult:  # fmt: skip
    if source.link_out is not None:
        return FileResult(source, "skipped", f"a link out of the tree (to {source.link_out}): "
                          "--follow-links reads it")  # fmt: skip
    if not source.supported:
        if source.explicit:
            return FileResult(source, "failed", f"unsupported file type {source.path.suffix!r}")
        return FileResult(source, "skipped", f"unsupported type {source.path.suffix or '(none)'}")
    size = source.path.stat().st_size
    if size > max_bytes:
        return FileResult(
            source, "failed", f"{size / 2**20:.1f} MB, above --max-file-mb {max_bytes // 2**20}"
        )
    try:
        items = read_items(source, extra_metadata)
    except FileSkipped as exc:
        return FileResult(source, "skipped", str(exc))
    except (FileRejected, OSError) as exc:
        return FileResult(source, "failed", str(exc))
    outcomes: Counter[str] = Counter()
    removed = 0
    notes: list[str] = []
    try:
        with conn.transaction():
            conn.execute("select memex.set_tenant(%s)", (tenant,))
            for n, item in enumerate(items):
                if isinstance(item, Document):
                    items[n] = item = keep_stored_uri(conn, item)
                    if item.uri != source.uri:
                        notes.append(f"kept its uri {item.uri} from an earlier ingest")
                stored = store(conn, item)
                outcomes[stored.outcome] += 1
                removed += stored.messages_removed
    except psycopg.Error as exc:
        if conn.broken:
            raise
        return FileResult(source, "failed", _database_error(exc))
    left_out: Counter[str] = Counter()
    for item in items:
        if isinstance(item, Conversation):
            left_out.update(item.left_out)
    detail = "; ".join([_describe(items, outcomes, removed, left_out), *notes])
    return FileResult(source, _file_status(outcomes), detail, outcomes, removed, left_out.total())


def _check_ready(
    conn: psycopg.Connection[Any], tenant: str, create_tenant: bool, language: str | None
) -> None:
    row = conn.execute(
        "select to_regprocedure('memex.upsert_document(text, text, text, jsonb, text)')"
    ).fetchone()
    if row is None or row[0] is None:
        raise MemexError("memex is not installed in this database (run `memex install`)")
    if language is not None:  # refused before any file is read, with the languages there are
        conn.execute("select memex._ts_config(%s)", (Jsonb({"language": language}),))
    if create_tenant:
        conn.execute("select memex.create_tenant(%s)", (tenant,))
    check_tenant(conn, tenant, "--create-tenant")


def ingest(
    dsn: str,
    paths: list[str],
    tenant: str,
    *,
    uri_prefix: str = "",
    language: str | None = None,
    create_tenant: bool = False,
    max_file_mb: int = 100,
    root: str | None = None,
    excludes: list[str] | None = None,
    follow_links: bool = False,
    out: TextIO | None = None,
    on_result: Callable[[FileResult], None] | None = None,
) -> IngestReport:
    out = out or sys.stdout  # looked up per call: tests and callers swap sys.stdout
    sources = discover(paths, uri_prefix, root=root, excludes=excludes, follow_links=follow_links)
    extra_metadata = {"language": language} if language else {}
    report = IngestReport()
    with connect(dsn) as conn:
        _check_ready(conn, tenant, create_tenant, language)
        bar = progress(sources, desc="ingesting", unit="file")
        for source in bar:
            bar.set_postfix_str(source.path.name[-40:], refresh=False)
            result = ingest_file(conn, source, tenant, max_file_mb * 2**20, extra_metadata)
            report.files.append(result)
            tqdm.write(f"{result.status:9}  {source.uri}  {result.detail}".rstrip(), file=out)
            if on_result:
                on_result(result)
        bar.close()
    return report


def pending_after_ingest(dsn: str, tenant: str) -> tuple[int, bool]:
    """The tenant's chunks waiting for the active text space, and whether this role may embed
    them (memex.embed_pending is memex_admin's)."""
    with connect(dsn) as conn, conn.transaction():
        conn.execute("select memex.set_tenant(%s)", (tenant,))
        row = conn.execute(
            "select memex.pending_count(), has_function_privilege("
            "'memex.embed_pending(text, integer, integer)', 'execute')"
        ).fetchone()
    return (int(row[0]), bool(row[1])) if row else (0, False)
