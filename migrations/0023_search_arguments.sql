-- memex._text_candidates takes the tenant and the compiled filters from memex._search (it
-- compiled them a second time, in Python): the old signature goes, sql/ creates the new one.
set local search_path = pg_catalog, pg_temp;

drop function if exists memex._text_candidates(
    text, jsonb, integer, double precision, double precision, uuid[], bigint[]
);
