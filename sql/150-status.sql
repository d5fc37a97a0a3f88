-- memex.status() comes after the spaces (it reports them with their pending counts).

-- memex.status(): versions and this backend's state in one JSON document.
create or replace function memex.status()
returns jsonb
language sql
volatile
parallel unsafe
security invoker
set search_path = pg_catalog, pg_temp
as $$
    select pg_catalog.jsonb_build_object(
        'memex_version', memex.version()
        , 'postgres_version', pg_catalog.current_setting('server_version')
        , 'vector_version', (select e.extversion from pg_catalog.pg_extension as e where e.extname = 'vector')
        , 'installed_at', (select max(i.installed_at) from memex.installs as i)
        , 'spaces', (
            select coalesce(pg_catalog.jsonb_agg(pg_catalog.to_jsonb(s.*) order by s.name), '[]')
              from memex.space_status as s
        )
        , 'backend', memex._backend_status()
    )
$$;

comment on function memex.status() is
'memex, PostgreSQL and pgvector versions, spaces with their pending counts, and this backend''s loaded models and memory.';
