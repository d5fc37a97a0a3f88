-- create_endpoint gained allow_insecure (plain http to another machine is refused without it):
-- the old signature goes (sql/ creates the new one).
set local search_path = pg_catalog, pg_temp;

drop function if exists memex.create_endpoint(text, text, text, jsonb);
