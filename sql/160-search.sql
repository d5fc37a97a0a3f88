-- Search: memex.rag_search (hybrid, vector, text) and memex.compose_context.
-- SECURITY INVOKER: RLS applies, and every statement also filters on the current tenant. With
-- no tenant set the result is empty (no error, nothing leaks). Vector candidates come from the
-- space's own partial HNSW index: the statement is built per space, with its id and dimensions
-- as literals, so the planner matches the index; every user value travels as a parameter.

-- memex._search(...): the one implementation behind both rag_search overloads.
create or replace function memex._search(
    query text, query_embedding __vector_schema__.vector, k integer, mode text, filters jsonb, space text
    , min_similarity double precision, rrf_k integer, vector_weight double precision
    , text_weight double precision, diversity double precision
)
returns table (
    chunk_id uuid, source_kind text, source_id uuid, content text, score double precision
    , similarity double precision, vector_rank integer, text_rank integer, metadata jsonb
)
language plpgsql
stable
parallel unsafe
security invoker
set search_path = pg_catalog, pg_temp
-- pgvector >= 0.8: keep scanning the HNSW graph until the filters (and RLS) leave k rows.
set "hnsw.iterative_scan" = 'relaxed_order'
as $$
declare
    tenant uuid := memex.current_tenant();
    sp memex.spaces;
    vs constant text := $vs$__vector_schema__$vs$;  -- pgvector's schema, quoted, rendered at install
    op text;
    sim text;
    where_filters text;
    depth integer;
    want integer := _search.k;
    qvec __vector_schema__.vector := _search.query_embedding;
    languages regconfig[];
    text_match text;
    statement text;
begin
    if _search.mode is null or _search.mode not in ('hybrid', 'vector', 'text') then
        raise exception 'unknown search mode %', coalesce(pg_catalog.quote_literal(_search.mode), 'null')
            using errcode = '22023', hint = 'hybrid, vector or text';
    end if;
    if qvec is null and (_search.query is null or pg_catalog.btrim(_search.query) = '') then
        raise exception 'the search query is empty' using errcode = '22023';
    end if;
    if qvec is not null and _search.mode <> 'vector' then
        raise exception 'a query embedding can only be searched in mode vector' using errcode = '22023';
    end if;
    if _search.k is null or _search.k < 1 then
        raise exception 'k must be at least 1, not %', _search.k using errcode = '22023';
    end if;
    want := least(_search.k, 1000);  -- documented cap: deeper lists are not "retrieval" any more
    if _search.rrf_k is null or _search.rrf_k < 1 then
        raise exception 'rrf_k must be at least 1' using errcode = '22023';
    end if;
    if _search.diversity is not null and (_search.diversity < 0 or _search.diversity > 1) then
        raise exception 'diversity must be between 0 and 1, not %', _search.diversity using errcode = '22023';
    end if;
    where_filters := memex._search_filters(_search.filters);
    sp := memex._space(_search.space);
    if qvec is not null and __vector_schema__.vector_dims(qvec) <> sp.dimensions then
        raise exception 'the query embedding has % dimensions, space % has %'
            , __vector_schema__.vector_dims(qvec), sp.name, sp.dimensions
            using errcode = '22000', hint = 'embed the query with memex.embed(text, space)';
    end if;
    if tenant is null then
        return;  -- no tenant: zero rows (RLS would give none anyway), and no model call
    end if;
    -- search_path is pinned to pg_catalog: pgvector's operators are named with their schema.
    op := pg_catalog.format('operator(%s.%s)', vs, case sp.distance when 'cosine' then '<=>' when 'l2' then '<->' else '<#>' end);
    -- similarity reported for every row: 1 - cosine distance, the inner product, or -L2 distance.
    sim := case sp.distance when 'cosine' then '1 - d' else '-d' end;
    -- Candidate depth. The relaxed-order HNSW scan can return a true top-k row a few places
    -- late, so vector candidates are fetched deeper than k and re-sorted by exact distance
    -- (pgvector's advice); at ef_search 40 the graph search visits that many anyway.
    depth := case when _search.mode = 'text' and _search.diversity is null then want
                  when _search.mode = 'vector' and _search.diversity is null then greatest(want * 2, 40)
                  else greatest(want * 4, 40) end;
    if qvec is null then
        qvec := memex.embed(_search.query, sp.name);  -- text mode too: every row has its similarity
    end if;
    if _search.mode <> 'vector' then
        -- the tenant's languages by a skip scan of chunks_tenant_language: one probe per language
        with recursive l (lang) as (
            (select c.language from memex.chunks as c where c.tenant_id = tenant order by c.language limit 1)
            union all
            select (select c.language from memex.chunks as c
                     where c.tenant_id = tenant and c.language operator(pg_catalog.>) l.lang
                     order by c.language limit 1)
              from l where l.lang is not null
        )
        select pg_catalog.array_agg(l.lang) into languages from l where l.lang is not null;
        select pg_catalog.string_agg(
            pg_catalog.format('(c.language = %L::regconfig and c.tsv @@ pg_catalog.websearch_to_tsquery(%L::regconfig, $2))', l, l)
            , ' or ')
          into text_match
          from unnest(coalesce(languages, '{english}'::regconfig[])) as l;
    end if;
    statement := pg_catalog.format($sql$
        with vec as materialized (
            select q.chunk_id, q.d, pg_catalog.row_number() over (order by q.d, q.chunk_id)::integer as rank
              from (
                  select e.chunk_id, (e.embedding::%1$s.vector(%2$s) %3$s $1::%1$s.vector(%2$s)) as d
                    from memex.embeddings as e
                    join memex.chunks as c on c.tenant_id = e.tenant_id and c.id = e.chunk_id
                   where e.space_id = %4$s and e.tenant_id = $4 and %5$s %6$s
                   order by e.embedding::%1$s.vector(%2$s) %3$s $1::%1$s.vector(%2$s)
                   limit $5
              ) as q
        ),
        txt as (
            select q.id as chunk_id, pg_catalog.row_number() over (order by q.r desc, q.id)::integer as rank
              from (
                  select c.id, pg_catalog.ts_rank_cd(c.tsv, pg_catalog.websearch_to_tsquery(c.language, $2)) as r
                    from memex.chunks as c
                   where c.tenant_id = $4 and %7$s and (%8$s) %6$s
                   order by 2 desc, c.id
                   limit $5
              ) as q
        ),
        fused as (
            select coalesce(v.chunk_id, t.chunk_id) as chunk_id, v.d, v.rank as vrank, t.rank as trank
                 , coalesce($6 / ($7 + v.rank), 0) + coalesce($8 / ($7 + t.rank), 0) as rrf
              from vec as v full join txt as t on t.chunk_id = v.chunk_id
        ),
        scored as (
            -- the similarity of text-only candidates is looked up; vector candidates carry theirs
            select f.*, (select %9$s from (select coalesce(f.d, (
                             select (e.embedding::%1$s.vector(%2$s) %3$s $1::%1$s.vector(%2$s))
                               from memex.embeddings as e
                              where e.space_id = %4$s and e.tenant_id = $4 and e.chunk_id = f.chunk_id)) as d) as x) as sim
              from fused as f
        ),
        top as (  -- cut to k before the metadata joins: they cost a few index probes per row
            select s.chunk_id, s.sim, s.vrank, s.trank
                 , case $9 when 'vector' then s.sim when 'text' then 1.0 / ($7 + s.trank) else s.rrf end as score
              from scored as s
             where ($10::double precision is null or s.sim >= $10)
             order by 5 desc, s.chunk_id
             limit $11
        )
        select t.chunk_id, c.source_kind, c.source_id, c.content, t.score
             , t.sim as similarity, t.vrank as vector_rank, t.trank as text_rank
             , pg_catalog.jsonb_strip_nulls(pg_catalog.jsonb_build_object(
                   'ord', c.ord, 'language', c.language::text
                   , 'uri', d.uri, 'title', coalesce(d.title, v.title), 'conversation', v.slug
                   , 'level', u.level, 'index', u.index, 'seq', m.seq, 'role', m.role::text
                   , 'source_metadata', coalesce(d.metadata, v.metadata))) as metadata
          from top as t
          join memex.chunks as c on c.tenant_id = $4 and c.id = t.chunk_id
          left join memex.documents as d on d.tenant_id = c.tenant_id and d.id = c.document_id
          left join memex.conversations as v on v.tenant_id = c.tenant_id and v.id = c.conversation_id
          left join memex.summaries as u on u.tenant_id = c.tenant_id and u.id = c.summary_id
          left join memex.messages as m on m.tenant_id = c.tenant_id and m.id = c.message_id
         order by t.score desc, t.chunk_id
        $sql$
        , vs, sp.dimensions, op, sp.id
        , case when _search.mode = 'text' then 'false' else 'true' end
        , where_filters
        , case when _search.mode = 'vector' then 'false' else 'true' end
        , coalesce(text_match, 'false')
        , sim
    );
    if _search.diversity is null then
        return query execute statement
            using qvec, _search.query, coalesce(_search.filters, '{}'), tenant, depth
                , _search.vector_weight, _search.rrf_k::double precision, _search.text_weight, _search.mode
                , _search.min_similarity, want;
    else
        return query select r.* from memex._mmr(
            statement, qvec, _search.query, coalesce(_search.filters, '{}'), tenant, depth
            , _search.vector_weight, _search.rrf_k, _search.text_weight, _search.mode, _search.min_similarity
            , want, _search.diversity, sp.id
        ) as r;
    end if;
end
$$;

comment on function memex._search(
    text, __vector_schema__.vector, integer, text, jsonb, text, double precision, integer, double precision
    , double precision, double precision
) is 'Internal: the implementation of both memex.rag_search overloads.';
