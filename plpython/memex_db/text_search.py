"""The text leg of rag_search: BM25 top-n over the current tenant's text index.

For each text-search language the tenant's chunks use: the query is analysed with that
language's configuration (stemming, stop words), the blocks of its lexemes are read from
memex.text_postings (RLS applies: only the tenant's own rows), every chunk version holding one
of them is scored with numpy (memex_db.bm25), and the best are checked against memex.chunks in
score order, in growing batches, until n are found that still exist (an updated or deleted
chunk's old postings stay in their blocks until a merge), pass the search filters and honour
the query's phrases and exclusions. Only those n chunk rows are ever read.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from memex_db import bm25
from memex_db.plpy_types import GD, Plpy, cached_plan

FIRST_BATCH = 64
# Query limits: beyond them a query is not a question any more (documented in docs/search.md).
MAX_TERMS = 1024

# The tenant's text-search languages, by a skip scan of memex.chunks_tenant_language.
_LANGUAGES = """
with recursive l (lang) as (
    (select c.language from memex.chunks as c where c.tenant_id = $1 order by c.language limit 1)
    union all
    select (select c.language from memex.chunks as c
             where c.tenant_id = $1 and c.language operator(pg_catalog.>) l.lang
             order by c.language limit 1)
      from l where l.lang is not null
)
select l.lang::text as lang from l where l.lang is not null
"""
_ANALYSE = """
select
    (select coalesce(pg_catalog.json_object_agg(
                u.lexeme, coalesce(pg_catalog.array_length(u.positions, 1), 1)), '{}')
       from pg_catalog.unnest(pg_catalog.to_tsvector($1::regconfig, $2)) as u)::text as terms
    , array(select pg_catalog.phraseto_tsquery($1::regconfig, p)::text
              from pg_catalog.unnest($3::text[]) as p) as phrases
    , array(select pg_catalog.phraseto_tsquery($1::regconfig, p)::text
              from pg_catalog.unnest($4::text[]) as p) as excluded
"""
# The blocks of the query's lexemes (and of '', the totals), the recent segments' entries of
# those lexemes shaped as one more block each (last in order), and the segments' totals.
_BLOCKS = """
select p.lexeme, p.block, p.postings, p.df, p.tokens, p.docids, p.tfs, p.lengths
  from pg_catalog.unnest($3::text[]) as l (lexeme)
 cross join lateral (  -- lexeme by lexeme through the primary key, whatever the statistics
     select p.* from memex.text_postings as p
      where p.tenant_id = $1 and p.language = $2 and p.lexeme = l.lexeme) as p
union all
select e.lexeme, 9223372036854775807, (pg_catalog.count(*) filter (where e.delta > 0))::integer
     , sum(e.delta)::integer, 0
     , coalesce(pg_catalog.string_agg(pg_catalog.int8send(e.docid), ''::bytea)
                filter (where e.delta > 0), ''::bytea)
     , coalesce(pg_catalog.string_agg(pg_catalog.int2send(e.tf), ''::bytea)
                filter (where e.delta > 0), ''::bytea)
     , coalesce(pg_catalog.string_agg(pg_catalog.int2send(e.len), ''::bytea)
                filter (where e.delta > 0), ''::bytea)
  from memex.text_segments as s
 cross join lateral unnest(s.lexemes, s.docids, s.tfs, s.lengths, s.deltas)
       as e (lexeme, docid, tf, len, delta)
 where s.tenant_id = $1 and s.language = $2 and e.lexeme = any($3)
 group by e.lexeme
union all
select '', 9223372036854775807, 0, sum(s.chunks)::integer, sum(s.tokens)::bigint, '', '', ''
  from memex.text_segments as s
 where s.tenant_id = $1 and s.language = $2
having pg_catalog.count(*) > 0
"""
_CHECK = """
select c.text_doc, c.id::text as id
  from memex.chunks as c
 where c.tenant_id = $1 and c.text_doc = any($2) and c.language = $4::regconfig
   and ($5::text is null or c.tsv @@ $5::tsquery) {filters}
"""
_ALSO = """
select c.id::text as id, c.text_doc, c.language::text as language
  from memex.chunks as c where c.tenant_id = $1 and c.id = any($2::uuid[])
"""


def _must(phrases: Sequence[str], excluded: Sequence[str]) -> str | None:
    """The tsquery every result must match: all phrases, none of the exclusions."""
    parts = [f"({p})" for p in phrases if p] + [f"!({e})" for e in excluded if e]
    return " & ".join(parts) if parts else None


def _filters_sql(plpy: Plpy, gd: GD, filters: str | None) -> str:
    plan = cached_plan(plpy, gd, "text_filters", "select memex._search_filters($1) as f", ["jsonb"])
    return str(plpy.execute(plan, [filters or "{}"])[0]["f"])


def candidates(
    plpy: Plpy,
    gd: GD,
    query: str | None,
    filters: str | None,
    n: int | None,
    k1: float | None,
    b: float | None,
    also: list[str] | None,
) -> list[tuple[str, float, int | None]]:
    """(chunk id, BM25 score, rank) of the best n chunks for the query, then, with a null rank,
    the score of each chunk in `also` that is not among them (0 when it holds no query term)."""
    params = bm25.Params.checked(k1, b)
    tenant = plpy.execute("select memex.current_tenant()::text as t")[0]["t"]
    if tenant is None or not query or not n or n < 1:
        return []
    parsed = bm25.parse_query(query)
    where = _filters_sql(plpy, gd, filters)
    check = cached_plan(plpy, gd, "text_check:" + where, _CHECK.format(filters=where),
                        ["uuid", "bigint[]", "jsonb", "text", "text"])  # fmt: skip
    hits: list[tuple[float, int, str]] = []
    scored: dict[str, tuple[Any, Any]] = {}
    searched = False
    languages = plpy.execute(
        cached_plan(plpy, gd, "text_languages", _LANGUAGES, ["uuid"]), [tenant]
    )
    for row in languages:
        language = row["lang"]
        analysis = plpy.execute(
            cached_plan(plpy, gd, "text_analyse", _ANALYSE, ["text", "text", "text[]", "text[]"]),
            [language, parsed.words, list(parsed.phrases), list(parsed.excluded)],
        )[0]
        terms: dict[str, int] = json.loads(analysis["terms"])
        if not terms:
            continue
        searched = True
        if len(terms) > MAX_TERMS:  # the rarest words matter most; keep a bounded set
            terms = dict(sorted(terms.items(), key=lambda t: (-t[1], t[0]))[:MAX_TERMS])
        blocks = plpy.execute(
            cached_plan(plpy, gd, "text_blocks", _BLOCKS, ["uuid", "text", "text[]"]),
            [tenant, language, [*terms, ""]],
        )
        index = bm25.decode(blocks)
        docids, scores = bm25.score(terms, index, params)
        scored[language] = (docids, scores)
        must = _must(analysis["phrases"] or [], analysis["excluded"] or [])
        hits.extend(_live(plpy, check, tenant, filters, language, must, docids, scores, n))
    if not searched and query.strip():
        plpy.notice(
            "text search: the query has no word to search for (only stop words or exclusions)",
            detail=f"query: {query[:200]!r}",
        )
    hits.sort(key=lambda h: (-h[0], h[1]))
    result: list[tuple[str, float, int | None]] = [
        (chunk, score, rank) for rank, (score, _doc, chunk) in enumerate(hits[:n], 1)
    ]
    if also:
        result.extend(_also_scores(plpy, gd, tenant, also, {r[0] for r in result}, scored))
    return result


def _live(
    plpy: Plpy,
    check: Any,
    tenant: str,
    filters: str | None,
    language: str,
    must: str | None,
    docids: Any,
    scores: Any,
    n: int,
) -> list[tuple[float, int, str]]:
    """The best n chunk versions that still exist and pass the filters and the query's must
    clause, read in score order in batches of 64, 256, 1024...: only those rows are read."""
    found: list[tuple[float, int, str]] = []
    position, batch = 0, max(2 * n, FIRST_BATCH)
    order = bm25.ranked(docids, scores, batch)
    while len(found) < n:
        if position >= len(order):
            if len(order) >= len(docids):
                break
            order = bm25.ranked(docids, scores, len(docids))  # rarely: most were filtered out
        wanted = [int(docids[i]) for i in order[position : position + batch]]
        rows = plpy.execute(check, [tenant, wanted, filters or "{}", language, must])
        live = {int(r["text_doc"]): str(r["id"]) for r in rows}
        for i in order[position : position + batch]:
            chunk = live.get(int(docids[i]))
            if chunk is not None:
                found.append((float(scores[i]), int(docids[i]), chunk))
        position += batch
        batch *= 4
    return found[:n]


def _also_scores(
    plpy: Plpy,
    gd: GD,
    tenant: str,
    also: list[str],
    known: set[str],
    scored: dict[str, tuple[Any, Any]],
) -> list[tuple[str, float, int | None]]:
    wanted = [c for c in also if c is not None and c not in known]
    if not wanted:
        return []
    rows = plpy.execute(
        cached_plan(plpy, gd, "text_also", _ALSO, ["uuid", "uuid[]"]), [tenant, wanted]
    )
    out: list[tuple[str, float, int | None]] = []
    for row in rows:
        docids, scores = scored.get(row["language"], (None, None))
        value = bm25.lookup(docids, scores, int(row["text_doc"])) if docids is not None else 0.0
        out.append((str(row["id"]), value, None))
    return out
