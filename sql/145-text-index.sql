-- The BM25 text index (memex.text_segments and memex.text_postings, migration 0006), kept
-- current by the functions that write memex.chunks (_replace_chunks, _drop_chunks: no trigger
-- on a tenant table, docs/scale.md "Citus"). A chunk's terms are the lexemes of its tsvector (its
-- language's text-search configuration: stemming and stop words); its length is the number of
-- those lexeme occurrences.
--
-- Writes: each write of chunks inserts one segment row with its postings and
-- signed statistics, so writers never wait on one another. When a tenant language holds 32
-- segments, or 8,192 entries, the writer that notices compacts them into one block per lexeme,
-- and blocks of a lexeme are merged four of a size class at a time (size-tiered, like an LSM
-- tree): a lexeme keeps a logarithmic number of blocks and each posting is rewritten a
-- logarithmic number of times. Only one session compacts a tenant language at a time (a
-- try-lock: the others skip, never wait). Upkeep: sql/146; reads: sql/147.
--
-- Parallel arrays (lexemes, text versions, frequencies, lengths) are built by aggregates of one
-- pass over the same rows, so entry i of each is the same posting; their order is irrelevant
-- (a chunk version appears once per lexeme), so no aggregate sorts.

-- memex._text_terms(tsv): the postings of one chunk (its tsvector, chunks.tsv): (lexeme, term
-- frequency, chunk length). The one definition of how a chunk is indexed (writes, rebuilds and
-- the tests' recount).
create or replace function memex._text_terms(tsv tsvector)
returns table (lexeme text, tf smallint, len smallint)
language sql
immutable
parallel safe
security invoker
set search_path = pg_catalog, pg_temp
as $$
    select
        t.lexeme
        , t.tf
        , least(sum(t.tf) over (), 32767)::smallint
    from (
        select u.lexeme, least(coalesce(pg_catalog.array_length(u.positions, 1), 1), 32767)::smallint as tf
          from pg_catalog.unnest(_text_terms.tsv) as u
    ) as t
$$;

comment on function memex._text_terms(tsvector) is
'Internal: the BM25 postings of a chunk: each lexeme of its tsvector, its frequency, the chunk''s length.';

-- memex._text_key(language, kind): which statistics a chunk's text counts in, the `language`
-- key of memex.text_postings and memex.text_segments: its text-search language, or for a
-- summary `<language>:summary`. A summary repeats the words of the turns it covers: counted
-- with them, it would change the document frequencies and the mean length that rank messages
-- and documents (docs/search.md, "Text ranking"). Each key is ranked with its own statistics
-- and the keys' hits are merged by score, as different languages' are.
create or replace function memex._text_key(language text, kind text)
returns text
language sql
immutable
parallel safe
security invoker
set search_path = pg_catalog, pg_temp
as $$ select case when kind = 'summary' then language || ':summary' else language end $$;

comment on function memex._text_key(text, text) is
'Internal: the text index key of a chunk: its language, or <language>:summary for a summary (their own BM25 statistics).';

-- memex._text_lock_key(tenant, language): the advisory lock key of a tenant's language for
-- merges (two merges of the same blocks must not run at once).
create or replace function memex._text_lock_key(tenant uuid, language text)
returns bigint
language sql
immutable
parallel safe
security invoker
set search_path = pg_catalog, pg_temp
as $$ select pg_catalog.hashtextextended(tenant::text || '/' || language, memex._advisory_class('text_index')) $$;

comment on function memex._text_lock_key(uuid, text) is 'Internal: advisory lock key for merging a tenant language''s text index.';

-- memex._text_merge(tenant, language, lexemes): merges, among the given lexemes of a tenant's
-- language, each size class that holds four blocks or more into one block (arrays concatenated,
-- statistics summed). Skipped, not waited for, while another session merges that language
-- (called by the compaction, which holds the lock already).
create or replace function memex._text_merge(tenant uuid, language text, lexemes text[])
returns integer
language plpgsql
volatile
parallel unsafe
security invoker
set search_path = pg_catalog, pg_temp
-- Planned at each call: a plan cached while the index was small would keep scanning it whole.
set plan_cache_mode = force_custom_plan
as $$
declare
    -- a block's size class is how many of these it reaches (powers of 4): width_bucket
    classes constant integer[] := '{4,16,64,256,1024,4096,16384,65536,262144,1048576,4194304,16777216}';
    picked tid[];
    merged integer;
    m_lexemes text[];
    m_postings bigint[];
    m_df bigint[];
    m_tokens bigint[];
    m_dead bigint[];
    m_docids bytea[];
    m_tfs bytea[];
    m_lengths bytea[];
begin
    if not pg_catalog.pg_try_advisory_xact_lock(memex._text_lock_key(tenant, language)) then
        return 0;
    end if;
    -- Lexeme by lexeme through the primary key (LATERAL), then the picked rows by their ctid
    -- (a TID scan): the cost follows the lexemes written, never the size of the tenant's
    -- index, whatever the planner's statistics say. No other session can move the picked rows:
    -- merges, compactions and rebuilds of this language hold the advisory lock.
    select pg_catalog.array_agg(b.row_id)
      into picked
      from pg_catalog.unnest(lexemes) as l (lexeme)
     cross join lateral (
         select pg_catalog.array_agg(p.ctid) as row_ids
           from memex.text_postings as p
          where p.tenant_id = tenant and p.language = _text_merge.language and p.lexeme = l.lexeme
          group by pg_catalog.width_bucket(p.postings, classes)
         having pg_catalog.count(*) >= 4
     ) as x
     cross join lateral pg_catalog.unnest(x.row_ids) as b (row_id);
    if picked is null then
        return 0;
    end if;
    -- Two statements: Citus runs an INSERT reading a data-modifying CTE through the
    -- coordinator, as a COPY into the shard, which RLS refuses.
    with gone as (
        delete from memex.text_postings as p
         where p.tenant_id = tenant and p.language = _text_merge.language and p.ctid = any(picked)
        returning p.*
    ),
    blocks as (
        select g.lexeme, sum(g.postings) as postings, sum(g.df) as df, sum(g.tokens) as tokens
             , sum(g.dead) as dead, pg_catalog.string_agg(g.docids, ''::bytea) as docids
             , pg_catalog.string_agg(g.tfs, ''::bytea) as tfs, pg_catalog.string_agg(g.lengths, ''::bytea) as lengths
          from gone as g
         group by g.lexeme, pg_catalog.width_bucket(g.postings, classes)
    )
    select pg_catalog.array_agg(b.lexeme), pg_catalog.array_agg(b.postings), pg_catalog.array_agg(b.df)
         , pg_catalog.array_agg(b.tokens), pg_catalog.array_agg(b.dead), pg_catalog.array_agg(b.docids)
         , pg_catalog.array_agg(b.tfs), pg_catalog.array_agg(b.lengths)
      into m_lexemes, m_postings, m_df, m_tokens, m_dead, m_docids, m_tfs, m_lengths
      from blocks as b;
    -- RETURNING: Citus writes the rows through the shard's INSERT (RLS applies), not a COPY
    with added as (
        insert into memex.text_postings (tenant_id, language, lexeme, postings, df, tokens, dead, docids, tfs, lengths)
        select tenant, _text_merge.language, u.lexeme, u.postings, u.df, u.tokens, u.dead, u.docids, u.tfs, u.lengths
          from unnest(m_lexemes, m_postings, m_df, m_tokens, m_dead, m_docids, m_tfs, m_lengths)
            as u (lexeme, postings, df, tokens, dead, docids, tfs, lengths)
        returning 1
    )
    select pg_catalog.count(*) into merged from added;
    return merged;
end
$$;

comment on function memex._text_merge(uuid, text, text[]) is
'Internal: merges text index blocks of some lexemes, four of a size class into one (skipped while another session merges).';

-- memex._text_segments_folded(): the highest segment id this transaction has folded (0 if
-- none). A segment another session adds meanwhile may have a lower id: counting it later
-- only delays a compaction, and a compaction folds every segment it sees.
create or replace function memex._text_segments_folded()
returns bigint
language sql
stable
parallel safe
security invoker
set search_path = pg_catalog, pg_temp
as $$ select coalesce(nullif(pg_catalog.current_setting('memex.text_segments_folded', true), '')::bigint, 0) $$;

comment on function memex._text_segments_folded() is
'Internal: the highest text index segment id folded by this transaction (0 if none).';

-- memex._text_compact(tenant, language): the tenant language's segments folded into one block
-- per lexeme (and one of totals), in one statement, then the lexemes' blocks merged. Skipped,
-- not waited for, while another session compacts or merges that language.
create or replace function memex._text_compact(tenant uuid, language text)
returns integer
language plpgsql
volatile
parallel unsafe
security invoker
set search_path = pg_catalog, pg_temp
as $$
declare
    touched text[];
    folded bigint;
begin
    if not pg_catalog.pg_try_advisory_xact_lock(memex._text_lock_key(tenant, language)) then
        return 0;
    end if;
    with gone as (
        delete from memex.text_segments as s
         where s.tenant_id = tenant and s.language = _text_compact.language
        returning s.*
    ),
    entries as (
        select e.lexeme, e.docid, e.tf, e.len, e.delta
          from gone as g
         cross join lateral unnest(g.lexemes, g.docids, g.tfs, g.lengths, g.deltas) as e (lexeme, docid, tf, len, delta)
    ),
    added as (
        insert into memex.text_postings (tenant_id, language, lexeme, postings, df, tokens, dead, docids, tfs, lengths)
        select
            tenant, _text_compact.language, e.lexeme, pg_catalog.count(*) filter (where e.delta > 0), sum(e.delta), 0, 0
            , coalesce(pg_catalog.string_agg(pg_catalog.int8send(e.docid), ''::bytea)
                filter (where e.delta > 0), ''::bytea)
            , coalesce(pg_catalog.string_agg(pg_catalog.int2send(e.tf), ''::bytea)
                filter (where e.delta > 0), ''::bytea)
            , coalesce(pg_catalog.string_agg(pg_catalog.int2send(e.len), ''::bytea)
                filter (where e.delta > 0), ''::bytea)
          from entries as e
         group by e.lexeme
        union all
        select tenant, _text_compact.language, '', 0, sum(g.chunks), sum(g.tokens), sum(g.dead), '', '', ''
          from gone as g
        having pg_catalog.count(*) > 0
        returning lexeme
    )
    select pg_catalog.array_agg(a.lexeme), (select max(g.segment) from gone as g) into touched, folded from added as a;
    -- The segments folded here stay in the index as deleted rows until this transaction ends:
    -- _text_apply's check skips them by id (a bulk load in one transaction checks thousands
    -- of times, and would read every segment it ever folded).
    perform pg_catalog.set_config('memex.text_segments_folded', greatest(memex._text_segments_folded(), folded)::text, true);
    if touched is null then
        return 0;
    end if;
    perform memex._text_merge(tenant, language, touched);
    return pg_catalog.cardinality(touched);
end
$$;

comment on function memex._text_compact(uuid, text) is
'Internal: folds a tenant language''s text index segments into blocks, then merges (skipped while another session does).';

-- memex._text_apply(tenant, languages, text_docs, tsvs, sign): one segment per language of the
-- tenant's chunk versions given (entry i of each array is one chunk version: its language, text
-- version and tsvector): with sign 1 their postings and +1 statistics; with sign -1 (updated or
-- deleted chunks) -1 statistics only (their postings die where they are, skipped by searches).
-- A chunk with no lexeme still counts as a chunk, of length 0. Then compacts a language whose
-- segments grew.
create or replace function memex._text_apply(
    tenant uuid, languages text[], text_docs bigint[], tsvs tsvector[], sign integer
)
returns void
language plpgsql
volatile
parallel unsafe
security invoker
set search_path = pg_catalog, pg_temp
as $$
declare
    part record;
begin
    if sign not in (1, -1) then
        raise exception 'sign must be 1 or -1, not %', sign using errcode = '22023';
    end if;
    if coalesce(pg_catalog.cardinality(text_docs), 0) = 0 then
        return;  -- e.g. an update that changed no chunk's text
    end if;
    for part in
        with terms as (
            select _text_apply.tenant as tenant_id, d.language, d.text_doc, t.lexeme, t.tf, t.len
              from unnest(languages, text_docs, tsvs) as d (language, text_doc, tsv)  -- FROM-clause form: cannot be qualified
              left join lateral memex._text_terms(d.tsv) as t on true
        ),
        per_chunk as (
            select distinct t.tenant_id, t.language, t.text_doc, t.len from terms as t
        ),
        added as (
            insert into memex.text_segments (
                tenant_id, language, entries, chunks, tokens, dead, lexemes, docids, tfs, lengths, deltas
            )
            select
                g.tenant_id, g.language, coalesce(x.entries, 0), sign * g.chunks, sign * g.tokens
                , case when sign = -1 then g.chunks else 0 end
                , coalesce(x.lexemes, '{}'), coalesce(x.docids, '{}'), coalesce(x.tfs, '{}')
                , coalesce(x.lengths, '{}'), coalesce(x.deltas, '{}')
              from (
                  select c.tenant_id, c.language, pg_catalog.count(*)::integer as chunks
                       , coalesce(sum(c.len), 0) as tokens
                    from per_chunk as c
                   group by c.tenant_id, c.language
              ) as g
              left join lateral (
                  select
                      pg_catalog.count(*)::integer as entries
                      , pg_catalog.array_agg(t.lexeme) as lexemes
                      , pg_catalog.array_agg(t.text_doc) as docids
                      , pg_catalog.array_agg(t.tf) as tfs
                      , pg_catalog.array_agg(t.len) as lengths
                      , pg_catalog.array_agg(sign::smallint) as deltas
                    from terms as t
                   where t.tenant_id = g.tenant_id and t.language = g.language and t.lexeme is not null
              ) as x on true
            returning tenant_id, language
        )
        select distinct a.tenant_id, a.language from added as a
    loop
        if (select pg_catalog.count(*) >= 32 or sum(s.entries) >= 8192
              from memex.text_segments as s
             where s.tenant_id = part.tenant_id and s.language = part.language
               and s.segment > memex._text_segments_folded()) then
            perform memex._text_compact(part.tenant_id, part.language);
        end if;
    end loop;
end
$$;

comment on function memex._text_apply(uuid, text[], bigint[], tsvector[], integer) is
'Internal: records chunk versions added to (sign 1) or taken out of (sign -1) the text index, as a segment; compacts when segments grew.';

-- memex._drop_chunks(chunk_ids): deletes the current tenant's chunks given and takes them out of
-- the text index (their vectors and failure records cascade). The one way memex deletes chunks:
-- _replace_chunks, delete_document, delete_conversation and upsert_messages' replace call it
-- before their own deletes, which then cascade to no chunk.
create or replace function memex._drop_chunks(chunk_ids uuid[])
returns void
language plpgsql
volatile
parallel unsafe
security invoker
set search_path = pg_catalog, pg_temp
as $$
declare
    tenant uuid := memex._require_tenant();
    languages text[];
    text_docs bigint[];
    tsvs tsvector[];
begin
    if coalesce(pg_catalog.cardinality(chunk_ids), 0) = 0 then
        return;
    end if;
    with gone as (
        delete from memex.chunks as k
         where k.tenant_id = tenant and k.id = any(_drop_chunks.chunk_ids)
        returning k.language, k.source_kind, k.text_doc, k.tsv
    )
    select pg_catalog.array_agg(memex._text_key(g.language, g.source_kind)), pg_catalog.array_agg(g.text_doc)
         , pg_catalog.array_agg(g.tsv)
      into languages, text_docs, tsvs
      from gone as g;
    perform memex._text_apply(tenant, languages, text_docs, tsvs, -1);
end
$$;

comment on function memex._drop_chunks(uuid[]) is
'Internal: deletes chunks of the current tenant and takes them out of the text index.';
