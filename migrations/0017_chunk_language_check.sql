-- chunks.language must name one of PostgreSQL 15's built-in text-search configurations. It is
-- free text since 0013, and the application role writes chunks: a chunk whose language named a
-- configuration of the writer's own session (pg_temp.x) could not have its stored tsvector
-- recomputed anywhere else, and pg_restore refused the whole table: every tenant's chunks lost
-- from a backup. The tsvector is now computed under the name qualified with pg_catalog, and the
-- name is checked against the list. Rows that fail the list are set to 'simple' first.
set local search_path = pg_catalog, pg_temp;

create or replace function memex._tsvector(config text, body text)
returns tsvector
language sql
immutable
strict
parallel safe
security invoker
set search_path = pg_catalog, pg_temp
as $$ select pg_catalog.to_tsvector(('pg_catalog.' || pg_catalog.quote_ident(config))::pg_catalog.regconfig, body) $$;

alter table memex.chunks add constraint chunks_language_builtin check (
    language in (
        'arabic', 'armenian', 'basque', 'catalan', 'danish', 'dutch', 'english', 'finnish', 'french'
        , 'german', 'greek', 'hindi', 'hungarian', 'indonesian', 'irish', 'italian', 'lithuanian'
        , 'nepali', 'norwegian', 'portuguese', 'romanian', 'russian', 'serbian', 'simple', 'spanish'
        , 'swedish', 'tamil', 'turkish', 'yiddish'
    )
) not valid;

update memex.chunks as c set language = 'simple'
where not (c.language in (
    'arabic', 'armenian', 'basque', 'catalan', 'danish', 'dutch', 'english', 'finnish', 'french'
    , 'german', 'greek', 'hindi', 'hungarian', 'indonesian', 'irish', 'italian', 'lithuanian'
    , 'nepali', 'norwegian', 'portuguese', 'romanian', 'russian', 'serbian', 'simple', 'spanish'
    , 'swedish', 'tamil', 'turkish', 'yiddish'
));

alter table memex.chunks validate constraint chunks_language_builtin;
