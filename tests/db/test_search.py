"""memex.rag_search on a small real corpus, embedded with the real model."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator

import psycopg
import pytest

from memex.devcluster import Cluster
from tests.conftest import TEMPLATE, create_database, drop_database
from tests.db.helpers import make_tenants

Conn = psycopg.Connection[tuple[object, ...]]

DOCUMENTS = [
    ("kb/security/keys.md", "To rotate signing keys, publish the new public key, wait for caches "
     "to expire, then retire the old key.", {"team": "security"}, "kb/security"),
    ("kb/ops/zyxquartz.md", "The zyxquartz flag enables verbose replication logging on standby "
     "servers.", {"team": "ops"}, "kb/ops"),
    ("kb/ops/weather.md", "A thunderstorm knocked out electricity across the neighbourhood last "
     "night.", {"team": "ops"}, "kb/ops"),
    ("kb/ops/backup-1.md", "Backups run nightly with pg_basebackup to the standby server.",
     {"team": "ops"}, "kb/ops"),
    ("kb/ops/backup-2.md", "Backups run nightly with pg_basebackup to the standby server!",
     {"team": "ops"}, "kb/ops"),
    ("kb/ops/backup-3.md", "Nightly backups run with pg_basebackup to the standby server.",
     {"team": "ops"}, "kb/ops"),
    ("kb/ops/restore.md", "Restoring last night's backup means replaying WAL up to the "
     "failure.", {"team": "ops"}, "kb/ops"),
    ("notes/cooking.md", "Knead the sourdough for ten minutes and let it rise overnight.",
     {"team": "home"}, "notes"),
]  # fmt: skip
ARTEFACT = {
    "version": 2, "slug": "incident-42", "level": 1, "title": "Incident 42", "date": "2025-03-02",
    "summaries": [{"index": 0, "summary": "The primary lost power; the standby was promoted.",
                   "tags": ["incident", "ha"]}],
}  # fmt: skip
ARTEFACT_L2 = {**ARTEFACT, "level": 2,
               "summaries": [{"index": 0, "summary": "A power incident and a failover.",
                              "tags": ["ha"]}]}  # fmt: skip


@pytest.fixture(scope="module")
def corpus(pg_cluster: Cluster, template_dsn: str) -> Iterator[tuple[str, dict[str, str]]]:
    name = f"s_{uuid.uuid4().hex[:12]}"
    dsn = create_database(pg_cluster, name, template=TEMPLATE)
    with psycopg.connect(dsn, autocommit=True) as conn:
        ids = make_tenants(conn, "acme", "big", "small")
        conn.execute("select memex.set_tenant(%s, false)", (ids["acme"],))
        for uri, text, meta, folder in DOCUMENTS:
            conn.execute("select memex.upsert_document(%s, %s, null, %s, %s)",
                         (uri, text, json.dumps(meta), folder))  # fmt: skip
        conn.execute("select memex.upsert_conversation('incident-42', 'Incident 42', '2025-03-02')")
        conn.execute("select memex.upsert_messages('incident-42', %s)", (json.dumps([
            {"role": "user", "content": "The primary database went down at noon."},
            {"role": "assistant", "content": "Promote the standby and page the on-call."},
        ]),))  # fmt: skip
        conn.execute(
            "select * from memex.upsert_summaries('incident-42', %s)", (json.dumps(ARTEFACT),)
        )
        conn.execute("select * from memex.upsert_summaries('incident-42', %s)",
                     (json.dumps(ARTEFACT_L2),))  # fmt: skip
        # A tenant with 99% of the chunks, and one with 1%: its searches still fill k.
        conn.execute("select memex.set_tenant(%s, false)", (ids["big"],))
        conn.execute("select count(memex.upsert_document('big/' || i, 'Ticket ' || i || "
                     "' about signing keys, backups and standby servers.')) "
                     "from generate_series(1, 594) as i")  # fmt: skip
        conn.execute("select memex.set_tenant(%s, false)", (ids["small"],))
        conn.execute("select count(memex.upsert_document('small/' || i, 'Small note ' || i || "
                     "' about rotating keys.')) from generate_series(1, 6) as i")  # fmt: skip
        conn.execute("reset memex.tenant_id")
        conn.execute("set role memex_admin")
        conn.execute("call memex.embed_pending()")
        conn.execute("reset role")
        conn.execute("analyze")
    yield dsn, ids
    drop_database(pg_cluster, name)


@pytest.fixture
def app(corpus: tuple[str, dict[str, str]]) -> Iterator[Conn]:
    dsn, ids = corpus
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("set role memex_app")
        conn.execute("select memex.set_tenant(%s, false)", (ids["acme"],))
        yield conn


def uris(conn: Conn, query: str, **kwargs: object) -> list[str]:
    args = ", ".join(f"{k} => %({k})s" for k in kwargs)
    rows = conn.execute(
        f"select coalesce(metadata ->> 'uri', metadata ->> 'conversation') from "
        f"memex.rag_search(%(q)s{', ' + args if args else ''})",
        {"q": query, **kwargs},
    ).fetchall()
    return [str(r[0]) for r in rows]


def test_text_finds_a_rare_keyword_vector_a_paraphrase_hybrid_both(app: Conn) -> None:
    assert uris(app, "zyxquartz", k=3, mode="text")[0] == "kb/ops/zyxquartz.md"
    paraphrase = "power cut caused by lightning"
    assert "kb/ops/weather.md" not in uris(app, paraphrase, k=20, mode="text"), "no word in common"
    assert uris(app, paraphrase, k=1, mode="vector") == ["kb/ops/weather.md"]
    both = uris(app, "zyxquartz power cut caused by lightning", k=5)
    assert "kb/ops/zyxquartz.md" in both and "kb/ops/weather.md" in both


def test_text_mode_reports_no_similarity_unless_min_similarity_asks(app: Conn) -> None:
    rows = app.execute(
        "select similarity, vector_rank, text_rank from memex.rag_search('signing keys', k => 3, "
        "mode => 'text')"
    ).fetchall()
    assert rows and all(r[0] is None and r[1] is None and r[2] is not None for r in rows)
    rows = app.execute(
        "select similarity from memex.rag_search('signing keys', k => 3, mode => 'text', "
        "min_similarity => -1)"
    ).fetchall()
    assert rows and all(r[0] is not None for r in rows)


def test_a_phrase_no_chunk_holds_finds_nothing(app: Conn) -> None:
    assert uris(app, '"keys signing rotate"', k=5, mode="text") == []
    assert uris(app, '"signing keys"', k=5, mode="text")[0] == "kb/security/keys.md"


def test_rows_carry_ranks_similarity_and_source_details(app: Conn) -> None:
    row = app.execute(
        "select source_kind, score, similarity, vector_rank, text_rank, metadata "
        "from memex.rag_search('rotate signing keys', k => 1)"
    ).fetchone()
    assert row is not None
    kind, score, similarity, vrank, trank, meta = row
    assert kind == "document" and vrank == 1 and trank == 1
    # convex fusion: similarity + BM25 / the best BM25 among the candidates (this row's)
    assert abs(float(score) - (float(similarity) + 1.0)) < 1e-9  # type: ignore[arg-type]
    assert 0.5 < float(similarity) <= 1  # type: ignore[arg-type]
    assert meta["uri"] == "kb/security/keys.md"  # type: ignore[index]
    assert meta["source_metadata"] == {"team": "security"}  # type: ignore[index]


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        ({"source_kind": ["summary"]}, {"incident-42"}),
        ({"source_kind": ["message"]}, {"incident-42"}),
        ({"conversation": "incident-42"}, {"incident-42"}),
        ({"levels": [2]}, {"incident-42"}),
        ({"topics_any": ["incident"]}, {"incident-42"}),
        ({"document_uri_prefix": "kb/security/"}, {"kb/security/keys.md"}),
        ({"folder": "notes"}, {"notes/cooking.md"}),
        ({"metadata": {"team": "security"}}, {"kb/security/keys.md"}),
        ({"created_before": "2025-04-01"}, {"incident-42"}),
    ],
)
def test_each_filter_narrows(app: Conn, filters: dict[str, object], expected: set[str]) -> None:
    found = uris(app, "power failure and keys", k=20, mode="vector", filters=json.dumps(filters))
    assert found and set(found) == expected


def test_levels_filter_keeps_only_that_level(app: Conn) -> None:
    rows = app.execute(
        "select metadata ->> 'level' from memex.rag_search('power', k => 10, mode => 'vector', "
        "filters => '{\"levels\": [2]}')"
    ).fetchall()
    assert rows == [("2",)]


def test_a_tenant_with_one_percent_of_the_chunks_still_gets_k_results(
    corpus: tuple[str, dict[str, str]],
) -> None:
    dsn, ids = corpus
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("set role memex_app")
        conn.execute("select memex.set_tenant(%s, false)", (ids["small"],))
        got = uris(conn, "signing keys backups standby", k=5, mode="vector")
    assert len(got) == 5 and all(u.startswith("small/") for u in got)


def test_diversity_moves_near_duplicates_down(app: Conn) -> None:
    plain = uris(app, "nightly backups with pg_basebackup", k=4, mode="vector")
    diverse = uris(app, "nightly backups with pg_basebackup", k=4, mode="vector", diversity=0.8)
    assert sum(u.startswith("kb/ops/backup-") for u in plain[:3]) == 3
    assert sum(u.startswith("kb/ops/backup-") for u in diverse[:3]) < 3
    assert diverse[0] == plain[0]


def test_min_similarity_drops_weak_rows(app: Conn) -> None:
    rows = app.execute(
        "select similarity from memex.rag_search('rotate signing keys', k => 20, "
        "mode => 'vector', min_similarity => 0.5)"
    ).fetchall()
    assert rows and all(float(r[0]) >= 0.5 for r in rows)  # type: ignore[arg-type]


def test_query_embedding_overload(app: Conn) -> None:
    rows = app.execute(
        "select metadata ->> 'uri' from "
        "memex.rag_search(memex.embed('rotate signing keys'), k => 1)"
    ).fetchall()
    assert rows == [("kb/security/keys.md",)]


def test_vector_mode_uses_the_spaces_hnsw_index(corpus: tuple[str, dict[str, str]]) -> None:
    dsn, ids = corpus
    plans: list[str] = []
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.add_notice_handler(lambda d: plans.append(d.message_primary or ""))
        conn.execute("load 'auto_explain'")
        conn.execute("set auto_explain.log_min_duration = 0")
        conn.execute("set auto_explain.log_nested_statements = on")
        conn.execute("set auto_explain.log_level = notice")
        # At 620 rows an exact scan is cheaper and the planner rightly takes it (for a small
        # tenant too: its own rows, sorted, are exact). With the tenant that owns most rows and
        # scans-then-sort priced out, the plan shows the statement matches the partial index.
        conn.execute("set enable_seqscan = off")
        conn.execute("set enable_sort = off")
        conn.execute("select memex.set_tenant(%s, false)", (ids["big"],))
        conn.execute("select * from memex.rag_search('keys', k => 3, mode => 'vector')")
    assert any("Index Scan using embeddings_space_1_hnsw" in p for p in plans), plans


@pytest.mark.parametrize(
    ("call", "sqlstate", "message"),
    [
        ("memex.rag_search('')", "22023", "query is empty"),
        ("memex.rag_search('   ')", "22023", "query is empty"),
        ("memex.rag_search('x', k => 0)", "22023", "k must be between 1 and 1000"),
        ("memex.rag_search('x', k => 1001)", "22023", "k must be between 1 and 1000"),
        ("memex.rag_search(repeat('keys ', 20000))", "54000", "the limit is 32768"),
        ("memex.rag_search('x', fusion => 'max')", "22023", "unknown fusion"),
        ("memex.rag_search('x', max_per_document => 0)", "22023", "max_per_document"),
        ("memex.rag_search('x', k => 101, diversity => 0.5)", "22023", "k <= 100"),
        ("memex.rag_search('x', bm25_k1 => -1)", "22023", "bm25_k1"),
        ("memex.rag_search('x', bm25_b => 1.5)", "22023", "bm25_b"),
        ("memex.rag_search('x', text_weight => -1)", "22023", "must be >= 0"),
        ("memex.rag_search('x', rerank => 'public.nope(text, jsonb)')", "42883", "does not exist"),
        ("memex.rag_search('x', rerank => 'pg_catalog.lower(text)')", "42804", "wrong signature"),
        ("memex.rag_search('x', rerank_depth => 0)", "22023", "rerank_depth"),
        ("memex.rag_search('x', mode => 'fuzzy')", "22023", "unknown search mode"),
        ("memex.rag_search('x', filters => '{\"colour\": 1}')", "22023", "unknown filter key"),
        ("memex.rag_search('x', filters => '{\"levels\": 2}')", "22023", "must be a JSON array"),
        ("memex.rag_search('x', filters => '{\"levels\": [\"a\"]}')", "22023", "array of integers"),
        ("memex.rag_search('x', filters => '[]')", "22023", "must be a JSON object"),
        ("memex.rag_search('x', diversity => 2)", "22023", "between 0 and 1"),
        ("memex.rag_search('[1,2,3]'::vector)", "22000", "has 3 dimensions"),
        ("memex.rag_search(memex.embed('x'), mode => 'hybrid')", "22023", "only be searched"),
        ("memex.rag_search('x', space => 'nope')", "22023", "unknown embedding space"),
    ],
)  # fmt: skip
def test_bad_input_is_named(app: Conn, call: str, sqlstate: str, message: str) -> None:
    with pytest.raises(psycopg.Error, match=message) as info:
        app.execute(f"select * from {call}")
    assert info.value.sqlstate == sqlstate


def test_no_tenant_means_no_rows_and_a_notice_that_says_why(app: Conn) -> None:
    notices: list[str] = []
    app.add_notice_handler(lambda d: notices.append(d.message_primary or ""))
    app.execute("reset memex.tenant_id")
    assert uris(app, "keys") == []
    assert notices == ["no tenant is set: the search returns no rows"]
    assert app.execute("select memex.compose_context('keys')").fetchone() == ("",)


def test_a_query_of_100_kb_is_refused_before_any_work(app: Conn) -> None:
    with pytest.raises(psycopg.Error, match="the limit is 32768") as info:
        app.execute("select * from memex.rag_search(%s)", ("lorem ipsum " * 9000,))
    assert info.value.sqlstate == "54000"


def test_max_per_document_caps_each_source(app: Conn) -> None:
    long_text = " ".join(
        f"Paragraph {i} explains the quorum failover procedure." for i in range(60)
    )
    app.execute("set memex.embed_on_write = on")
    app.execute("select memex.upsert_document('kb/ops/failover.md', %s, 'Failover')", (long_text,))
    try:
        plain = uris(app, "quorum failover procedure", k=4)
        capped = uris(app, "quorum failover procedure", k=4, max_per_document=1)
        assert plain.count("kb/ops/failover.md") >= 2
        assert capped.count("kb/ops/failover.md") == 1 and len(capped) == 4
        diverse = uris(app, "quorum failover procedure", k=4, diversity=0.9)
        assert diverse.count("kb/ops/failover.md") == 1, "diversity counts documents"
    finally:
        app.execute("select memex.delete_document('kb/ops/failover.md')")


def test_a_reranker_reorders_the_pool(app: Conn, corpus: tuple[str, dict[str, str]]) -> None:
    dsn, _ids = corpus
    with psycopg.connect(dsn, autocommit=True) as owner:  # a site's own reranker
        owner.execute(
            "create or replace function public.shortest_first(query text, candidates jsonb) "
            "returns table (chunk_id uuid, score double precision) language sql as $$ "
            "select (c ->> 'chunk_id')::uuid, -length(c ->> 'content')::double precision "
            "from jsonb_array_elements(candidates) as c "
            "where c ->> 'content' not like '%%sourdough%%' $$"
        )
        owner.execute("grant execute on function public.shortest_first(text, jsonb) to memex_app")
    rows = app.execute(
        "select content, score, vector_rank, text_rank from memex.rag_search('backups', k => 5, "
        "rerank => 'public.shortest_first(text, jsonb)', rerank_depth => 20)"
    ).fetchall()
    lengths = [len(str(r[0])) for r in rows]
    assert len(rows) == 5 and lengths == sorted(lengths)
    assert all(float(r[1]) == -len(str(r[0])) for r in rows)  # type: ignore[arg-type]
    assert not any("sourdough" in str(r[0]) for r in rows), "what the reranker drops is gone"


def test_compose_context_cites_sources_within_its_budget(app: Conn) -> None:
    for budget in (40, 120, 2000):
        row = app.execute(
            "select memex.compose_context('rotate signing keys after a power failure', %s)",
            (budget,),
        ).fetchone()
        assert row is not None
        context = str(row[0])
        tokens = app.execute("select memex.count_tokens(%s)", (context,)).fetchone()
        assert tokens is not None and int(tokens[0]) <= budget  # type: ignore[call-overload]
        if budget >= 120:
            assert context.startswith("[1] ")
            assert "kb/security/keys.md" in context
    big = app.execute("select memex.compose_context('backups', 2000, k => 20)").fetchone()
    assert big is not None
    numbers = [line.split("]")[0] for line in str(big[0]).splitlines() if line.startswith("[")]
    assert numbers == [f"[{i}" for i in range(1, len(numbers) + 1)], "citations numbered 1..n"


def test_compose_context_merges_neighbouring_chunks_of_a_source(app: Conn) -> None:
    long_text = " ".join(
        f"Paragraph {i} explains the quorum failover procedure." for i in range(60)
    )
    app.execute("set memex.embed_on_write = on")
    app.execute("select memex.upsert_document('kb/ops/failover.md', %s, 'Failover')", (long_text,))
    chunks = app.execute(
        "select count(*) from memex.chunks c join memex.documents d on d.id = c.document_id"
        " and d.tenant_id = c.tenant_id"
        " where d.uri = 'kb/ops/failover.md'"
    ).fetchone()
    assert chunks is not None and int(chunks[0]) >= 2  # type: ignore[call-overload]
    row = app.execute(
        "select memex.compose_context('quorum failover procedure', 4000, k => 20,"
        ' filters => \'{"document_uri_prefix": "kb/ops/failover"}\')'
    ).fetchone()
    assert row is not None
    context = str(row[0])
    citations = [line for line in context.splitlines() if line.startswith("[")]
    assert citations == ["[1] document: Failover, kb/ops/failover.md"], "one block per source"
    body = context.split("\n", 1)[1]
    assert not body.startswith("Failover"), "the title is in the citation, not repeated"
    for i in range(60):  # the chunks' overlap is written once
        assert body.count(f"Paragraph {i} explains") <= 1, i
    assert "Paragraph 0 explains" in body and "Paragraph 59 explains" in body
    notices: list[str] = []
    app.add_notice_handler(lambda d: notices.append(d.message_primary or ""))
    assert app.execute("select memex.compose_context('quorum failover', 5)").fetchone() == ("",)
    assert notices == ["compose_context: no passage fits in 5 tokens"]
    app.execute("select memex.delete_document('kb/ops/failover.md')")


def test_joining_chunks_of_repetitive_text_costs_what_normal_text_costs(app: Conn) -> None:
    """compose_context joins a source's neighbouring chunks, writing their overlap once. The
    join searched all of the text composed so far for the next chunk's first characters: on
    repeated words every position matched (5.8 s for one join onto 141 KB, measured; a
    composition of such a document ran past a 15 s statement timeout). Compared with normal
    text of the same size in the same run: a generous bound, no absolute time."""
    repetitive = "alpha beta " * 12_800  # 141 KB
    normal = " ".join(f"Line {i} of the capacity plan names host db-{i % 97} and rack {i % 13}."
                      for i in range(2_300))[: len(repetitive)]  # fmt: skip
    timings = {}
    for name, text in (("normal", normal), ("repetitive", repetitive)):
        following = text[-200:] + " and then the next chunk goes on."
        started = time.perf_counter()
        row = app.execute("select memex._join_chunks(%s, %s)", (text, following)).fetchone()
        timings[name] = time.perf_counter() - started
        assert row == (text + " and then the next chunk goes on.",), "the overlap written once"
    assert timings["repetitive"] < 10 * timings["normal"] + 0.5, timings


def test_memex_search_prints_a_table_and_json(
    corpus: tuple[str, dict[str, str]], capsys: pytest.CaptureFixture[str]
) -> None:
    from memex.cli import main

    dsn, _ids = corpus
    assert main(["search", "zyxquartz", "--tenant", "acme", "--dsn", dsn, "--k", "2"]) == 0
    listing = capsys.readouterr().out
    first = listing.splitlines()[:2]
    assert first[0] == " 1. document: kb/ops/zyxquartz.md", "no title: the uri alone"
    assert first[1].split()[:1] == ["score"] and "vec" in first[1] and "txt" in first[1]
    assert main(["search", "zyxquartz", "--tenant", "acme", "--dsn", dsn, "--json",
                 "--mode", "text"]) == 0  # fmt: skip
    rows = json.loads(capsys.readouterr().out)
    assert rows[0]["metadata"]["uri"] == "kb/ops/zyxquartz.md" and rows[0]["text_rank"] == 1


def test_searches_wait_while_memex_is_being_distributed(corpus: tuple[str, dict[str, str]]) -> None:
    """While `memex citus distribute --online` runs (its table of saved keys exists), a search
    is refused with 55000 and says why (docs/scale.md, "Distributing a database in use")."""
    dsn, ids = corpus
    with psycopg.connect(dsn, autocommit=True) as owner:
        owner.execute("create table memex.citus_saved_foreign_keys (relation text)")
        try:
            with psycopg.connect(dsn, autocommit=True) as conn:
                conn.execute("set role memex_app")
                conn.execute("select memex.set_tenant(%s, false)", (ids["acme"],))
                with pytest.raises(psycopg.errors.ObjectNotInPrerequisiteState,
                                   match="being distributed"):  # fmt: skip
                    conn.execute("select * from memex.rag_search('backups')")
                with pytest.raises(psycopg.errors.ObjectNotInPrerequisiteState):
                    conn.execute("select memex.compose_context('backups', 300)")
        finally:
            owner.execute("drop table memex.citus_saved_foreign_keys")
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("set role memex_app")
        conn.execute("select memex.set_tenant(%s, false)", (ids["acme"],))
        assert uris(conn, "backups")
