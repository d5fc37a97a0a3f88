-- Reading the BM25 text index (sql/145): the text leg of rag_search.

-- memex._text_candidates(tenant, query, filters, where_filters, n, k1, b, vector_ids,
-- vector_docs): the text leg of rag_search: the tenant's best n chunks by BM25 (rank 1..n),
-- then the BM25 score of each of the vector leg's candidates `vector_ids` (with their text
-- versions `vector_docs`) that is not among them (rank null). where_filters is
-- memex._search_filters(filters), compiled once by memex._search. memex_db.text_search.
create or replace function memex._text_candidates(
    tenant uuid, query text, filters jsonb, where_filters text, n integer, k1 double precision
    , b double precision, vector_ids uuid[], vector_docs bigint[]
)
returns table (chunk_id uuid, score double precision, rank integer)
language plpython3u
stable
parallel unsafe
security invoker
set search_path = pg_catalog, pg_temp
-- Its statements are prepared once per backend; replanning them per call (what the plan cache
-- does when a generic plan looks no cheaper) costs more than running them. Where Citus is
-- loaded, which cannot plan generic plans over distributed tables, the function asks for
-- custom ones for its own call (memex_db.text_search, docs/scale.md).
set plan_cache_mode = force_generic_plan
as $py$
@memex_db text_search:candidates(tenant, query, filters, where_filters, n, k1, b, vector_ids, vector_docs)@
$py$;

comment on function memex._text_candidates(
    uuid, text, jsonb, text, integer, double precision, double precision, uuid[], bigint[]
) is 'Internal: BM25 top-n of a tenant''s chunks for a query (rank 1..n), and the scores of the given chunks.';
