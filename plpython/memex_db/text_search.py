"""The text leg of rag_search: BM25 top-n over the current tenant's text index.

For each text-search language the tenant's chunks use: the query is analysed with that
language's configuration (stemming, stop words); then for each of the language's two index keys
(its own, and its summaries' `<language>:summary`, memex._text_key: summaries have statistics
of their own) the blocks of its lexemes are read from
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

import numpy as np

from memex_db import bm25
from memex_db.plpy_types import GD, Plpy, cached_plan

# The first batch of candidates checked against memex.chunks is n plus this margin (most
# postings are live); later batches grow fourfold.
FIRST_MARGIN = 16
# With phrases to match, the chunks holding them are read first through the GIN index on
# chunks.tsv when they are at most this many; beyond, candidates are checked in score order.
PHRASE_ROWS = 5000
# Query limits: beyond them a query is not a question any more (documented in docs/search.md).
MAX_TERMS = 1024
# The postings a query reads across its words (a block entry: one chunk holding one word):
# words are taken rarest first, and the most common ones past this are left out, with a NOTICE.
# They are the words that move a BM25 ranking least (the lowest idf), and reading them all
# was unbounded: 20M postings took 1.35 GB. About 70 bytes a posting at the peak.
MAX_POSTINGS = 2_000_000

# One statement for what a search needs before the index: the tenant's text-search languages
# (a skip scan of memex.chunks_tenant_language) and, for each, the query's lexemes with their
# counts, its phrases and exclusions as tsqueries, and the key of its summaries when the index
# holds any (else null). One row with null language when the tenant has no chunk.
_PROLOGUE = """
with recursive l (lang) as (
    (select c.language from memex.chunks as c
      where c.tenant_id = $4 order by c.language limit 1)
    union all
    select (select c.language from memex.chunks as c
             where c.tenant_id = $4 and c.language operator(pg_catalog.>) l.lang
             order by c.language limit 1)
      from l where l.lang is not null
)
select l.lang::text as lang
    , (select coalesce(pg_catalog.json_object_agg(
                u.lexeme, coalesce(pg_catalog.array_length(u.positions, 1), 1)), '{}')
         from pg_catalog.unnest(pg_catalog.to_tsvector(l.lang::regconfig, $1)) as u)::text as terms
    , array(select pg_catalog.phraseto_tsquery(l.lang::regconfig, p)::text
              from pg_catalog.unnest($2::text[]) as p) as phrases
    , array(select pg_catalog.phraseto_tsquery(l.lang::regconfig, p)::text
              from pg_catalog.unnest($3::text[]) as p) as excluded
    , (select k.key
         from (select memex._text_key(l.lang::text, 'summary') as key) as k
        where exists (select 1 from memex.text_postings as p
                       where p.tenant_id = $4 and p.language = k.key and p.lexeme = '')
           or exists (select 1 from memex.text_segments as s
                       where s.tenant_id = $4 and s.language = k.key)) as summaries
  from (values (1)) as one (x) left join l on l.lang is not null
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
# How many postings each of the query's lexemes has in the tenant's blocks (the recent
# segments, kept small by compaction, are not counted).
_SIZES = """
select l.lexeme, coalesce(s.postings, 0)::bigint as postings
  from pg_catalog.unnest($3::text[]) as l (lexeme)
 cross join lateral (
     select sum(p.postings) as postings from memex.text_postings as p
      where p.tenant_id = $1 and p.language = $2 and p.lexeme = l.lexeme) as s
"""
# Which candidates still exist and pass the filters, with their chunk ids: without filters
# nor phrases, an index-only scan of memex.chunks_text_doc. `c.language::text`: a no-op on
# the text column, and it still reads a regconfig column of a database not yet migrated (a
# new lib is installed before `memex install` runs migration 0013).
_CHECK = """
select c.text_doc, c.id::text as id
  from memex.chunks as c
 where c.tenant_id = $1 and c.text_doc = any($2) and c.language::text = $4 {must} {filters}
"""
_MUST = "and c.tsv @@ $5::tsquery"
# The chunks holding the query's phrases (and none of its exclusions), through the GIN index:
# summaries or the other kinds, as the index key ($7).
_PHRASED = """
select c.text_doc, c.id::text as id
  from memex.chunks as c
 where c.tenant_id = $1 and c.language::text = $4 and c.tsv @@ {must}::tsquery {filters}
   and (c.source_kind = 'summary') = $7
 limit $6
"""


def _affordable(
    plpy: Plpy, gd: GD, tenant: str, language: str, terms: dict[str, int]
) -> dict[str, int]:
    """The query's terms whose postings are read: rarest first, at most MAX_TERMS of them and
    MAX_POSTINGS postings in all (the rarest always); a NOTICE names the words left out."""
    if len(terms) < 2:
        return terms
    rows = plpy.execute(cached_plan(plpy, gd, "text_sizes", _SIZES, ["uuid", "text", "text[]"]),
                        [tenant, language, list(terms)])  # fmt: skip
    sizes = {str(r["lexeme"]): int(r["postings"]) for r in rows}
    kept: dict[str, int] = {}
    total = 0
    for term in sorted(terms, key=lambda t: (sizes.get(t, 0), t)):
        if kept and (len(kept) >= MAX_TERMS or total + sizes.get(term, 0) > MAX_POSTINGS):
            break
        kept[term] = terms[term]
        total += sizes.get(term, 0)
    if len(kept) < len(terms):
        left_out = sorted((t for t in terms if t not in kept), key=lambda t: -sizes.get(t, 0))
        plpy.notice(
            f"text search: {len(left_out)} of the query's {len(terms)} words left out: they "
            f"are the most common in this tenant, and scoring them would read more than "
            f"{MAX_POSTINGS:,} postings",
            detail="left out: " + ", ".join(left_out[:20]) + (" ..." if len(left_out) > 20 else ""),
        )
    return kept


def _must(phrases: Sequence[str], excluded: Sequence[str]) -> str | None:
    """The tsquery every result must match: all phrases, none of the exclusions."""
    parts = [f"({p})" for p in phrases if p] + [f"!({e})" for e in excluded if e]
    return " & ".join(parts) if parts else None


def _check_plan(plpy: Plpy, gd: GD, where: str, must: bool) -> Any:
    sql = _CHECK.format(must=_MUST if must else "", filters=where)
    return cached_plan(plpy, gd, f"text_check:{must}:{where}", sql,
                       ["uuid", "bigint[]", "jsonb", "text", "text"])  # fmt: skip


def _on_citus(plpy: Plpy, gd: GD) -> bool:
    """Whether Citus is loaded in this backend (asked once)."""
    if "memex_on_citus" not in gd:
        row = plpy.execute(
            "select pg_catalog.current_setting('citus.propagate_set_commands', true) is not null"
            " as loaded"
        )
        gd["memex_on_citus"] = bool(row[0]["loaded"])
    return bool(gd["memex_on_citus"])


def candidates(
    plpy: Plpy,
    gd: GD,
    tenant: str | None,
    query: str | None,
    filters: str | None,
    where_filters: str | None,
    n: int | None,
    k1: float | None,
    b: float | None,
    vector_ids: list[str] | None,
    vector_docs: list[int] | None,
) -> list[tuple[str, float, int | None]]:
    """(chunk id, BM25 score, rank) of the tenant's best n chunks for the query, then, with a
    null rank, the score of each of the vector leg's candidates `vector_ids` (text versions
    `vector_docs`) that is not among them (0 when it holds no query term). `where_filters` is
    memex._search_filters(filters), compiled once by the caller."""
    params = bm25.Params.checked(k1, b)
    if not query or not n or n < 1 or tenant is None:
        return []
    if _on_citus(plpy, gd):
        # Citus cannot plan the generic plans this function forces on one node (its SET
        # clause, which also undoes this at the function's exit): custom ones there
        plpy.execute("select pg_catalog.set_config('plan_cache_mode', 'force_custom_plan', true)")
    parsed = bm25.parse_query(query)
    where = where_filters or ""
    languages = plpy.execute(
        cached_plan(plpy, gd, "text_prologue", _PROLOGUE, ["text", "text[]", "text[]", "uuid"]),
        [parsed.words, list(parsed.phrases), list(parsed.excluded), tenant],
    )
    hits: list[tuple[float, int, str]] = []
    scored: list[tuple[Any, Any]] = []
    searched = False
    for row in languages:
        language = row["lang"]
        terms: dict[str, int] = json.loads(row["terms"]) if language is not None else {}
        if not terms:
            continue
        searched = True
        must = _must(row["phrases"] or [], row["excluded"] or [])
        phrased = must is not None and any(row["phrases"] or [])
        keys = [(False, language)] + ([(True, row["summaries"])] if row["summaries"] else [])
        for summaries, key in keys:
            affordable = _affordable(plpy, gd, tenant, key, terms)
            blocks = plpy.execute(
                cached_plan(plpy, gd, "text_blocks", _BLOCKS, ["uuid", "text", "text[]"]),
                [tenant, key, [*affordable, ""]],
            )
            if not len(blocks):
                continue  # no chunk of that key (a tenant without summaries)
            docids, scores = bm25.score(affordable, bm25.decode(blocks), params)
            scored.append((docids, scores))
            search = _Search(plpy, gd, tenant, filters or "{}", where, language, n, summaries)
            found = search.phrased(must, docids, scores) if must and phrased else None
            hits.extend(found if found is not None else search.live(must, docids, scores))
    if not searched and query.strip():
        plpy.notice(
            "text search: the query has no word to search for (only stop words or exclusions)",
            detail=f"query: {query[:200]!r}",
        )
    hits.sort(key=lambda h: (-h[0], h[1]))
    result: list[tuple[str, float, int | None]] = [
        (chunk, score, rank) for rank, (score, _doc, chunk) in enumerate(hits[:n], 1)
    ]
    if vector_ids and vector_docs:
        known = {r[0] for r in result}
        result.extend(_vector_candidate_scores(vector_ids, vector_docs, known, scored))
    return result


class _Search:
    """Turns one language's scored text versions into the best n live chunks."""

    def __init__(
        self,
        plpy: Plpy,
        gd: GD,
        tenant: str,
        filters: str,
        where: str,
        language: str,
        n: int,
        summaries: bool,
    ):
        self.plpy, self.gd, self.where = plpy, gd, where
        self.tenant, self.filters, self.language, self.n = tenant, filters, language, n
        self.summaries = summaries

    def phrased(self, must: str, docids: Any, scores: Any) -> list[Any] | None:
        """The best n of the chunks holding the query's phrases, read through the GIN index on
        chunks.tsv (planned with the tsquery as a literal, so the planner sees how rare the
        phrase is); None when more than PHRASE_ROWS chunks hold them (then candidates go in
        score order)."""
        sql = _PHRASED.format(must=self.plpy.quote_literal(must), filters=self.where)
        plan = self.plpy.prepare(
            sql, ["uuid", "bigint[]", "jsonb", "text", "text", "integer", "boolean"]
        )
        rows = self.plpy.execute(
            plan,
            [self.tenant, None, self.filters, self.language, must, PHRASE_ROWS + 1, self.summaries],
        )
        if len(rows) > PHRASE_ROWS:
            return None
        if not len(rows):
            return []
        wanted = np.array([int(r["text_doc"]) for r in rows], dtype=np.int64)
        values = bm25.lookup_many(docids, scores, wanted)
        found = [
            (float(v), int(d), str(r["id"])) for v, d, r in zip(values, wanted, rows, strict=True)
        ]
        found.sort(key=lambda h: (-h[0], h[1]))
        return found[: self.n]

    def live(self, must: str | None, docids: Any, scores: Any) -> list[Any]:
        """The best n chunk versions that still exist and pass the filters and the query's
        must clause, read in score order in growing batches: only those rows are read."""
        check = _check_plan(self.plpy, self.gd, self.where, must is not None)
        found: list[tuple[float, int, str]] = []
        position, batch = 0, self.n + FIRST_MARGIN
        order = bm25.ranked(docids, scores, batch)
        while len(found) < self.n:
            # The next batch reaches past the ranked prefix: rank them all (rarely: most were
            # filtered out or dead). Checked before slicing: a prefix longer than asked (ties
            # at its cut, as a reloaded text's dead versions make) must not let a batch skip
            # the versions between its end and the next batch's start.
            if position + batch > len(order) and len(order) < len(docids):
                order = bm25.ranked(docids, scores, len(docids))
            if position >= len(order):
                break
            wanted = [int(docids[i]) for i in order[position : position + batch]]
            rows = self.plpy.execute(
                check, [self.tenant, wanted, self.filters, self.language, must]
            )
            live = {int(r["text_doc"]): str(r["id"]) for r in rows}
            for i in order[position : position + batch]:
                chunk = live.get(int(docids[i]))
                if chunk is not None:
                    found.append((float(scores[i]), int(docids[i]), chunk))
            position += batch
            batch *= 4
        return found[: self.n]


def _vector_candidate_scores(
    vector_ids: list[str], vector_docs: list[int], known: set[str], scored: list[tuple[Any, Any]]
) -> list[tuple[str, float, int | None]]:
    """The scores of the given chunks by their text versions (a version is in one language's
    scores at most; 0.0 when it holds no query term)."""
    pairs = [
        (c, d)
        for c, d in zip(vector_ids, vector_docs, strict=False)
        if c is not None and d is not None
    ]
    pairs = [(c, d) for c, d in pairs if c not in known]
    if not pairs:
        return []
    wanted = np.array([d for _c, d in pairs], dtype=np.int64)
    values = np.zeros(len(wanted), dtype=np.float64)
    for docids, scores in scored:
        values += bm25.lookup_many(docids, scores, wanted)
    return [(c, float(v), None) for (c, _d), v in zip(pairs, values, strict=True)]
