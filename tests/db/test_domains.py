"""Chunk domains with two real models: MiniLM for text, wordllama as the code space. `memex
ingest` of a mixed repository (markdown with a code fence, a .py file, prose) marks the right
chunks code; the code space embeds only those; rag_search searches a domain's space and fuses
both by default; a domain with no active space falls back to the text space with a NOTICE."""

from __future__ import annotations

import json
from pathlib import Path

import psycopg
import pytest

from memex.cli import main
from tests.db.helpers import admin, as_role

Conn = psycopg.Connection[tuple[object, ...]]

README = """# Keyring service

The keyring service keeps the signing keys of every tenant and rotates them each quarter.

```python
keyring = Keyring.open("/etc/keys")
keyring.rotate_signing_keys(grace_period_days=7)
```

After a rotation, the previous key stays valid during the grace period.
"""

ROTATE_PY = '''"""Signing key rotation."""


def rotate_signing_keys(keyring, grace_period_days=7):
    """Make a new signing key current; keep the old one for the grace period."""
    new_key = keyring.generate(algorithm="ed25519")
    keyring.retire(keyring.current, after_days=grace_period_days)
    keyring.current = new_key
    return new_key
'''

GUIDE = """# Holidays

The office is closed between Christmas and New Year. Book your days off two weeks ahead
and tell your manager; the calendar of the team shows who is away.
"""

QUERY = "rotate_signing_keys(keyring, grace_period_days)"


@pytest.fixture
def repo(conn: Conn, db: str, tmp_path: Path) -> str:
    root = tmp_path / "repo"
    (root / "src").mkdir(parents=True)
    (root / "docs").mkdir()
    (root / "README.md").write_text(README)
    (root / "src" / "rotate.py").write_text(ROTATE_PY)
    (root / "docs" / "holidays.md").write_text(GUIDE)
    code = main(["ingest", "--dsn", db, str(root), "--root", str(root), "--tenant", "acme",
                 "--create-tenant"])  # fmt: skip
    assert code == 0
    return db


def _chunks(conn: Conn) -> list[tuple[str, str, str]]:
    rows = conn.execute(
        "select d.uri, c.domain, c.content from memex.chunks c"
        " join memex.documents d on d.id = c.document_id and d.tenant_id = c.tenant_id"
        " order by d.uri, c.ord"
    ).fetchall()
    return [(str(u), str(dom), str(text)) for u, dom, text in rows]


def _search(conn: Conn, **args: str) -> list[tuple[str, str, dict[str, object]]]:
    named = "".join(f", {k} => %({k})s" for k in args)
    rows = conn.execute(
        "select content, metadata ->> 'domain', metadata"
        f" from memex.rag_search(%(q)s, k => 5{named})",
        {"q": QUERY, **args},
    ).fetchall()
    return [(str(c), str(d), dict(m)) for c, d, m in rows]  # type: ignore[call-overload]


def test_ingest_marks_fences_and_source_files_as_code(conn: Conn, repo: str) -> None:
    chunks = _chunks(conn)
    domains = {(uri, dom) for uri, dom, _ in chunks}
    assert ("src/rotate.py", "code") in domains and ("src/rotate.py", "text") not in domains
    assert {dom for uri, dom, _ in chunks if uri == "docs/holidays.md"} == {"text"}
    readme = [(dom, text) for uri, dom, text in chunks if uri == "README.md"]
    assert [dom for dom, _ in readme] == ["text", "code", "text"]  # the fence is a chunk
    assert readme[1][1].startswith("```python") and "rotate_signing_keys" in readme[1][1]
    # metadata overrides the rule; a bad value is refused and writes nothing
    as_role(conn, "memex_admin")
    conn.execute("select memex.set_tenant('acme', false)")
    conn.execute(
        "select memex.upsert_document('src/rotate.py', %s, metadata => '{\"domain\": \"text\"}')",
        (ROTATE_PY,),
    )
    assert {d for u, d, _ in _chunks(conn) if u == "src/rotate.py"} == {"text"}
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="metadata domain"):
        conn.execute("select memex.upsert_document('x.md', 'x', metadata => %s)",
                     ('{"domain": "art"}',))  # fmt: skip
    written = conn.execute("select count(*) from memex.documents where uri = 'x.md'").fetchone()
    assert written == (0,)


def test_a_code_space_embeds_code_chunks_and_search_fuses_the_domains(
    conn: Conn, repo: str
) -> None:
    with admin(repo) as run:
        run.execute("select memex.create_space('code', 'wordllama', domain => 'code')")
        run.execute("call memex.embed_pending()")
        run.execute("call memex.embed_pending('code')")
        run.execute("select memex.activate_space('code')")
        status = dict(
            (str(n), (int(e), int(p)))  # type: ignore[call-overload]
            for n, e, p in run.execute("select name, embedded, pending from memex.space_status")
        )
    code_chunks = sum(1 for _, dom, _ in _chunks(conn) if dom == "code")
    all_chunks = len(_chunks(conn))
    assert status["code"] == (code_chunks, 0) and code_chunks == 2
    assert status["all-MiniLM-L6-v2@384"] == (all_chunks, 0)

    as_role(conn, "memex_app")
    conn.execute("select memex.set_tenant('acme', false)")
    # domain code: the code space's vectors (wordllama, 256 dimensions), code chunks only
    hits = _search(conn, domain="code", mode="vector")
    assert hits and {dom for _, dom, _ in hits} == {"code"}
    row = conn.execute(
        "select r.similarity, 1 - (e.embedding <=> memex.embed(%(q)s, 'code'))"
        " from memex.rag_search(%(q)s, k => 1, mode => 'vector', domain => 'code') r"
        " join memex.embeddings e on e.chunk_id = r.chunk_id"
        " join memex.spaces s on s.id = e.space_id and s.name = 'code'",
        {"q": QUERY},
    ).fetchone()
    assert row is not None and abs(float(row[0]) - float(row[1])) < 1e-6  # type: ignore[arg-type]
    # domain text: prose only, in the text space
    assert {dom for _, dom, _ in _search(conn, domain="text")} == {"text"}
    # all (the default): both spaces' searches fused; a code chunk carries its code-space rank
    fused = _search(conn)
    assert {dom for _, dom, _ in fused} == {"text", "code"}
    assert any("code_space_rank" in meta for _, _, meta in fused)
    assert "rotate_signing_keys" in fused[0][0]


def test_a_domain_without_an_active_space_falls_back_with_a_notice(conn: Conn, repo: str) -> None:
    with admin(repo) as run:
        run.execute("call memex.embed_pending()")
    as_role(conn, "memex_app")
    conn.execute("select memex.set_tenant('acme', false)")
    notices: list[str] = []
    conn.add_notice_handler(lambda d: notices.append(d.message_primary or ""))
    hits = _search(conn, domain="code")
    assert hits and {dom for _, dom, _ in hits} == {"code"}
    assert any("no active space for domain code" in n for n in notices), json.dumps(notices)
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="unknown domain"):
        _search(conn, domain="pictures")
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="filter domain"):
        conn.execute("select * from memex.rag_search('x', filters => '{\"domain\": \"art\"}')")


def test_ingest_and_the_database_share_one_list_of_code_files(conn: Conn) -> None:
    from memex.code_files import CODE_FILES
    from memex.ingest.sources import SUPPORTED_SUFFIXES

    uris = [f"src/file{suffix.upper() if i % 2 else suffix}" for i, suffix in
            enumerate(CODE_FILES)]  # fmt: skip
    domains = conn.execute("select memex._document_domain(u, '{}') from unnest(%s::text[]) as u",
                           (uris,)).fetchall()  # fmt: skip
    assert {d[0] for d in domains} == {"code"}
    assert set(CODE_FILES) <= SUPPORTED_SUFFIXES
    for prose in ("notes/a.md", "a.txt", "page.html", "src/pyfile", "a.py.md"):
        assert conn.execute("select memex._document_domain(%s, '{}')", (prose,)).fetchone() == (
            None,)  # fmt: skip
