-- memex.version(): the version of the installed memex SQL. The PL/Python wrappers refuse to run
-- a memex_db package of another version.
create or replace function memex.version()
returns text
language sql
immutable
parallel safe
security invoker
set search_path = pg_catalog, pg_temp
as $$ select '@memex_version@'::text $$;

comment on function memex.version() is
'Version of the installed memex SQL objects.';
