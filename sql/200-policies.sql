-- Row-level security policies, re-applied on every install (RLS itself is enabled and FORCED in
-- the migrations). Every tenant table: a row is visible and writable only when its tenant_id is
-- the transaction's tenant. current_tenant() is null when unset or '', and `x = null` is never
-- true: no tenant means zero rows and every write refused. The policies compare with
-- current_tenant()'s own expression (the setting read by current_setting, a stable built-in that
-- costs little per row and serves as an index condition), not with `(select current_tenant())`:
-- Citus refuses a policy with a subquery on a distributed table (docs/scale.md), and
-- current_tenant() itself, a function with its own search_path, would be called once per row.

-- memex._tenant_tables(): the tables that hold tenant rows, each with this one policy. A new
-- tenant table is added here (and to the tenancy tests' list, tests/db/helpers.py).
create or replace function memex._tenant_tables()
returns text[]
language sql
immutable
parallel safe
security invoker
set search_path = pg_catalog, pg_temp
as $$
    select array[
        'users', 'folders', 'conversations', 'messages', 'summaries', 'documents', 'chunks'
        , 'embeddings', 'text_postings', 'text_segments', 'embedding_failures'
    ]
$$;

comment on function memex._tenant_tables() is 'Internal: the tables that hold tenant rows (one tenant_isolation policy each).';

do $policies$
declare
    t text;
    -- memex.current_tenant()'s body (sql/100-tenancy.sql): the two are one definition
    tenant constant text := $e$nullif(pg_catalog.current_setting('memex.tenant_id', true), '')::uuid$e$;
begin
    foreach t in array memex._tenant_tables() loop
        execute pg_catalog.format('drop policy if exists tenant_isolation on memex.%I', t);
        execute pg_catalog.format(
            'create policy tenant_isolation on memex.%I for all to memex_app, memex_admin'
            ' using (tenant_id = %s) with check (tenant_id = %s)', t, tenant, tenant
        );
    end loop;
    -- tenants: an application sees only its current tenant's row and changes none.
    drop policy if exists tenant_self on memex.tenants;
    execute pg_catalog.format('create policy tenant_self on memex.tenants for select to memex_app using (id = %s)', tenant);
end
$policies$;

-- The shared tables' policies. Every policy statement of this file runs in a DO block: Citus
-- forwards a top-level policy statement on a distributed or reference table to the workers
-- with the text of the whole file, which they refuse (docs/scale.md, "Citus").
-- * tenants, tenant_admin: memex_admin manages tenants (create_tenant) and, for maintenance
--   that spans tenants, lists them to act for each in turn (set_tenant inside the job): it reads
--   content only through the same tenant_isolation policies as applications.
-- * tenants, tenant_owner: memex_owner reads tenants for memex.set_tenant (SECURITY DEFINER,
--   owned by memex_owner).
-- * api_tokens: memex_admin creates, lists and revokes them; memex_owner reads them for
--   memex.tenant_for_token (SECURITY DEFINER); memex_app has no privilege on the table at all.
do $policies$
declare
    p record;
begin
    for p in
        select * from (values
            ('tenants', 'tenant_admin', 'for all to memex_admin using (true) with check (true)')
            , ('tenants', 'tenant_owner', 'for select to memex_owner using (true)')
            , ('api_tokens', 'token_admin', 'for all to memex_admin using (true) with check (true)')
            , ('api_tokens', 'token_owner', 'for select to memex_owner using (true)')
        ) as x (tab, policy, definition)
    loop
        execute pg_catalog.format('drop policy if exists %I on memex.%I', p.policy, p.tab);
        execute pg_catalog.format('create policy %I on memex.%I %s', p.policy, p.tab, p.definition);
    end loop;
end
$policies$;
