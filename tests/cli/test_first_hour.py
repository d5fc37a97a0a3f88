"""What a new user meets in the first hour (issue 28): ingest that says what it left pending
and embeds it, searches that say why a row has no vector, languages and front matter, exit
statuses, `memex status`, `memex tenant`, help on every option, an interrupted embed."""

from __future__ import annotations

import argparse
import json
import threading
import time
from pathlib import Path

import psycopg
import pytest

from memex.cli import build_parser, main
from memex.devcluster import cluster
from tests.cli.test_ingest import count, run_ingest, tenant_rows


def _notes(root: Path) -> Path:
    notes = root / "notes"
    notes.mkdir()
    (notes / "editor.md").write_text(
        "---\ntitle: My editor setup\ntags: [tools, editor]\ndate: 2025-05-02\nlang: fr\n---\n"
        "# Éditeur\n\nJ'utilise Helix avec les raccourcis par défaut.\n"
    )
    (notes / "Backup-Policy.txt").write_text("Backup policy\nNightly base backups with WAL.\n")
    return notes


def test_ingest_embeds_what_it_added_or_says_what_waits(
    db: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    notes = _notes(tmp_path)
    assert run_ingest(db, str(notes), "--tenant", "t", "--create-tenant", "--no-embed") == 0
    out = capsys.readouterr().out
    assert "2 chunks of 't' wait for embedding: until then searches find them by their words" in out
    # A search now: the rows have no vector, and the CLI says so (the database's NOTICE).
    assert main(["search", "helix", "--tenant", "t", "--dsn", db]) == 0
    err = capsys.readouterr().err
    assert "memex: note: memex.rag_search: 1 of 1 results without a vector in space" in err
    assert "CALL memex.embed_pending()" in err

    (notes / "more.txt").write_text("Restores are tested monthly.\n")
    assert run_ingest(db, str(notes), "--tenant", "t") == 0
    out = capsys.readouterr().out
    assert "embedding 3 pending chunks (--no-embed skips this step)" in out
    assert "pending now: 0" in out
    assert main(["search", "helix", "--tenant", "t", "--dsn", db]) == 0
    assert "without a vector" not in capsys.readouterr().err


def test_an_application_role_is_told_what_embeds_its_chunks(
    db: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    main(["tenant", "create", "t", "--dsn", db])
    app_dsn = db + "?options=-c%20role%3Dmemex_app"
    assert run_ingest(app_dsn, str(_notes(tmp_path)), "--tenant", "t") == 0
    out = capsys.readouterr().out
    assert "2 chunks of 't' wait for embedding (embedding needs memex_admin)" in out
    assert count(db, "t", "chunks") == 2


def test_a_vector_search_that_cannot_see_pending_chunks_says_so(
    db: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run_ingest(db, str(_notes(tmp_path)), "--tenant", "t", "--create-tenant", "--no-embed")
    capsys.readouterr()
    assert main(["search", "helix", "--tenant", "t", "--dsn", db, "--mode", "vector"]) == 0
    captured = capsys.readouterr()
    assert "(no results)" in captured.out
    assert "this tenant has chunks with no vector in space" in captured.err


def test_stop_words_only_is_said_not_just_no_results(
    db: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    english = _notes(tmp_path) / "Backup-Policy.txt"  # in French, "the and of" are words
    run_ingest(db, str(english), "--tenant", "t", "--create-tenant", "--no-embed")
    capsys.readouterr()
    assert main(["search", "the and of", "--mode", "text", "--tenant", "t", "--dsn", db]) == 0
    captured = capsys.readouterr()
    assert "(no results)" in captured.out
    assert "only stop words" in captured.err


def test_front_matter_is_metadata_and_a_text_file_s_first_line_its_title(
    db: str, tmp_path: Path
) -> None:
    run_ingest(db, str(_notes(tmp_path)), "--tenant", "t", "--create-tenant", "--no-embed")
    rows = dict(
        (str(r[0]), r[1:])
        for r in tenant_rows(db, "t", "select uri, title, metadata, content from memex.documents")
    )
    title, metadata, content = rows["notes/editor.md"]
    assert title == "My editor setup"
    assert metadata["tags"] == ["tools", "editor"] and metadata["date"] == "2025-05-02"
    assert str(content).startswith("# Éditeur"), "the front matter is not text"
    languages = tenant_rows(db, "t", "select distinct language from memex.chunks"
                            " where content like '%Helix%'")  # fmt: skip
    assert languages == [("french",)], "lang: fr picked the text-search language"
    assert rows["notes/Backup-Policy.txt"][0] == "Backup policy"
    chunks = tenant_rows(db, "t", "select content from memex.chunks where content like '%---%'")
    assert chunks == []


def test_front_matter_that_is_not_yaml_fails_the_file_naming_it(
    db: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.md"
    bad.write_text("---\ntitle: [unclosed\n---\nbody\n")
    assert run_ingest(db, str(bad), "--tenant", "t", "--create-tenant", "--no-embed") == 1
    assert "front matter is not valid YAML" in capsys.readouterr().err
    assert count(db, "t", "documents") == 0


def test_a_language_that_is_none_is_refused_before_anything_is_read(
    db: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    notes = _notes(tmp_path)
    main(["tenant", "create", "t", "--dsn", db])
    capsys.readouterr()
    assert run_ingest(db, str(notes), "--tenant", "t", "--language", "klingon") == 1
    err = capsys.readouterr().err
    assert "[22023]: unknown language 'klingon'" in err and "da (danish)" in err
    assert count(db, "t", "documents") == 0
    for given, config in (("da", "danish"), ("pt-BR", "portuguese"), ("Norwegian", "norwegian"),
                          ("simple", "simple")):  # fmt: skip
        row = tenant_rows(db, "t", f'select memex._ts_config(\'{{"language": "{given}"}}\')')
        assert row == [(config,)], given


def test_exit_status_one_for_a_mistake_two_for_a_refused_connection(
    db: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["search", "x", "--k", "abc"]) == 1
    assert main(["dev"]) == 1
    assert main(["nonsense"]) == 1
    assert main(["--help"]) == 0
    capsys.readouterr()
    assert main(["status", "--dsn", "postgresql://127.0.0.1:1/x?connect_timeout=3"]) == 2
    assert "cannot connect to the database" in capsys.readouterr().err


def test_every_option_and_subcommand_says_what_it_does() -> None:
    def walk(parser: argparse.ArgumentParser, path: str) -> list[str]:
        missing = []
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                helps = {a.dest: a.help for a in action._choices_actions}
                for name, sub in action.choices.items():
                    if not helps.get(name):
                        missing.append(f"{path} {name}")
                    missing += walk(sub, f"{path} {name}")
            elif action.help is None and action.dest != "help":
                missing.append(f"{path} {'/'.join(action.option_strings) or action.dest}")
        return missing

    allowed = {"memex tenant create name", "memex tenant delete name", "memex search query",
               "memex context query"}  # fmt: skip
    assert set(walk(build_parser(), "memex")) - allowed == set()


def test_status_shows_each_tenant_space_and_text_index_and_json(
    db: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run_ingest(db, str(_notes(tmp_path)), "--tenant", "acme", "--create-tenant", "--no-embed")
    main(["tenant", "create", "empty", "--dsn", db])
    capsys.readouterr()
    assert main(["status", "--dsn", db]) == 0
    out = capsys.readouterr().out
    assert "Tenants (2; every tenant this role may list)" in out
    acme = next(line.split() for line in out.splitlines() if line.strip().startswith("acme "))
    assert acme[1:] == ["2", "0", "0", "0", "2", "2", "0"], "documents ... pending, failed"
    assert "all-MiniLM-L6-v2@384" in out and "Embedding now: 0 backend(s)" in out
    assert "2 chunks wait for embedding and nothing is embedding them" in out
    assert "loaded_models" not in out, "not the CLI's own throwaway backend"
    assert main(["status", "--dsn", db, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert {t["tenant"] for t in report["tenants"]} == {"acme", "empty"}
    assert {"english", "french"} <= {t["language"] for t in report["text_index"]}
    # An application role names its tenant and sees only that one.
    app_dsn = db + "?options=-c%20role%3Dmemex_app"
    assert main(["status", "--dsn", app_dsn, "--tenant", "acme", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert [t["tenant"] for t in report["tenants"]] == ["acme"]


def test_space_status_without_a_tenant_says_what_it_counts(db: str) -> None:
    notices: list[str] = []
    with psycopg.connect(db, autocommit=True) as conn:
        conn.add_notice_handler(lambda d: notices.append(d.message_primary or ""))
        conn.execute("select memex.create_tenant('t')")
        conn.execute("set role memex_app")
        conn.execute("select * from memex.space_status").fetchall()
    assert "no tenant is set: the counts cover no tenant" in notices


def test_tenant_list_create_and_delete_with_its_confirmation(
    db: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert main(["tenant", "create", "acme", "--dsn", db]) == 0
    assert main(["tenant", "create", "acme", "--dsn", db]) == 0
    out = capsys.readouterr().out
    assert "tenant 'acme' created" in out and "tenant 'acme' exists" in out
    assert main(["tenant", "list", "--dsn", db, "--json"]) == 0
    assert [t["tenant"] for t in json.loads(capsys.readouterr().out)] == ["acme"]
    assert main(["tenant", "delete", "acme", "--dsn", db]) == 1  # stdin is not a terminal
    assert "--confirm acme" in capsys.readouterr().err
    assert main(["tenant", "delete", "acme", "--confirm", "acmee", "--dsn", db]) == 1
    assert "confirm must repeat the tenant's name" in capsys.readouterr().err
    monkeypatch.setattr("sys.stdin.isatty", lambda: True)
    monkeypatch.setattr("builtins.input", lambda _prompt: "acme")
    assert main(["tenant", "delete", "acme", "--dsn", db]) == 0
    assert "tenant acme" in capsys.readouterr().err
    assert main(["tenant", "list", "--dsn", db]) == 0
    assert "no tenant visible" in capsys.readouterr().out


def test_an_interrupted_embed_says_how_far_it_got_and_how_to_resume(
    db: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with psycopg.connect(db, autocommit=True) as conn:
        conn.execute("select memex.create_tenant('t')")
        conn.execute("select memex.set_tenant('t', false)")
        conn.execute(
            "select count(memex.upsert_document('d' || i, 'Note number ' || i"
            " || ' about backups, restores and archives.')) from generate_series(1, 400) i"
        )

    def cancel_after_the_first_batches() -> None:
        with psycopg.connect(db, autocommit=True) as watcher:
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                row = watcher.execute("select count(*) from memex.embeddings").fetchone()
                if row and int(row[0]) >= 16:  # type: ignore[call-overload]
                    watcher.execute("select pg_cancel_backend(pid) from pg_stat_activity"
                                    " where query like 'call memex.embed_pending%'")  # fmt: skip
                    return
                time.sleep(0.05)

    canceller = threading.Thread(target=cancel_after_the_first_batches)
    canceller.start()
    code = main(["embed", "--dsn", db, "--batch-size", "8"])
    canceller.join()
    err = capsys.readouterr().err
    assert code == 130
    assert "interrupted after" in err and "chunks embedded (each batch is committed)" in err
    assert "run `memex embed` again to resume" in err
    assert main(["embed", "--dsn", db]) == 0, "a rerun finishes the job"
    assert "pending now: 0" in capsys.readouterr().out


def test_dev_dsn_with_a_role_connects_as_that_role() -> None:
    dsn = cluster("dev").dsn(role="memex_app")
    assert dsn.endswith("?options=-c%20role%3Dmemex_app")
