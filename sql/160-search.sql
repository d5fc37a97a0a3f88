-- Search: memex._search, the one implementation behind both rag_search overloads (at the end).
-- SECURITY INVOKER: RLS applies, and every statement also filters on the current tenant. With
-- no tenant set the result is empty, with a NOTICE saying why (nothing leaks, no model call).
--
-- The steps, each over a few hundred candidates at most (docs/search.md, "How a search runs"):
--   1. vector leg: the space's own partial HNSW index (the statement is built per space, with
--      its id and dimensions as literals, so the planner matches the index; every user value
--      travels as a parameter);
--   2. text leg: BM25 over the tenant's text index (memex._text_candidates, sql/147), which
--      also scores the vector leg's candidates, so fusion sees both scores of every candidate;
--   3. fusion (a convex combination of the similarity and the BM25 score scaled by the best
--      one, or reciprocal rank fusion), min_similarity, the per-document cap, the cut to the
--      pool;
--   4. the caller's reranker on the pool (rerank => ...), then diversity (MMR); these steps'
--      helpers are in sql/158-search-steps.sql;
--   5. metadata joins for the final k rows only.

-- memex._search(...): the implementation of both rag_search overloads.
create or replace function memex._search(
    query text, query_embedding __vector_schema__.vector, k integer, mode text, filters jsonb, space text
    , min_similarity double precision, rrf_k integer, vector_weight double precision
    , text_weight double precision, diversity double precision, fusion text, max_per_document integer
    , rerank regprocedure, rerank_depth integer, bm25_k1 double precision, bm25_b double precision
)
returns setof memex.search_result
language plpgsql
stable
parallel unsafe
security invoker
set search_path = pg_catalog, pg_temp
-- pgvector >= 0.8: keep scanning the HNSW graph until the filters (and RLS) leave enough rows.
set "hnsw.iterative_scan" = 'relaxed_order'
as $$
declare
    tenant uuid := memex.current_tenant();
    sp memex.spaces;
    vs constant text := $vs$__vector_schema__$vs$;  -- pgvector's schema, quoted, rendered at install
    where_filters text;
    want integer := _search.k;
    pool integer;
    depth_v integer;
    depth_t integer;
    per_document boolean := _search.max_per_document is not null or _search.diversity is not null;
    qvec __vector_schema__.vector := _search.query_embedding;
    v_ids uuid[];
    v_dist double precision[];
    v_docs bigint[];
    m_ids uuid[];
    m_dist double precision[];
    distance_op text;
    t_ids uuid[];
    t_scores double precision[];
    t_ranks integer[];
    c_ids uuid[];
    c_scores double precision[];
    c_sims double precision[];
    c_vranks integer[];
    c_tranks integer[];
    c_docs uuid[];
    candidates jsonb;
    unembedded integer;
begin
    -- Every argument is checked before any work (docs/search.md, "Limits and bad input").
    if _search.mode is null or _search.mode not in ('hybrid', 'vector', 'text') then
        raise exception 'unknown search mode %', coalesce(pg_catalog.quote_literal(_search.mode), 'null')
            using errcode = '22023', hint = 'hybrid, vector or text';
    end if;
    if qvec is null and (_search.query is null or pg_catalog.btrim(_search.query) = '') then
        raise exception 'the search query is empty' using errcode = '22023';
    end if;
    if pg_catalog.length(_search.query) > 32768 then
        raise exception 'the search query has % characters; the limit is 32768', pg_catalog.length(_search.query)
            using errcode = '54000', hint = 'search with the passage''s key sentences, or embed it and pass the vector';
    end if;
    if qvec is not null and _search.mode <> 'vector' then
        raise exception 'a query embedding can only be searched in mode vector' using errcode = '22023';
    end if;
    if _search.k is null or _search.k < 1 or _search.k > 1000 then
        raise exception 'k must be between 1 and 1000, not %', coalesce(_search.k::text, 'null')
            using errcode = '22023', hint = 'rag_search retrieves; to export a tenant''s chunks, read memex.chunks';
    end if;
    if _search.rrf_k is null or _search.rrf_k < 1 then
        raise exception 'rrf_k must be at least 1' using errcode = '22023';
    end if;
    if _search.fusion is null or _search.fusion not in ('convex', 'rrf') then
        raise exception 'unknown fusion %', coalesce(pg_catalog.quote_literal(_search.fusion), 'null')
            using errcode = '22023', hint = 'convex (normalised scores, weighted) or rrf (reciprocal ranks)';
    end if;
    if _search.vector_weight is null or _search.text_weight is null or _search.vector_weight < 0
       or _search.text_weight < 0 or _search.vector_weight + _search.text_weight = 0 then
        raise exception 'vector_weight and text_weight must be >= 0 and not both 0' using errcode = '22023';
    end if;
    if _search.diversity is not null and (_search.diversity < 0 or _search.diversity > 1) then
        raise exception 'diversity must be between 0 and 1, not %', _search.diversity using errcode = '22023';
    end if;
    if _search.diversity is not null and _search.k > 100 then
        raise exception 'diversity works on k <= 100, not %', _search.k using errcode = '22023';
    end if;
    if _search.max_per_document is not null and _search.max_per_document < 1 then
        raise exception 'max_per_document must be at least 1, not %', _search.max_per_document using errcode = '22023';
    end if;
    if _search.rerank_depth is null or _search.rerank_depth < 1 or _search.rerank_depth > 1000 then
        raise exception 'rerank_depth must be between 1 and 1000, not %', coalesce(_search.rerank_depth::text, 'null')
            using errcode = '22023';
    end if;
    if _search.bm25_k1 is not null and (_search.bm25_k1 < 0 or _search.bm25_k1 > 10 or _search.bm25_k1 = 'NaN') then
        raise exception 'bm25_k1 must be between 0 and 10, not %', _search.bm25_k1 using errcode = '22023';
    end if;
    if _search.bm25_b is not null and (_search.bm25_b < 0 or _search.bm25_b > 1 or _search.bm25_b = 'NaN') then
        raise exception 'bm25_b must be between 0 and 1, not %', _search.bm25_b using errcode = '22023';
    end if;
    if _search.rerank is not null then
        perform memex._check_reranker(_search.rerank);
    end if;
    where_filters := memex._search_filters(_search.filters);
    sp := memex._space(_search.space);
    if qvec is not null and __vector_schema__.vector_dims(qvec) <> sp.dimensions then
        raise exception 'the query embedding has % dimensions, space % has %'
            , __vector_schema__.vector_dims(qvec), sp.name, sp.dimensions
            using errcode = '22000', hint = 'embed the query with memex.embed(text, space)';
    end if;
    if tenant is null then
        raise notice 'no tenant is set: the search returns no rows'
            using hint = 'in psql (autocommit) call memex.set_tenant(''name'', false) first; in a transaction, '
                || 'memex.set_tenant(''name'') inside it';
        return;
    end if;

    -- Candidate depths. The pool is what survives fusion: k, or more for a reranker, for
    -- diversity and for the per-document cap to choose from. Vector candidates are fetched
    -- deeper than the pool and re-sorted by exact distance: a relaxed-order HNSW scan can
    -- return a true top row a few places late (pgvector's advice).
    pool := case when _search.rerank is not null then greatest(_search.rerank_depth, want)
                 when per_document then greatest(want * 4, 40)
                 else want end;
    depth_v := greatest(pool * 2, 40);
    depth_t := case when _search.mode = 'text' then pool else depth_v end;
    -- Text mode never calls the model (similarity is null) unless min_similarity needs it.
    if qvec is null and (_search.mode <> 'text' or _search.min_similarity is not null) then
        qvec := memex.embed(_search.query, sp.name);
    end if;
    distance_op := pg_catalog.format('operator(%s.%s)', vs
        , case sp.distance when 'cosine' then '<=>' when 'l2' then '<->' else '<#>' end);

    if _search.mode <> 'text' then
        execute pg_catalog.format($sql$
            select pg_catalog.array_agg(q.chunk_id order by q.d, q.chunk_id), pg_catalog.array_agg(q.d order by q.d, q.chunk_id)
                 , pg_catalog.array_agg(q.text_doc order by q.d, q.chunk_id)
              from (
                  select e.chunk_id, (e.embedding::%1$s.vector(%2$s) %3$s $1::%1$s.vector(%2$s)) as d, c.text_doc
                    from memex.embeddings as e
                    join memex.chunks as c on c.tenant_id = e.tenant_id and c.id = e.chunk_id
                   where e.space_id = %4$s and e.tenant_id = $2 %5$s
                   order by e.embedding::%1$s.vector(%2$s) %3$s $1::%1$s.vector(%2$s)
                   limit $4
              ) as q
            $sql$
            , vs, sp.dimensions, distance_op, sp.id, where_filters)
        into v_ids, v_dist, v_docs
        using qvec, tenant, coalesce(_search.filters, '{}'), depth_v;
        if _search.mode = 'vector' then
            v_ids := v_ids[1:depth_v / 2];  -- the re-sorted best half: the pool, or 40
            v_dist := v_dist[1:depth_v / 2];
        end if;
    end if;
    if _search.mode <> 'vector' then
        -- In convex fusion the text leg also scores the vector leg's candidates (by their text
        -- versions: no chunk row is read for them).
        select
            pg_catalog.array_agg(t.chunk_id order by t.o), pg_catalog.array_agg(t.score order by t.o)
            , pg_catalog.array_agg(t.rank order by t.o)
          into t_ids, t_scores, t_ranks
          from memex._text_candidates(
              _search.query, coalesce(_search.filters, '{}'), depth_t, _search.bm25_k1, _search.bm25_b
              , case when _search.mode = 'hybrid' and _search.fusion = 'convex' then v_ids end
              , case when _search.mode = 'hybrid' and _search.fusion = 'convex' then v_docs end
          ) with ordinality as t (chunk_id, score, rank, o);
        -- The distances of text candidates the vector leg did not bring (no index needed: a
        -- static statement, planned once per session).
        if qvec is not null and t_ids is not null then
            select
                pg_catalog.array_agg(e.chunk_id)
                , pg_catalog.array_agg(case sp.distance
                    when 'cosine' then e.embedding operator(__vector_schema__.<=>) qvec
                    when 'l2' then e.embedding operator(__vector_schema__.<->) qvec
                    else e.embedding operator(__vector_schema__.<#>) qvec end)
              into m_ids, m_dist
              from memex.embeddings as e
             where e.space_id = sp.id and e.tenant_id = tenant and e.chunk_id = any(t_ids)
               and e.chunk_id <> all(coalesce(v_ids, '{}'));
        end if;
    end if;

    -- Fusion over the union of both legs' candidates, then min_similarity, the per-document
    -- cap, and the cut to the pool.
    with v as (
        select x.chunk_id, x.d, x.r::integer as rank
          from unnest(v_ids, v_dist) with ordinality as x (chunk_id, d, r)
    ),
    t as (
        select x.chunk_id, x.score, x.rank from unnest(t_ids, t_scores, t_ranks) as x (chunk_id, score, rank)
    ),
    m as (
        select x.chunk_id, x.d from unnest(m_ids, m_dist) as x (chunk_id, d)
    ),
    u as (
        select
            coalesce(v.chunk_id, t.chunk_id) as chunk_id, v.rank as vrank, t.rank as trank
            , coalesce(t.score, 0) as bm25
            , case when sp.distance = 'cosine' then 1 - coalesce(v.d, m.d) else -coalesce(v.d, m.d) end as sim
          from v full join t on t.chunk_id = v.chunk_id
          left join m on v.chunk_id is null and m.chunk_id = t.chunk_id
    ),
    n as (
        select
            u.*, min(u.sim) over () as sim_lo, max(u.sim) over () as sim_hi
            , max(u.bm25) over () as bm25_hi
          from u
    ),
    f as (
        select
            n.chunk_id, n.sim, n.vrank, n.trank
            , case _search.mode
                when 'vector' then n.sim
                when 'text' then n.bm25
                else case _search.fusion
                    when 'rrf' then coalesce(_search.vector_weight / (_search.rrf_k + n.vrank), 0)
                        + coalesce(_search.text_weight / (_search.rrf_k + n.trank), 0)
                    -- convex: the cosine similarity as it is (its range is known), BM25 over
                    -- the best BM25 of the candidates; other distances min-max over them
                    else _search.vector_weight * coalesce(case when sp.distance = 'cosine' then n.sim
                                                               when n.sim_hi > n.sim_lo then (n.sim - n.sim_lo) / (n.sim_hi - n.sim_lo)
                                                               else 1 end, 0)
                        + _search.text_weight * coalesce(n.bm25 / nullif(n.bm25_hi, 0), 0)
                end
            end as score
            , case when per_document then (select coalesce(c.document_id, c.conversation_id, c.id) from memex.chunks as c
                                            where c.tenant_id = tenant and c.id = n.chunk_id) end as doc
          from n
         where _search.min_similarity is null or n.sim >= _search.min_similarity
    ),
    capped as (
        select f.*, pg_catalog.row_number() over (partition by f.doc order by f.score desc, f.chunk_id) as nth
          from f
    ),
    kept as (
        select c.* from capped as c
         where _search.max_per_document is null or c.nth <= _search.max_per_document
         order by c.score desc, c.chunk_id
         limit pool
    )
    select
        pg_catalog.array_agg(x.chunk_id order by x.score desc, x.chunk_id)
        , pg_catalog.array_agg(x.score order by x.score desc, x.chunk_id)
        , pg_catalog.array_agg(x.sim order by x.score desc, x.chunk_id)
        , pg_catalog.array_agg(x.vrank order by x.score desc, x.chunk_id)
        , pg_catalog.array_agg(x.trank order by x.score desc, x.chunk_id)
        , pg_catalog.array_agg(x.doc order by x.score desc, x.chunk_id)
      into c_ids, c_scores, c_sims, c_vranks, c_tranks, c_docs
      from kept as x;

    if c_ids is not null and _search.rerank is not null then
        -- The caller's reranker sees the pool (chunk id, content, score, similarity, source) and
        -- returns its own scores; candidates it does not return are dropped.
        select pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(
                   'chunk_id', x.chunk_id, 'content', c.content, 'score', x.score, 'similarity', x.sim
                   , 'source_kind', c.source_kind, 'source_id', c.source_id) order by x.o)
          into candidates
          from unnest(c_ids, c_scores, c_sims) with ordinality as x (chunk_id, score, sim, o)
          join memex.chunks as c on c.tenant_id = tenant and c.id = x.chunk_id;
        execute pg_catalog.format($sql$
            select
                pg_catalog.array_agg(x.chunk_id order by r.score desc nulls last, x.chunk_id)
                , pg_catalog.array_agg(r.score order by r.score desc nulls last, x.chunk_id)
                , pg_catalog.array_agg(x.sim order by r.score desc nulls last, x.chunk_id)
                , pg_catalog.array_agg(x.vrank order by r.score desc nulls last, x.chunk_id)
                , pg_catalog.array_agg(x.trank order by r.score desc nulls last, x.chunk_id)
                , pg_catalog.array_agg(x.doc order by r.score desc nulls last, x.chunk_id)
              from unnest($3, $4, $5, $6, $7) as x (chunk_id, sim, vrank, trank, doc)
              join (select distinct on (y.chunk_id) y.chunk_id, y.score from %s($1, $2) as y (chunk_id, score)
                     order by y.chunk_id, y.score desc) as r on r.chunk_id = x.chunk_id
            $sql$, _search.rerank::regproc)
        into c_ids, c_scores, c_sims, c_vranks, c_tranks, c_docs
        using _search.query, candidates, c_ids, c_sims, c_vranks, c_tranks, c_docs;
    end if;

    if c_ids is not null and _search.diversity is not null then
        select
            pg_catalog.array_agg(c_ids[m.pos] order by m.o), pg_catalog.array_agg(c_scores[m.pos] order by m.o)
            , pg_catalog.array_agg(c_sims[m.pos] order by m.o), pg_catalog.array_agg(c_vranks[m.pos] order by m.o)
            , pg_catalog.array_agg(c_tranks[m.pos] order by m.o)
          into c_ids, c_scores, c_sims, c_vranks, c_tranks
          from memex._mmr(c_ids, c_scores, c_docs, sp.id, want, _search.diversity) with ordinality as m (pos, o);
    end if;

    -- Chunks without a vector yet (pending embedding) are found by the text leg only: say so,
    -- for the final rows (hybrid), or when a vector search comes back short (docs/search.md).
    if _search.mode = 'hybrid' and c_ids is not null then
        unembedded := (select pg_catalog.count(*) from unnest(c_sims[1:want]) as x (sim) where x.sim is null);
        if unembedded > 0 then
            raise notice 'memex.rag_search: % of % results without a vector in space % yet (pending embedding): ranked by their text alone'
                , unembedded, least(pg_catalog.cardinality(c_ids), want), sp.name
                using hint = 'embed pending chunks: CALL memex.embed_pending() (memex embed), a running memex worker, or SET memex.embed_on_write = on for new writes';
        end if;
    elsif _search.mode = 'vector' and coalesce(pg_catalog.cardinality(c_ids), 0) < want
          and exists (select from memex._pending_chunks(sp.id, n => 1)) then
        raise notice 'memex.rag_search: this tenant has chunks with no vector in space % yet: a vector search cannot find them', sp.name
            using hint = 'embed pending chunks: CALL memex.embed_pending() (memex embed), a running memex worker, or SET memex.embed_on_write = on for new writes';
    end if;

    -- The final rows, in order, with their sources' details (joined for these k rows only).
    return query
        select
            c.id, c.source_kind, c.source_id, c.content, x.score, x.sim, x.vrank, x.trank
            , pg_catalog.jsonb_strip_nulls(pg_catalog.jsonb_build_object(
                'ord', c.ord, 'language', c.language::text, 'domain', c.domain
                , 'uri', d.uri, 'title', coalesce(d.title, v.title), 'conversation', v.slug
                , 'level', u.level, 'index', u.index, 'seq', m.seq, 'role', m.role::text, 'ts', m.ts
                , 'date', v.created_date
                , 'source_metadata', coalesce(d.metadata, v.metadata)))
          from unnest(c_ids, c_scores, c_sims, c_vranks, c_tranks)
               with ordinality as x (chunk_id, score, sim, vrank, trank, o)
          join memex.chunks as c on c.tenant_id = tenant and c.id = x.chunk_id
          left join memex.documents as d on d.tenant_id = c.tenant_id and d.id = c.document_id
          left join memex.conversations as v on v.tenant_id = c.tenant_id and v.id = c.conversation_id
          left join memex.summaries as u on u.tenant_id = c.tenant_id and u.id = c.summary_id
          left join memex.messages as m on m.tenant_id = c.tenant_id and m.id = c.message_id
         where x.o <= want
         order by x.o;
end
$$;

comment on function memex._search(
    text, __vector_schema__.vector, integer, text, jsonb, text, double precision, integer, double precision
    , double precision, double precision, text, integer, regprocedure, integer, double precision, double precision
) is 'Internal: the implementation of both memex.rag_search overloads.';

-- The public rag_search overloads: memex._search above is their one implementation.

-- memex.rag_search(query, ...): hybrid (fusion of vector and BM25 text search), vector or text
-- search over the current tenant's chunks, in the active text space unless a space is named.
-- domain (docs/embedding.md, "Domains"): 'text' or 'code' searches that domain's chunks, 'code'
-- in the active code space (or, with none, in the text space, which embeds every chunk, with a
-- NOTICE); null or 'all' searches everything, and when a code space is active fuses the text
-- space's search with the code space's over the code chunks (reciprocal ranks, rrf_k).
create or replace function memex.rag_search(
    query text, k integer default 8, mode text default 'hybrid', filters jsonb default '{}'
    , space text default null, min_similarity double precision default null, rrf_k integer default 60
    , vector_weight double precision default 1.0, text_weight double precision default 1.0
    , diversity double precision default null, fusion text default 'convex'
    , max_per_document integer default null, rerank regprocedure default null
    , rerank_depth integer default 50, bm25_k1 double precision default null
    , bm25_b double precision default null, domain text default null
)
returns setof memex.search_result
language plpgsql
stable
parallel unsafe
security invoker
set search_path = pg_catalog, pg_temp
as $$
declare
    wanted text := coalesce(rag_search.domain, 'all');
    f jsonb := rag_search.filters;
    code_space text;
begin
    if wanted not in ('text', 'code', 'all') then
        raise exception 'unknown domain %', pg_catalog.quote_literal(wanted)
            using errcode = '22023', hint = 'text, code or all (null: all)';
    end if;
    -- A typo in the filters fails here, one function deep: psql prints one CONTEXT line per
    -- function an error passes through (_search checks them again, in its own right).
    perform memex._search_filters(f);
    if wanted <> 'all' then
        if pg_catalog.jsonb_typeof(f) = 'object' then
            f := f || pg_catalog.jsonb_build_object('domain', wanted);
        end if;
    end if;
    -- A named space or a text-only search needs no choice of space.
    if rag_search.space is null and rag_search.mode is distinct from 'text' and wanted <> 'text' then
        select s.name into code_space from memex.spaces as s where s.domain = 'code' and s.status = 'active';
        if code_space is null and wanted = 'code' then
            raise notice 'no active space for domain code: its chunks are searched in the active text space'
                using hint = 'create and activate a space with domain => ''code'' for a code model';
        end if;
    end if;
    if code_space is null or wanted = 'code' then
        return query select * from memex._search(
            query, null, k, mode, f, coalesce(rag_search.space, code_space), min_similarity, rrf_k, vector_weight
            , text_weight, diversity, fusion, max_per_document, rerank, rerank_depth, bm25_k1, bm25_b
        );
        return;
    end if;
    -- All domains with a code space active: both searches, fused by their ranks.
    return query
        with t as (
            select r.*, r.o::integer as rank from memex._search(
                query, null, k, mode, f, null, min_similarity, rrf_k, vector_weight, text_weight, diversity
                , fusion, max_per_document, rerank, rerank_depth, bm25_k1, bm25_b
            ) with ordinality as r (chunk_id, source_kind, source_id, content, score, similarity, vector_rank, text_rank, metadata, o)
        ),
        c as (
            select r.*, r.o::integer as rank from memex._search(
                query, null, k, mode, coalesce(f, '{}') || '{"domain": "code"}', code_space, min_similarity, rrf_k
                , vector_weight, text_weight, diversity, fusion, max_per_document, rerank, rerank_depth
                , bm25_k1, bm25_b
            ) with ordinality as r (chunk_id, source_kind, source_id, content, score, similarity, vector_rank, text_rank, metadata, o)
        ),
        fused as (
            select
                coalesce(t.chunk_id, c.chunk_id) as chunk_id
                , coalesce(1.0 / (rrf_k + t.rank), 0) + coalesce(1.0 / (rrf_k + c.rank), 0) as fused_score
                , least(t.rank, c.rank) as best_rank
                , t.rank as text_space_rank, c.rank as code_space_rank
            from t full join c on c.chunk_id = t.chunk_id
        )
        select
            x.chunk_id, coalesce(t.source_kind, c.source_kind), coalesce(t.source_id, c.source_id)
            , coalesce(t.content, c.content), x.fused_score::double precision
            , coalesce(c.similarity, t.similarity), coalesce(c.vector_rank, t.vector_rank)
            , coalesce(t.text_rank, c.text_rank)
            , coalesce(t.metadata, c.metadata) || pg_catalog.jsonb_strip_nulls(pg_catalog.jsonb_build_object(
                'text_space_rank', x.text_space_rank, 'code_space_rank', x.code_space_rank))
          from fused as x
          left join t on t.chunk_id = x.chunk_id
          left join c on c.chunk_id = x.chunk_id
         order by x.fused_score desc, x.best_rank, x.chunk_id
         limit k;
end
$$;

comment on function memex.rag_search(
    text, integer, text, jsonb, text, double precision, integer, double precision, double precision
    , double precision, text, integer, regprocedure, integer, double precision, double precision, text
) is 'Searches the current tenant''s chunks: hybrid (vector + BM25, fused), vector or text, in one domain or all; see docs/search.md.';

-- memex.rag_search(query_embedding, ...): the same with a precomputed query vector (mode vector).
create or replace function memex.rag_search(
    query_embedding __vector_schema__.vector, k integer default 8, mode text default 'vector'
    , filters jsonb default '{}', space text default null, min_similarity double precision default null
    , rrf_k integer default 60, vector_weight double precision default 1.0
    , text_weight double precision default 1.0, diversity double precision default null
    , fusion text default 'convex', max_per_document integer default null
)
returns setof memex.search_result
language sql
stable
parallel unsafe
security invoker
set search_path = pg_catalog, pg_temp
as $$
    select * from memex._search(
        null, query_embedding, k, mode, filters, space, min_similarity, rrf_k, vector_weight, text_weight
        , diversity, fusion, max_per_document, null, 50, null, null
    )
$$;

comment on function memex.rag_search(
    __vector_schema__.vector, integer, text, jsonb, text, double precision, integer, double precision
    , double precision, double precision, text, integer
) is 'Vector search with a precomputed query embedding (its dimensions must be the space''s).';
