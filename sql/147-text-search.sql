-- Reading the BM25 text index (sql/145): the text leg of rag_search.

-- memex._text_candidates(query, filters, n, k1, b, also, also_docs): the text leg of
-- rag_search: the best n chunks of the current tenant by BM25 (rank 1..n), then the BM25 score
-- of each chunk of `also` (the vector leg's candidates, with their text versions `also_docs`)
-- that is not among them (rank null). memex_db.text_search.
create or replace function memex._text_candidates(
    query text, filters jsonb, n integer, k1 double precision, b double precision, also uuid[]
    , also_docs bigint[]
)
returns table (chunk_id uuid, score double precision, rank integer)
language plpython3u
stable
parallel unsafe
security invoker
set search_path = pg_catalog, pg_temp
-- Its statements are prepared once per backend; replanning them per call (what the plan cache
-- does when a generic plan looks no cheaper) costs more than running them.
set plan_cache_mode = force_generic_plan
as $py$
@memex_db text_search:candidates(query, filters, n, k1, b, also, also_docs)@
$py$;

comment on function memex._text_candidates(text, jsonb, integer, double precision, double precision, uuid[], bigint[]) is
'Internal: BM25 top-n of the current tenant''s chunks for a query (rank 1..n), and the scores of the given chunks.';
