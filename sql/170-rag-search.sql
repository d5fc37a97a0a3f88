-- The public rag_search overloads (the implementation is memex._search, sql/160).

-- memex.rag_search(query, ...): hybrid (fusion of vector and BM25 text search), vector or text
-- search over the current tenant's chunks, in the active text space unless a space is named.
create or replace function memex.rag_search(
    query text, k integer default 8, mode text default 'hybrid', filters jsonb default '{}'
    , space text default null, min_similarity double precision default null, rrf_k integer default 60
    , vector_weight double precision default 1.0, text_weight double precision default 1.0
    , diversity double precision default null, fusion text default 'convex'
    , max_per_document integer default null, rerank regprocedure default null
    , rerank_depth integer default 50, bm25_k1 double precision default null
    , bm25_b double precision default null
)
returns setof memex.search_result
language sql
stable
parallel unsafe
security invoker
set search_path = pg_catalog, pg_temp
as $$
    select * from memex._search(
        query, null, k, mode, filters, space, min_similarity, rrf_k, vector_weight, text_weight, diversity
        , fusion, max_per_document, rerank, rerank_depth, bm25_k1, bm25_b
    )
$$;

comment on function memex.rag_search(
    text, integer, text, jsonb, text, double precision, integer, double precision, double precision
    , double precision, text, integer, regprocedure, integer, double precision, double precision
) is 'Searches the current tenant''s chunks: hybrid (vector + BM25, fused), vector or text; see docs/search.md.';

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
