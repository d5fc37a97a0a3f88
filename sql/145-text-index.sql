-- The BM25 text index (memex.text_postings, migration 0006), kept current by triggers on
-- memex.chunks. A chunk's terms are the lexemes of its tsvector (its language's text-search
-- configuration: stemming and stop words); its length is the number of those lexeme
-- occurrences. Writers only insert blocks (their statement's postings and signed statistics),
-- so they never wait on one another; blocks of one lexeme are merged size-tiered (four blocks
-- of one size class become one), which keeps a lexeme's block count logarithmic. Only one
-- session merges a tenant's language at a time (a try-lock: the others skip, never wait).
-- Searching reads the blocks of the query's lexemes: memex._text_candidates (sql/160).

-- memex._text_terms(c): the postings of one chunk: (lexeme, term frequency, chunk length).
-- The one definition of how a chunk is indexed (writes, rebuilds and the tests' recount).
create or replace function memex._text_terms(c memex.chunks)
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
          from pg_catalog.unnest(c.tsv) as u
    ) as t
$$;

comment on function memex._text_terms(memex.chunks) is
'Internal: the BM25 postings of a chunk: each lexeme of its tsvector, its frequency, the chunk''s length.';

-- memex._text_level(postings): a block's size class (log base 4): blocks of one lexeme merge
-- four of a class at a time.
create or replace function memex._text_level(postings integer)
returns integer
language sql
immutable
parallel safe
security invoker
set search_path = pg_catalog, pg_temp
as $$ select case when postings < 4 then 0 else pg_catalog.floor(pg_catalog.log(4, postings::numeric))::integer end $$;

comment on function memex._text_level(integer) is 'Internal: the size class of a text index block.';

-- memex._text_lock_key(tenant, language): the advisory lock key of a tenant's language for
-- merges (two merges of the same blocks must not run at once).
create or replace function memex._text_lock_key(tenant uuid, language text)
returns bigint
language sql
immutable
parallel safe
security invoker
set search_path = pg_catalog, pg_temp
as $$ select pg_catalog.hashtextextended(tenant::text || '/' || language, 1835363704) $$;

comment on function memex._text_lock_key(uuid, text) is 'Internal: advisory lock key for merging a tenant language''s text index.';

-- memex._text_merge(tenant, language, lexemes): merges, among the given lexemes of a tenant's
-- language, each size class that holds four blocks or more into one block (arrays concatenated,
-- statistics summed). Skipped, not waited for, while another session merges that language.
create or replace function memex._text_merge(tenant uuid, language text, lexemes text[])
returns integer
language plpgsql
volatile
parallel unsafe
security invoker
set search_path = pg_catalog, pg_temp
as $$
declare
    picked_lexemes text[];
    picked_blocks bigint[];
    merged integer;
begin
    if not pg_catalog.pg_try_advisory_xact_lock(memex._text_lock_key(tenant, language)) then
        return 0;
    end if;
    -- Lexeme by lexeme through the primary key (LATERAL): the cost follows the lexemes
    -- written, never the size of the tenant's index.
    select pg_catalog.array_agg(distinct l.lexeme), pg_catalog.array_agg(b.block)
      into picked_lexemes, picked_blocks
      from pg_catalog.unnest(lexemes) as l (lexeme)
     cross join lateral (
         select pg_catalog.array_agg(p.block) as blocks
           from memex.text_postings as p
          where p.tenant_id = tenant and p.language = _text_merge.language and p.lexeme = l.lexeme
          group by memex._text_level(p.postings)
         having pg_catalog.count(*) >= 4
     ) as x
     cross join lateral pg_catalog.unnest(x.blocks) as b (block);
    if picked_blocks is null then
        return 0;
    end if;
    with gone as (
        delete from memex.text_postings as p
         where p.tenant_id = tenant and p.language = _text_merge.language
           and p.lexeme = any(picked_lexemes) and p.block = any(picked_blocks)
        returning p.*
    )
    insert into memex.text_postings (tenant_id, language, lexeme, postings, df, tokens, dead, docids, tfs, lengths)
    select
        tenant, _text_merge.language, g.lexeme, sum(g.postings), sum(g.df), sum(g.tokens), sum(g.dead)
        , pg_catalog.string_agg(g.docids, ''::bytea order by g.block)
        , pg_catalog.string_agg(g.tfs, ''::bytea order by g.block)
        , pg_catalog.string_agg(g.lengths, ''::bytea order by g.block)
      from gone as g
     group by g.lexeme, memex._text_level(g.postings);
    get diagnostics merged = row_count;
    return merged;
end
$$;

comment on function memex._text_merge(uuid, text, text[]) is
'Internal: merges text index blocks of some lexemes, four of a size class into one (skipped while another session merges).';

-- memex._text_apply(docs, sign): adds chunk versions to the text index (sign 1: their postings
-- and +1 statistics) or takes them out (sign -1: -1 statistics only; their postings stay in their
-- blocks, dead, until a merge drops them), then merges what grew. A chunk with no lexeme still
-- counts as a chunk (of length 0).
create or replace function memex._text_apply(docs memex.chunks[], sign integer)
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
    for part in
        with terms as (
            select d.tenant_id, d.language::text as language, d.text_doc, t.lexeme, t.tf, t.len
              from pg_catalog.unnest(docs) as d
              left join lateral memex._text_terms(d) as t on true
        ),
        added as (
            insert into memex.text_postings (
                tenant_id, language, lexeme, postings, df, tokens, dead, docids, tfs, lengths
            )
            select
                t.tenant_id, t.language, t.lexeme
                , case when sign = 1 then pg_catalog.count(*) else 0 end
                , sign * pg_catalog.count(*), 0, 0
                , case when sign = 1 then pg_catalog.string_agg(pg_catalog.int8send(t.text_doc), ''::bytea order by t.text_doc) else ''::bytea end
                , case when sign = 1 then pg_catalog.string_agg(pg_catalog.int2send(t.tf), ''::bytea order by t.text_doc) else ''::bytea end
                , case when sign = 1 then pg_catalog.string_agg(pg_catalog.int2send(t.len), ''::bytea order by t.text_doc) else ''::bytea end
              from terms as t
             where t.lexeme is not null
             group by t.tenant_id, t.language, t.lexeme
            union all
            select
                g.tenant_id, g.language, '', 0, sign * pg_catalog.count(*), sign * coalesce(sum(g.len), 0)
                , case when sign = 1 then 0 else pg_catalog.count(*) end
                , ''::bytea, ''::bytea, ''::bytea
              from (select distinct t.tenant_id, t.language, t.text_doc, t.len from terms as t) as g
             group by g.tenant_id, g.language
            returning tenant_id, language, lexeme
        )
        select a.tenant_id, a.language, pg_catalog.array_agg(a.lexeme) as lexemes
          from added as a
         group by a.tenant_id, a.language
    loop
        perform memex._text_merge(part.tenant_id, part.language, part.lexemes);
    end loop;
end
$$;

comment on function memex._text_apply(memex.chunks[], integer) is
'Internal: adds chunk versions to the text index (sign 1) or takes them out (sign -1), then merges what grew.';

-- memex._text_index_chunks(): statement trigger on memex.chunks: indexes inserted chunks,
-- unindexes deleted ones, and re-indexes updated chunks whose text version changed.
create or replace function memex._text_index_chunks()
returns trigger
language plpgsql
volatile
parallel unsafe
security invoker
set search_path = pg_catalog, pg_temp
as $$
begin
    if tg_op = 'INSERT' then
        perform memex._text_apply(array(select n::memex.chunks from new_chunks as n), 1);
    elsif tg_op = 'DELETE' then
        perform memex._text_apply(array(select o::memex.chunks from old_chunks as o), -1);
    else
        perform memex._text_apply(array(
            select o::memex.chunks from old_chunks as o join new_chunks as n on n.tenant_id = o.tenant_id and n.id = o.id
             where n.text_doc <> o.text_doc), -1);
        perform memex._text_apply(array(
            select n::memex.chunks from new_chunks as n join old_chunks as o on o.tenant_id = n.tenant_id and o.id = n.id
             where n.text_doc <> o.text_doc), 1);
    end if;
    return null;
end
$$;

comment on function memex._text_index_chunks() is
'Internal trigger: keeps the BM25 text index current for inserted, updated and deleted chunks.';

-- memex._text_new_version(): a chunk whose content or language changes gets a new text
-- version, so its old postings are dead and its new ones are indexed.
create or replace function memex._text_new_version()
returns trigger
language plpgsql
volatile
parallel unsafe
security invoker
set search_path = pg_catalog, pg_temp
as $$
begin
    if new.content is distinct from old.content or new.language is distinct from old.language then
        new.text_doc := pg_catalog.nextval('memex.text_doc_seq');
    end if;
    return new;
end
$$;

comment on function memex._text_new_version() is
'Internal trigger: gives a chunk a new text version when its content or language changes.';

drop trigger if exists text_version on memex.chunks;
create trigger text_version before update of content, language on memex.chunks
for each row execute function memex._text_new_version();

drop trigger if exists text_index_insert on memex.chunks;
create trigger text_index_insert after insert on memex.chunks
referencing new table as new_chunks
for each statement execute function memex._text_index_chunks();

drop trigger if exists text_index_update on memex.chunks;
create trigger text_index_update after update on memex.chunks
referencing old table as old_chunks new table as new_chunks
for each statement execute function memex._text_index_chunks();

drop trigger if exists text_index_delete on memex.chunks;
create trigger text_index_delete after delete on memex.chunks
referencing old table as old_chunks
for each statement execute function memex._text_index_chunks();

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
begin
    perform pg_catalog.pg_advisory_xact_lock(memex._text_lock_key(tenant, language));
    with gone as (
        delete from memex.text_postings as p where p.tenant_id = tenant and p.language = _text_rebuild.language
    ),
    terms as (
        select c.text_doc, t.lexeme, t.tf, t.len
          from memex.chunks as c
          left join lateral memex._text_terms(c) as t on true
         where c.tenant_id = tenant and c.language::text = _text_rebuild.language
    )
    insert into memex.text_postings (tenant_id, language, lexeme, postings, df, tokens, dead, docids, tfs, lengths)
    select
        tenant, _text_rebuild.language, t.lexeme, pg_catalog.count(*), pg_catalog.count(*), 0, 0
        , pg_catalog.string_agg(pg_catalog.int8send(t.text_doc), ''::bytea order by t.text_doc)
        , pg_catalog.string_agg(pg_catalog.int2send(t.tf), ''::bytea order by t.text_doc)
        , pg_catalog.string_agg(pg_catalog.int2send(t.len), ''::bytea order by t.text_doc)
      from terms as t
     where t.lexeme is not null
     group by t.lexeme
    union all
    select tenant, _text_rebuild.language, '', 0, pg_catalog.count(*), coalesce(sum(g.len), 0), 0, '', '', ''
      from (select distinct t.text_doc, t.len from terms as t) as g
    having pg_catalog.count(*) > 0;
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
        perform pg_catalog.set_config('memex.tenant_id', t::text, true);
        for lang in
            select distinct c.language::text from memex.chunks as c where c.tenant_id = t
            union
            select distinct p.language from memex.text_postings as p where p.tenant_id = t
        loop
            started := pg_catalog.clock_timestamp();
            perform memex._text_rebuild(t, lang);
            raise notice 'memex.optimize_text_index: tenant %, %: rewritten in % ms', t, lang
                , pg_catalog.round(extract(epoch from pg_catalog.clock_timestamp() - started)::numeric * 1000);
            commit;
            set local search_path = pg_catalog, pg_temp;
            perform pg_catalog.set_config('memex.tenant_id', t::text, true);
        end loop;
    end loop;
    perform pg_catalog.set_config('memex.tenant_id', '', true);
end
$$;

comment on procedure memex.optimize_text_index (text) is
'Rewrites the BM25 text index of a tenant (null: every tenant) from its chunks: one block per lexeme, dead postings gone.';

-- memex.text_index_status: the text index of each tenant the caller sees, per language.
create or replace view memex.text_index_status
with (security_invoker = true)
as
select
    t.tenant_id
    , t.language
    , t.chunks
    , round(t.tokens::numeric / nullif(t.chunks, 0), 1) as avg_length
    , t.lexemes
    , t.blocks
    , t.postings
    , t.dead_versions
    , round(t.dead_versions::numeric / nullif(t.chunks + t.dead_versions, 0), 3) as dead_share
from (
    select
        p.tenant_id
        , p.language
        , sum(p.df) filter (where p.lexeme = '') as chunks
        , sum(p.tokens) filter (where p.lexeme = '') as tokens
        , count(distinct p.lexeme) filter (where p.lexeme <> '') as lexemes
        , count(*) as blocks
        , sum(p.postings) as postings
        , sum(p.dead) filter (where p.lexeme = '') as dead_versions
    from memex.text_postings as p
    group by p.tenant_id, p.language
) as t;

comment on view memex.text_index_status is
'The BM25 text index per tenant and language: chunks, mean length, lexemes, blocks, postings, dead chunk versions and their share.';

-- Chunks that exist without any text index (the install that brings migration 0006, or an
-- index emptied by hand): index them now, tenant language by tenant language. Inside the
-- install's transaction; the triggers created above hold off chunk writes until it commits.
do $backfill$
declare
    part record;
begin
    if exists (select from memex.text_postings) or not exists (select from memex.chunks) then
        return;
    end if;
    for part in select distinct c.tenant_id, c.language::text as language from memex.chunks as c loop
        perform memex._text_rebuild(part.tenant_id, part.language);
    end loop;
    analyze memex.text_postings;
end
$backfill$;

-- memex._text_candidates(query, filters, n, k1, b, also): the text leg of rag_search: the best
-- n chunks of the current tenant by BM25 (rank 1..n), then the BM25 score of each chunk of
-- `also` (the vector leg's candidates) that is not among them (rank null). memex_db.text_search.
create or replace function memex._text_candidates(
    query text, filters jsonb, n integer, k1 double precision, b double precision, also uuid[]
)
returns table (chunk_id uuid, score double precision, rank integer)
language plpython3u
stable
parallel unsafe
security invoker
set search_path = pg_catalog, pg_temp
as $py$
if "memex_db" not in GD:
    plpy.execute("select memex._python_init()")
return GD["memex_db"].entry.call(plpy, GD, "@memex_version@", "text_candidates", query, filters, n, k1, b, also)
$py$;

comment on function memex._text_candidates(text, jsonb, integer, double precision, double precision, uuid[]) is
'Internal: BM25 top-n of the current tenant''s chunks for a query (rank 1..n), and the scores of the given chunks.';
