-- Upkeep of the BM25 text index (sql/145): rewriting a tenant's index from its chunks (dead
-- postings dropped), its status, and indexing chunks that exist without an index (the install
-- that brings migration 0006).

-- memex._text_rebuild(tenant, language): the tenant language's index rewritten from its chunks
-- as they are now: one block per lexeme, without the postings of dead chunk versions. One
-- statement, so one snapshot: blocks that concurrent writers have not committed yet are not
-- deleted and their chunks are not read, so nothing is lost or counted twice. Merges of that
-- language wait (the advisory lock); writers never do.
create or replace function memex._text_rebuild(tenant uuid, language text)
returns void
language plpgsql
volatile
parallel unsafe
security invoker
set search_path = pg_catalog, pg_temp
as $$
declare
    saved_timeout text := pg_catalog.current_setting('lock_timeout');
    written bigint;
begin
    perform memex._bounded_lock_timeout();
    begin
        perform pg_catalog.pg_advisory_xact_lock(memex._text_lock_key(tenant, language));
    exception when lock_not_available then
        raise exception 'the text index of tenant %, %, is locked by %', tenant, _text_rebuild.language
            , coalesce(memex._advisory_holders(memex._text_lock_key(tenant, language)), 'a session now gone')
            using errcode = '55P03', hint = 'a merge holds it for milliseconds; a session that keeps it took memex''s key: end it';
    end;
    perform pg_catalog.set_config('lock_timeout', saved_timeout, true);
    with gone as (
        delete from memex.text_postings as p where p.tenant_id = tenant and p.language = _text_rebuild.language
    ),
    gone_segments as (
        delete from memex.text_segments as s where s.tenant_id = tenant and s.language = _text_rebuild.language
    ),
    terms as (
        select c.text_doc, t.lexeme, t.tf, t.len
          from memex.chunks as c
          left join lateral memex._text_terms(c.tsv) as t on true
         where c.tenant_id = tenant and memex._text_key(c.language::text, c.source_kind) = _text_rebuild.language
    ),
    -- the INSERT in a CTE with RETURNING: Citus runs the statement whole on the tenant's shard
    -- group (a top-level INSERT ... SELECT it would write through the coordinator as a COPY,
    -- which RLS refuses)
    added as (
        insert into memex.text_postings (tenant_id, language, lexeme, postings, df, tokens, dead, docids, tfs, lengths)
        select
            tenant, _text_rebuild.language, t.lexeme, pg_catalog.count(*), pg_catalog.count(*), 0, 0
            , pg_catalog.string_agg(pg_catalog.int8send(t.text_doc), ''::bytea)
            , pg_catalog.string_agg(pg_catalog.int2send(t.tf), ''::bytea)
            , pg_catalog.string_agg(pg_catalog.int2send(t.len), ''::bytea)
          from terms as t
         where t.lexeme is not null
         group by t.lexeme
        union all
        select tenant, _text_rebuild.language, '', 0, pg_catalog.count(*), coalesce(sum(g.len), 0), 0, '', '', ''
          from (select distinct t.text_doc, t.len from terms as t) as g
        having pg_catalog.count(*) > 0
        returning 1
    )
    select pg_catalog.count(*) into written from added;
end
$$;

comment on function memex._text_rebuild(uuid, text) is
'Internal: rewrites a tenant language''s text index from its chunks (one block per lexeme, no dead postings).';

-- CALL memex.optimize_text_index(tenant): rewrites the text index of a tenant (null: every
-- tenant the caller may list) from its chunks, language by language, committing after each:
-- one block per lexeme, and the postings of updated or deleted chunks gone. Searches are exact
-- without it; it makes them read less. Worth running after bulk updates or deletes
-- (memex.text_index_status shows the dead share). As memex_admin.
create or replace procedure memex.optimize_text_index(tenant text default null)
language plpgsql
security invoker
as $$
declare
    tenants uuid[];
    t uuid;
    lang text;
    started timestamptz;
begin
    set local search_path = pg_catalog, pg_temp;
    if optimize_text_index.tenant is null then
        tenants := array(select x.id from memex.tenants as x order by x.id);
    else
        tenants := array[memex.set_tenant(optimize_text_index.tenant, true)];
    end if;
    foreach t in array tenants loop
        perform memex._act_for(t::text);
        for lang in
            select distinct memex._text_key(c.language::text, c.source_kind) from memex.chunks as c where c.tenant_id = t
            union
            select distinct p.language from memex.text_postings as p where p.tenant_id = t
        loop
            started := pg_catalog.clock_timestamp();
            perform memex._text_rebuild(t, lang);
            raise notice 'memex.optimize_text_index: tenant %, %: rewritten in % ms', t, lang
                , pg_catalog.round(extract(epoch from pg_catalog.clock_timestamp() - started)::numeric * 1000);
            commit;
            set local search_path = pg_catalog, pg_temp;
            perform memex._act_for(t::text);
        end loop;
    end loop;
    perform memex._act_for('');
end
$$;

comment on procedure memex.optimize_text_index (text) is
'Rewrites the BM25 text index of a tenant (null: every tenant) from its chunks: one block per lexeme, dead postings gone.';

-- memex.text_index_status: the text index of each tenant the caller sees, per index key (a
-- language, or a language's summaries: memex._text_key). Replaced
-- in place (a drop would change its oid, and every install would look like a change); a release
-- that changes its columns drops it in its migration.
create or replace view memex.text_index_status
with (security_invoker = true)
as
with blocks as (
    select
        b.tenant_id
        , b.language
        , sum(b.df) filter (where b.lexeme = '') as chunks
        , sum(b.tokens) filter (where b.lexeme = '') as tokens
        , count(distinct b.lexeme) filter (where b.lexeme <> '') as lexemes
        , count(*) as blocks
        , sum(b.postings) as postings
        , sum(b.dead) filter (where b.lexeme = '') as dead
    from memex.text_postings as b
    group by b.tenant_id, b.language
)

, segments as (
    select
        g.tenant_id
        , g.language
        , count(*) as segments
        , sum(g.entries) as entries
        , sum(g.chunks) as chunks
        , sum(g.tokens) as tokens
        , sum(g.dead) as dead
    from memex.text_segments as g
    group by g.tenant_id, g.language
)

select
    coalesce(p.tenant_id, s.tenant_id) as tenant_id
    , coalesce(p.language, s.language) as language
    , coalesce(p.chunks, 0) + coalesce(s.chunks, 0) as chunks
    , round(
        (coalesce(p.tokens, 0) + coalesce(s.tokens, 0))::numeric
        / nullif(coalesce(p.chunks, 0) + coalesce(s.chunks, 0), 0), 1
    ) as avg_length
    , coalesce(p.lexemes, 0) as lexemes
    , coalesce(p.blocks, 0) as blocks
    , coalesce(p.postings, 0) as postings
    , coalesce(s.segments, 0) as segments
    , coalesce(s.entries, 0) as segment_entries
    , coalesce(p.dead, 0) + coalesce(s.dead, 0) as dead_versions
    , round(
        (coalesce(p.dead, 0) + coalesce(s.dead, 0))::numeric
        / nullif(coalesce(p.chunks, 0) + coalesce(s.chunks, 0) + coalesce(p.dead, 0) + coalesce(s.dead, 0), 0), 3
    ) as dead_share
from blocks as p
full join segments as s on p.tenant_id = s.tenant_id and p.language = s.language;

comment on view memex.text_index_status is
'The BM25 text index per tenant and language (a language''s summaries apart, as <language>:summary): chunks, mean length, lexemes, blocks, postings, recent segments, dead chunk versions and their share.';

-- Chunks that exist without any text index (the install that brings migration 0006, or an
-- index emptied by hand): index them now, tenant language by tenant language. Inside the
-- install's transaction; the triggers created above hold off chunk writes until it commits.
do $backfill$
declare
    part record;
begin
    if exists (select 1 from memex.text_postings) or exists (select 1 from memex.text_segments)
       or not exists (select 1 from memex.chunks) then
        return;
    end if;
    for part in
        select distinct c.tenant_id, memex._text_key(c.language::text, c.source_kind) as language from memex.chunks as c
    loop
        perform memex._text_rebuild(part.tenant_id, part.language);
    end loop;
    analyze memex.text_postings;
end
$backfill$;

-- Summaries indexed with the other chunks of their language (before summaries had statistics
-- of their own, memex._text_key): both keys of that tenant language rewritten from the chunks.
do $summaries_apart$
declare
    part record;
begin
    for part in
        select distinct c.tenant_id, c.language::text as language
          from memex.chunks as c
         where c.source_kind = 'summary'
           and not exists (select 1 from memex.text_postings as p
                            where p.tenant_id = c.tenant_id and p.language = memex._text_key(c.language::text, 'summary'))
           and not exists (select 1 from memex.text_segments as s
                            where s.tenant_id = c.tenant_id and s.language = memex._text_key(c.language::text, 'summary'))
    loop
        perform memex._text_rebuild(part.tenant_id, part.language);
        perform memex._text_rebuild(part.tenant_id, memex._text_key(part.language, 'summary'));
        raise notice 'memex: the summaries of tenant % (%) now have BM25 statistics of their own: its text index was rewritten'
            , part.tenant_id, part.language;
    end loop;
end
$summaries_apart$;
