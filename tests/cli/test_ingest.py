"""`memex ingest` end to end: a real directory, the real CLI, a real database."""

from __future__ import annotations

import json
from pathlib import Path

import psycopg
import pytest

from memex.cli import main
from tests.cli.mixed_corpus import artefact, build_mixed_directory, chatgpt_export


def tenant_rows(dsn: str, tenant: str, query: str) -> list[tuple[object, ...]]:
    """Rows as memex_app sees them with `tenant` set (RLS applies)."""
    with psycopg.connect(dsn) as conn:
        conn.execute("set role memex_app")
        conn.execute("select memex.set_tenant(%s)", (tenant,))
        return conn.execute(query).fetchall()


def count(dsn: str, tenant: str, table: str, where: str = "true") -> int:
    return int(tenant_rows(dsn, tenant, f"select count(*) from memex.{table} where {where}")[0][0])  # type: ignore[call-overload]


def run_ingest(dsn: str, *args: str) -> int:
    return main(["ingest", "--dsn", dsn, *args])


@pytest.fixture
def handbook(tmp_path: Path) -> Path:
    return build_mixed_directory(tmp_path)


def test_mixed_directory_reports_each_file_and_stores_all_but_the_broken_one(
    db: str, handbook: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = run_ingest(db, str(handbook), "--tenant", "acme", "--create-tenant")
    out, err = capsys.readouterr()

    assert code == 1, "a broken file makes the run fail"
    # one line per file, by the uri it is stored under
    lines = {line.split()[1]: line.split()[0] for line in out.splitlines() if "  " in line}
    assert lines["handbook/chats/broken.l1.v2.json"] == "failed"
    assert lines["handbook/logo.png"] == "skipped"
    for name in ("keys.md", "ops/backup.txt", "ops/page.html", "report.pdf",
                 "chats/conversations.json", "chats/2025-06-25__orage.l1.v2.json",
                 "chats/2025-06-25__orage.l2.v2.json"):  # fmt: skip
        assert lines[f"handbook/{name}"] == "inserted", name
    assert ".git" not in out, "hidden directories are not ingested"
    assert "10 files: 7 inserted, 1 updated, 0 unchanged, 1 skipped, 1 failed" in out
    assert "broken.l1.v2.json: malformed JSON" in err and "truncated" in err

    documents = dict(tenant_rows(db, "acme", "select uri, content from memex.documents"))
    assert sorted(documents) == ["handbook/keys.md", "handbook/ops/backup.txt",
                                 "handbook/ops/page.html", "handbook/report.pdf"]  # fmt: skip
    html = documents["handbook/ops/page.html"]
    assert "Page the secondary after 15 minutes." in html and "Escalate & log it." in html
    assert "secret" not in html and "color" not in html, "scripts and styles are not text"
    assert "Revenue grew by ten percent." in documents["handbook/report.pdf"]
    titles = dict(tenant_rows(db, "acme", "select uri, title from memex.documents"))
    assert titles["handbook/keys.md"] == "Rotating keys"
    assert titles["handbook/ops/page.html"] == "On-call guide"
    assert titles["handbook/report.pdf"] == "Quarterly report"

    slugs = [r[0] for r in tenant_rows(db, "acme", "select slug from memex.conversations")]
    assert sorted(slugs) == ["2025-06-25__orage", "chatgpt-c-keys", "chatgpt-c-tokyo"]
    assert count(db, "acme", "messages") == 6
    assert count(db, "acme", "messages", "content like 'ABANDONED%'") == 0, "only the live branch"
    levels = tenant_rows(db, "acme", "select level, topics from memex.summaries order by level")
    assert levels == [(1, ["ops"]), (2, [])], "L2 took its level from the file name"
    assert count(db, "acme", "summaries", "content = 'never stored'") == 0
    for kind in ("document", "message", "summary"):
        assert count(db, "acme", "chunks", f"source_kind = '{kind}'") > 0, kind


def test_second_run_changes_nothing_and_a_fixed_file_goes_in(
    db: str, handbook: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run_ingest(db, str(handbook), "--tenant", "acme", "--create-tenant")
    before = {t: count(db, "acme", t) for t in ("documents", "messages", "summaries", "chunks")}
    chunk_ids = tenant_rows(db, "acme", "select id from memex.chunks order by id")
    capsys.readouterr()

    assert run_ingest(db, str(handbook), "--tenant", "acme") == 1
    assert "0 inserted, 0 updated, 8 unchanged, 1 skipped, 1 failed" in capsys.readouterr().out
    assert before == {t: count(db, "acme", t) for t in before}
    assert chunk_ids == tenant_rows(db, "acme", "select id from memex.chunks order by id")

    fixed = artefact(1, [{"index": 0, "summary": "now stored"}]) | {"slug": "broken"}
    (handbook / "chats" / "broken.l1.v2.json").write_text(json.dumps(fixed))
    (handbook / "keys.md").write_text("# Rotating keys\n\nRotate them every 30 days now.\n")
    assert run_ingest(db, str(handbook), "--tenant", "acme") == 0
    out = capsys.readouterr().out
    assert "1 inserted, 1 updated, 7 unchanged, 1 skipped, 0 failed" in out
    assert count(db, "acme", "summaries", "content = 'now stored'") == 1
    assert count(db, "acme", "chunks", "content like '%30 days%'") == 1
    assert count(db, "acme", "chunks", "content like '%90 days%'") == 0


BAD_FILES = {
    "nul.txt": (b"text with a \x00 NUL byte", "NUL byte"),
    "latin1.txt": ("café".encode("latin-1"), "not valid UTF-8"),
    "role.json": (
        json.dumps({"slug": "bad-role", "messages": [{"role": "robot", "content": "hi"}]}).encode(),
        "[22023] messages[0].role",
    ),
    "covers.l1.v2.json": (
        json.dumps(artefact(1, [{"index": 0, "summary": "x", "covers": {"a": 1}}])).encode(),
        "[22023] summaries[0].covers",
    ),
    "no-text.l1.v2.json": (json.dumps(artefact(1, [{"index": 0}])).encode(), "summary"),
    "mystery.json": (b'{"hello": "world"}', "unrecognised JSON"),
    "keys.json": (json.dumps({"slug": "k", "messages": [], "colour": 1}).encode(), "colour"),
    "scan.pdf": (b"%PDF-1.4 not really", "PDF"),
}


@pytest.mark.parametrize("name", sorted(BAD_FILES))
def test_a_bad_file_is_named_and_writes_nothing(
    db: str, tmp_path: Path, name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    data, expected = BAD_FILES[name]
    path = tmp_path / name
    path.write_bytes(data)
    (tmp_path / "good.md").write_text("# Good\n\nThis one is fine.\n")

    code = run_ingest(db, str(path), str(tmp_path / "good.md"), "--tenant", "t", "--create-tenant")

    err = capsys.readouterr().err
    assert code == 1
    failure = next(line for line in err.splitlines() if line.startswith("memex: failed:"))
    assert name in failure and expected in failure, failure
    assert count(db, "t", "documents") == 1, "the good file still went in"
    assert count(db, "t", "conversations") == 0, "nothing of a bad file is kept"
    assert count(db, "t", "summaries") == 0


def test_an_unknown_tenant_stops_before_anything_is_read(
    db: str, handbook: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run_ingest(db, str(handbook), "--tenant", "nobody") == 1
    assert "unknown tenant 'nobody'" in capsys.readouterr().err


def test_tenants_keep_their_own_copy_of_the_same_tree(db: str, handbook: Path) -> None:
    run_ingest(db, str(handbook), "--tenant", "a", "--create-tenant")
    run_ingest(db, str(handbook / "ops"), "--tenant", "b", "--create-tenant", "--language", "fr")

    assert count(db, "a", "documents") == 4
    b_docs = tenant_rows(db, "b", "select uri, metadata ->> 'language' from memex.documents")
    assert sorted(b_docs) == [("ops/backup.txt", "fr"), ("ops/page.html", "fr")]
    assert count(db, "b", "conversations") == 0


def mdbook_page(title: str, body: str, *, refresh: str | None = None) -> str:
    """A page shaped as mdBook 0.4 writes them: sidebar, help popup, menu bar, main, nav."""
    meta = f'<meta http-equiv="refresh" content="0; URL={refresh}">' if refresh else ""
    return (
        f"<!DOCTYPE HTML><html lang='en'><head><meta charset='UTF-8'>{meta}"
        f"<title>{title} - The Example Book</title>"
        "<script>var path_to_root = '';</script>"  # no </head>: browsers and lexbor cope
        "<body><div id='body-container'>"
        "<nav id='sidebar' class='sidebar' aria-label='Table of contents'><ol class='chapter'>"
        "<li><a href='ch01.html'>1. Getting started</a></li>"
        "<li><a href='ch02.html'>2. Lifetimes</a></li></ol></nav>"
        "<div id='page-wrapper' class='page-wrapper'><div class='page'>"
        "<div id='mdbook-help-container' hidden><h2>Keyboard shortcuts</h2>"
        "<p>Press ← or → to navigate between chapters</p></div>"
        "<div id='menu-bar' class='menu-bar'><h1 class='menu-title'>The Example Book</h1></div>"
        f"<div id='content' class='content'><main>{body}</main>"
        "<nav class='nav-wrapper' aria-label='Page navigation'>"
        "<a rel='next' href='ch02.html'>Next</a></nav></div></div></div></div></body></html>"
    )


@pytest.fixture
def static_site(tmp_path: Path) -> Path:
    site = tmp_path / "book"
    site.mkdir()
    (site / "ch01.html").write_text(mdbook_page(
        "Getting started", "<h1>Getting started</h1><p>Install the toolchain first.</p>"
        "<pre><code>fn main() {\n    println!(\"hi\");\n}</code></pre>"))  # fmt: skip
    (site / "ch02.html").write_text(mdbook_page(
        "Lifetimes", "<h1>Lifetimes</h1><p>Every reference has a lifetime.</p>"))  # fmt: skip
    (site / "print.html").write_text(mdbook_page(
        "The Example Book", "<h1>Getting started</h1><p>Install the toolchain first.</p>"
        "<h1>Lifetimes</h1><p>Every reference has a lifetime.</p>"))  # fmt: skip
    (site / "old.html").write_text(mdbook_page("Moved", "<p>Moved.</p>", refresh="ch02.html"))
    (site / "first-edition").mkdir()
    (site / "first-edition" / "intro.html").write_text(mdbook_page("Intro", "<p>Old.</p>"))
    (site / ".memexignore").write_text("# older copies of the book\n/first-edition/\n")
    return tmp_path


def test_a_static_site_ingests_its_content_without_chrome_redirects_or_excluded_pages(
    db: str, static_site: Path, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    monkeypatch.chdir(static_site)
    code = run_ingest(db, "book", "--exclude", "print.html", "--tenant", "web",
                      "--create-tenant")  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0, out
    assert "skipped    book/old.html  a redirect page (to ch02.html)" in out
    documents = dict(tenant_rows(db, "web", "select uri, title from memex.documents"))
    assert documents == {"book/ch01.html": "Getting started", "book/ch02.html": "Lifetimes"}
    (content,) = tenant_rows(db, "web", "select content from memex.documents "
                                        "where uri = 'book/ch01.html'")[0]  # fmt: skip
    assert content == (
        'Getting started\n\nInstall the toolchain first.\n\nfn main() {\n    println!("hi");\n}'
    ), "no sidebar, help, menu bar or page navigation; code keeps its indentation"

    # the same file named on its own, by any path, is the same document
    for path in ("book/ch02.html", "./book/ch02.html", str(static_site / "book" / "ch02.html")):
        assert run_ingest(db, path, "--tenant", "web") == 0
        assert "unchanged  book/ch02.html" in capsys.readouterr().out, path
    assert count(db, "web", "documents") == 2
    # from elsewhere, --root names the same root
    monkeypatch.chdir(static_site / "book")
    assert run_ingest(db, "ch02.html", "--root", "..", "--tenant", "web") == 0
    assert "unchanged  book/ch02.html" in capsys.readouterr().out
    assert run_ingest(db, "ch02.html", "--root", "/nonexistent", "--tenant", "web") == 1
    assert "--root /nonexistent is not a directory" in capsys.readouterr().err
    (static_site / "other").mkdir()
    assert run_ingest(db, "ch02.html", "--root", "../other", "--tenant", "web") == 1
    assert "ch02.html is outside --root" in capsys.readouterr().err
    assert count(db, "web", "documents") == 2


def _messages_of(dsn: str, tenant: str, slug: str) -> list[tuple[object, ...]]:
    return tenant_rows(
        dsn, tenant,
        "select g.seq, g.content from memex.messages as g join memex.conversations as c"
        f" on c.id = g.conversation_id and c.tenant_id = g.tenant_id where c.slug ="
        f" '{slug}' order by g.seq",
    )  # fmt: skip


def test_a_reimported_chatgpt_export_holds_the_current_branch_only(
    db: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The thread was m1, m2, m3, m4; in the app the user then edited m2 (a new branch m2b).
    Re-importing stored m1, m2b, m3, m4: a conversation that never existed."""
    export = chatgpt_export()[:1]
    mapping = export[0]["mapping"]

    def reply(ident: str, parent: str, role: str, text: str) -> None:
        mapping[ident] = json.loads(json.dumps(mapping["m2"]))
        mapping[ident].update(id=ident, parent=parent)
        mapping[ident]["message"].update(id=ident, author={"role": role})
        mapping[ident]["message"]["content"]["parts"] = [text]

    reply("m3", "m2", "user", "And the old key?")
    reply("m4", "m3", "assistant", "Retire it after a day.")
    export[0]["current_node"] = "m4"
    path = tmp_path / "conversations.json"
    path.write_text(json.dumps(export))
    assert run_ingest(db, str(path), "--tenant", "t", "--create-tenant") == 0
    assert [r[0] for r in _messages_of(db, "t", "chatgpt-c-keys")] == [1, 2, 3, 4]

    reply("m2b", "m1", "assistant", "Rotate with a grace period.")
    export[0]["current_node"] = "m2b"
    path.write_text(json.dumps(export))
    capsys.readouterr()
    assert run_ingest(db, str(path), "--tenant", "t") == 0
    out = capsys.readouterr().out
    assert _messages_of(db, "t", "chatgpt-c-keys") == [
        (1, "How do I rotate the database keys?"), (2, "Rotate with a grace period."),
    ]  # fmt: skip
    assert "updated    conversations.json  1 conversation; 2 messages removed" in out
    assert "2 messages removed from re-imported conversations" in out
    assert count(db, "t", "chunks", "content like '%old key%'") == 0, "their chunks went too"


def test_chat_export_messages_left_out_are_reported_with_their_reason(
    db: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "conversations.json"
    path.write_text(json.dumps([{
        "uuid": "u1", "name": "Bots", "created_at": "2025-01-02T03:04:05Z",
        "chat_messages": [
            {"uuid": "a", "sender": "human", "text": "hello"},
            {"uuid": "b", "sender": "robot", "text": "beep"},
            {"uuid": "c", "sender": "assistant", "text": "", "content": [{"type": "image"}]},
            {"uuid": "d", "sender": "assistant", "text": "hi"},
        ],
    }]))  # fmt: skip
    assert run_ingest(db, str(path), "--tenant", "t", "--create-tenant") == 0
    out = capsys.readouterr().out
    assert ("2 messages left out: 1 unknown sender 'robot', 1 no text (an image or a file)"
            in out), out  # fmt: skip
    assert "2 messages of chat exports left out" in out
    assert [r[1] for r in _messages_of(db, "t", "claude-u1")] == ["hello", "hi"]


def test_an_unzipped_chatgpt_export_folder_skips_its_companion_files(
    db: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "chatgpt-export"
    folder.mkdir()
    (folder / "conversations.json").write_text(json.dumps(chatgpt_export()))
    (folder / "user.json").write_text(json.dumps({"id": "user-1", "email": "a@example.com"}))
    (folder / "shared_conversations.json").write_text("[]")
    (folder / "message_feedback.json").write_text("[]")
    (folder / "chat.html").write_text("<html><title>ChatGPT Data Export</title><body></body>")
    code = run_ingest(db, str(folder), "--tenant", "t", "--create-tenant")
    out = capsys.readouterr().out
    assert code == 0, out
    lines = {line.split()[1]: line for line in out.splitlines() if line.startswith("skipped")}
    for name in ("user.json", "shared_conversations.json", "message_feedback.json", "chat.html"):
        assert "part of a chat export" in lines[f"chatgpt-export/{name}"], name
    assert count(db, "t", "conversations") == 2
    assert count(db, "t", "documents") == 0


def test_the_same_files_keep_their_uris_wherever_ingest_runs_from(
    db: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """kb/notes from its parent, notes from kb, and the absolute path from / stored 9 documents
    from 3 files (each run named them relative to its own directory)."""
    notes = tmp_path / "kb" / "notes"
    notes.mkdir(parents=True)
    for name in ("a", "b", "c"):
        (notes / f"{name}.md").write_text(f"# {name}\n\nNote {name}.\n")
    monkeypatch.chdir(tmp_path)
    assert run_ingest(db, "kb/notes", "--tenant", "t", "--create-tenant") == 0
    monkeypatch.chdir(tmp_path / "kb")
    assert run_ingest(db, "notes", "--tenant", "t") == 0
    monkeypatch.chdir("/")
    assert run_ingest(db, str(notes), "--tenant", "t") == 0
    monkeypatch.chdir(tmp_path / "kb" / "notes")
    assert run_ingest(db, "b.md", "--tenant", "t") == 0
    out = capsys.readouterr().out
    assert count(db, "t", "documents") == 3
    uris = sorted(str(r[0]) for r in tenant_rows(db, "t", "select uri from memex.documents"))
    assert uris == ["kb/notes/a.md", "kb/notes/b.md", "kb/notes/c.md"]
    assert "3 files: 0 inserted, 0 updated, 3 unchanged" in out
    assert "unchanged  notes/a.md  1 document; kept its uri kb/notes/a.md from an earlier" in out
    folders = tenant_rows(db, "t", "select distinct f.path from memex.documents as d"
                          " join memex.folders as f on f.id = d.folder_id and f.tenant_id ="
                          " d.tenant_id")  # fmt: skip
    assert folders == [("kb/notes",)]


def test_a_chat_file_stores_each_speakers_name_and_time(
    db: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "session-1.json"
    path.write_text(json.dumps({
        "format": "memex.chat/1", "slug": "session-1", "title": "Session 1", "date": "2023-05-08",
        "messages": [
            {"speaker": "Caroline", "time": "2023-05-08T13:56:00Z", "text": "I went to the group."},
            {"speaker": "Melanie", "time": "2023-05-08T13:57:00Z", "text": "How was it?"},
        ],
    }))  # fmt: skip
    assert run_ingest(db, str(path), "--tenant", "t", "--create-tenant") == 0
    rows = tenant_rows(
        db, "t", "select name, role::text, ts::text from memex.messages order by seq"
    )
    assert rows == [("Caroline", "user", "2023-05-08 13:56:00+00"),
                    ("Melanie", "assistant", "2023-05-08 13:57:00+00")]  # fmt: skip
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"format": "memex.chat/1", "slug": "bad", "messages": [
        {"speaker": "x" * 201, "text": "hi"}]}))  # fmt: skip
    assert run_ingest(db, str(bad), "--tenant", "t") != 0
    assert "messages[0].name: 201 characters; the limit is 200" in capsys.readouterr().out
    assert count(db, "t", "conversations", "slug = 'bad'") == 0
