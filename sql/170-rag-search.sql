-- Diversity (maximal marginal relevance) and the public rag_search overloads.

-- memex._mmr(...): maximal marginal relevance over the top candidates of a search statement:
-- repeatedly take the candidate with the best (1 - diversity) * relevance - diversity * (its
-- highest cosine similarity to those already taken). Relevance is the score scaled to [0, 1].
-- O(k x candidates) vector comparisons: meant for k up to a few dozen.
create or replace function memex._mmr(
    statement text, qvec __vector_schema__.vector, query text, filters jsonb, tenant uuid, depth integer
    , vector_weight double precision, rrf_k integer, text_weight double precision, mode text
    , min_similarity double precision, want integer, diversity double precision, space_id integer
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
as $$
declare
    r record;
    rows_found jsonb := '[]';  -- a record[] is not allowed in PL/pgSQL
    vectors __vector_schema__.vector[];
    relevance double precision[];
    taken boolean[];
    chosen integer[] := '{}';
    lo double precision;
    hi double precision;
    best integer;
    best_value double precision;
    value double precision;
    penalty double precision;
    n integer;
    i integer;
    j integer;
begin
    for r in execute statement
        using qvec, query, filters, tenant, depth, vector_weight, rrf_k::double precision, text_weight, mode
            , min_similarity, depth
    loop
        rows_found := rows_found || pg_catalog.jsonb_build_array(pg_catalog.to_jsonb(r));
    end loop;
    n := pg_catalog.jsonb_array_length(rows_found);
    if n = 0 then
        return;
    end if;
    select pg_catalog.array_agg(e.embedding order by x.n) into vectors
      from pg_catalog.jsonb_array_elements(rows_found) with ordinality as x (r, n)
      left join memex.embeddings as e
        on e.space_id = _mmr.space_id and e.tenant_id = _mmr.tenant and e.chunk_id = (x.r ->> 'chunk_id')::uuid;
    select min((x.r ->> 'score')::double precision), max((x.r ->> 'score')::double precision) into lo, hi
      from pg_catalog.jsonb_array_elements(rows_found) as x (r);
    relevance := array(
        select case when hi > lo then ((x.r ->> 'score')::double precision - lo) / (hi - lo) else 1 end
          from pg_catalog.jsonb_array_elements(rows_found) with ordinality as x (r, n)
         order by x.n
    );
    taken := array_fill(false, array[n]);
    while pg_catalog.cardinality(chosen) < least(want, n) loop
        best := null;
        for i in 1..n loop
            continue when taken[i];
            penalty := 0;
            foreach j in array chosen loop
                if vectors[i] is not null and vectors[j] is not null then
                    penalty := greatest(penalty, 1 - __vector_schema__.cosine_distance(vectors[i], vectors[j]));
                end if;
            end loop;
            value := (1 - diversity) * relevance[i] - diversity * penalty;
            if best is null or value > best_value then
                best := i;
                best_value := value;
            end if;
        end loop;
        taken[best] := true;
        chosen := chosen || best;
    end loop;
    return query
        select x.chunk_id, x.source_kind, x.source_id, x.content, x.score, x.similarity, x.vector_rank, x.text_rank, x.metadata
          from unnest(chosen) with ordinality as o (i, pos)
          cross join lateral pg_catalog.jsonb_to_record(rows_found -> (o.i - 1)) as x (
              chunk_id uuid, source_kind text, source_id uuid, content text, score double precision
              , similarity double precision, vector_rank integer, text_rank integer, metadata jsonb
          )
         order by o.pos;
end
$$;

comment on function memex._mmr(
    text, __vector_schema__.vector, text, jsonb, uuid, integer, double precision, integer, double precision
    , text, double precision, integer, double precision, integer
) is 'Internal: maximal-marginal-relevance re-ordering of a search''s top candidates (rag_search diversity).';

-- memex.rag_search(query, ...): hybrid (RRF of vector and full text), vector or text search over
-- the current tenant's chunks, in the active text space unless a space is named.
create or replace function memex.rag_search(
    query text, k integer default 8, mode text default 'hybrid', filters jsonb default '{}'
    , space text default null, min_similarity double precision default null, rrf_k integer default 60
    , vector_weight double precision default 1.0, text_weight double precision default 1.0
    , diversity double precision default null
)
returns table (
    chunk_id uuid, source_kind text, source_id uuid, content text, score double precision
    , similarity double precision, vector_rank integer, text_rank integer, metadata jsonb
)
language sql
stable
parallel unsafe
security invoker
set search_path = pg_catalog, pg_temp
as $$
    select * from memex._search(
        query, null, k, mode, filters, space, min_similarity, rrf_k, vector_weight, text_weight, diversity
    )
$$;

comment on function memex.rag_search(
    text, integer, text, jsonb, text, double precision, integer, double precision, double precision, double precision
) is 'Searches the current tenant''s chunks: hybrid (RRF of vector and full text), vector or text; see docs/search.md.';

-- memex.rag_search(query_embedding, ...): the same with a precomputed query vector (mode vector).
create or replace function memex.rag_search(
    query_embedding __vector_schema__.vector, k integer default 8, mode text default 'vector'
    , filters jsonb default '{}', space text default null, min_similarity double precision default null
    , rrf_k integer default 60, vector_weight double precision default 1.0
    , text_weight double precision default 1.0, diversity double precision default null
)
returns table (
    chunk_id uuid, source_kind text, source_id uuid, content text, score double precision
    , similarity double precision, vector_rank integer, text_rank integer, metadata jsonb
)
language sql
stable
parallel unsafe
security invoker
set search_path = pg_catalog, pg_temp
as $$
    select * from memex._search(
        null, query_embedding, k, mode, filters, space, min_similarity, rrf_k, vector_weight, text_weight
        , diversity
    )
$$;

comment on function memex.rag_search(
    __vector_schema__.vector, integer, text, jsonb, text, double precision, integer, double precision
    , double precision, double precision
) is 'Vector search with a precomputed query embedding (its dimensions must be the space''s).';
