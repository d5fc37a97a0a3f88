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

-- memex.tenant_status(): what each tenant holds, one row per tenant: the current tenant's, or,
-- with no tenant set, every tenant the caller may list (all for memex_admin, none for
-- memex_app). Pending and failed count the active text space. Exact counts: each reads the tenant's rows
-- through their tenant indexes (an admin's view, not a hot path).
create or replace function memex.tenant_status()
returns table (
    tenant text, tenant_id uuid, created_at timestamptz, documents bigint, conversations bigint
    , messages bigint, summaries bigint, chunks bigint, pending bigint, failed bigint
)
language plpgsql
volatile
parallel unsafe
security invoker
set search_path = pg_catalog, pg_temp
as $$
declare
    saved text := pg_catalog.current_setting('memex.tenant_id', true);
    listed memex.tenants;
    space_id integer := memex._space_id(null);
begin
    for listed in
        select x.* from memex.tenants as x
         where memex.current_tenant() is null or x.id = memex.current_tenant()
         order by x.name
    loop
        -- the tenant is set for each count: RLS binds memex_admin as it binds applications
        perform memex._act_for(listed.id::text);
        tenant := listed.name;
        tenant_id := listed.id;
        created_at := listed.created_at;
        documents := (select pg_catalog.count(*) from memex.documents as d where d.tenant_id = listed.id);
        conversations := (select pg_catalog.count(*) from memex.conversations as v where v.tenant_id = listed.id);
        messages := (select pg_catalog.count(*) from memex.messages as m where m.tenant_id = listed.id);
        summaries := (select pg_catalog.count(*) from memex.summaries as u where u.tenant_id = listed.id);
        chunks := (select pg_catalog.count(*) from memex.chunks as c where c.tenant_id = listed.id);
        pending := memex._pending_here(space_id);
        failed := memex._failed_here(space_id);
        return next;
    end loop;
    perform memex._act_for(coalesce(saved, ''));
end
$$;

comment on function memex.tenant_status() is
'Per tenant: documents, conversations, messages, summaries, chunks, and chunks pending and failed in the active text space (the current tenant, or every tenant the caller may list).';

-- memex.embedding_backends: the backends embedding a batch right now (embed_pending, reembed,
-- memex worker, embed on write): each holds the shared 'embedders' advisory lock while it does.
create or replace view memex.embedding_backends
with (security_invoker = true)
as
select
    l.pid
    , a.application_name
    , a.usename::text as role
    , a.client_addr::text as client
    , a.backend_start
    , a.xact_start as batch_start
from pg_catalog.pg_locks as l
left join pg_catalog.pg_stat_activity as a on l.pid = a.pid
where
    l.locktype = 'advisory' and l.classid = memex._advisory_class('embedders')::oid
    and l.objid = 1 and l.objsubid = 2 and l.granted;

comment on view memex.embedding_backends is
'The backends embedding a batch now (embed_pending, reembed, memex worker): pid, application, role, client, since when.';
