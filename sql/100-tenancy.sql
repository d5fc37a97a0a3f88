-- Tenancy: which tenant this transaction acts for. RLS policies (sql/200-policies.sql) compare
-- every row's tenant_id with memex.current_tenant(); unset or '' means no tenant: zero rows.

-- memex.current_tenant(): the tenant of this transaction, null when unset or empty. Its
-- expression is written out in every tenant policy as well (sql/200-policies.sql).
create or replace function memex.current_tenant()
returns uuid
language sql
stable
parallel safe
security invoker
set search_path = pg_catalog, pg_temp
as $$ select nullif(pg_catalog.current_setting('memex.tenant_id', true), '')::uuid $$;

comment on function memex.current_tenant() is
'The tenant this transaction acts for (setting memex.tenant_id); null when unset or empty.';

-- memex._act_for(tenant, is_local): act for a tenant (its id as text; '' for none), for this
-- transaction (is_local, the default) or the session, as SET [LOCAL] memex.tenant_id. A SET
-- LOCAL command rather than set_config: on Citus (docs/scale.md, "Citus") a transaction's SET
-- LOCAL commands reach the workers it opens connections to when citus.propagate_set_commands
-- is 'local', which this sets for the transaction where Citus is loaded; set_config never does.
-- The one way memex sets the tenant (set_tenant, and every job that acts for tenants in turn).
create or replace function memex._act_for(tenant text, is_local boolean default true)
returns void
language plpgsql
volatile
parallel unsafe
security invoker
set search_path = pg_catalog, pg_temp
as $$
begin
    if is_local and pg_catalog.current_setting('citus.propagate_set_commands', true) is not null then
        perform pg_catalog.set_config('citus.propagate_set_commands', 'local', true);
    end if;
    execute pg_catalog.format(
        case when is_local then 'set local memex.tenant_id = %L' else 'set memex.tenant_id = %L' end
        , coalesce(_act_for.tenant, ''));
    if is_local and coalesce(_act_for.tenant, '') <> '' and memex._distributed() then
        -- Citus sends a transaction's SET LOCAL commands to a worker with the BEGIN of a remote
        -- transaction block, and a read opens one only inside BEGIN ... COMMIT: in a CALL, a DO
        -- block or a lone statement the worker would read with no tenant (RLS: no row). A row
        -- lock opens the block (on the tenant's shard group, locking no row).
        perform 1 from memex.users as u where u.tenant_id = _act_for.tenant::uuid limit 0 for key share;
    end if;
end
$$;

comment on function memex._act_for(text, boolean) is
'Internal: acts for a tenant (id as text, empty for none) for this transaction or the session, as SET [LOCAL] (reaches Citus workers).';

-- memex._distributed(): whether memex's tables are distributed by Citus here (docs/scale.md,
-- "Citus"). pg_dist_partition exists only where the citus extension does, hence the dynamic SQL.
create or replace function memex._distributed()
returns boolean
language plpgsql
stable
parallel safe
security invoker
set search_path = pg_catalog, pg_temp
as $$
declare
    found boolean;
begin
    if pg_catalog.to_regclass('pg_catalog.pg_dist_partition') is null then
        return false;
    end if;
    execute 'select exists (select from pg_catalog.pg_dist_partition where logicalrelid = $1)'
        into found using 'memex.chunks'::regclass;
    return found;
end
$$;

comment on function memex._distributed() is
'Internal: whether memex''s tables are distributed by Citus in this database.';

-- memex._tenant_named(tenant): the id of the tenant a caller names by id or by name (an id
-- first: a name that looks like another tenant's id does not take its place), or null. The
-- one lookup behind set_tenant, delete_tenant and create_api_token; it sees the tenants its
-- caller may read.
create or replace function memex._tenant_named(tenant text)
returns uuid
language sql
stable
parallel safe
security invoker
set search_path = pg_catalog, pg_temp
as $$
    select t.id from memex.tenants as t
     where t.name = _tenant_named.tenant
        or t.id = case when _tenant_named.tenant ~* '^[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}$'
                       then _tenant_named.tenant::uuid end
     order by t.name = _tenant_named.tenant
     limit 1
$$;

comment on function memex._tenant_named(text) is
'Internal: the id of the tenant named by id or name (the id first), or null.';

-- memex._require_tenant(): the current tenant, or a 42501 error when none is set.
create or replace function memex._require_tenant()
returns uuid
language plpgsql
stable
parallel safe
security invoker
set search_path = pg_catalog, pg_temp
as $$
declare
    tenant uuid := memex.current_tenant();
begin
    if tenant is null then
        raise exception 'no tenant is set for this transaction'
            using errcode = '42501', hint = 'call memex.set_tenant(''<tenant name or id>'') first';
    end if;
    return tenant;
end
$$;

comment on function memex._require_tenant() is
'Internal: the current tenant, or error 42501 when none is set (writes fail closed).';

-- memex.create_tenant(name, settings): idempotent by name; for memex_admin.
create or replace function memex.create_tenant(name text, settings jsonb default '{}')
returns uuid
language plpgsql
volatile
parallel unsafe
security invoker
set search_path = pg_catalog, pg_temp
as $$
declare
    tenant uuid;
begin
    if name is null or pg_catalog.btrim(name) = '' then
        raise exception 'tenant name must not be empty' using errcode = '22023';
    end if;
    if settings is null or pg_catalog.jsonb_typeof(settings) <> 'object' then
        raise exception 'tenant settings must be a JSON object' using errcode = '22023';
    end if;
    insert into memex.tenants as t (name, settings) values (create_tenant.name, create_tenant.settings)
    on conflict on constraint tenants_name_key do nothing
    returning t.id into tenant;
    if tenant is null then
        select t.id into tenant from memex.tenants as t where t.name = create_tenant.name;
    end if;
    return tenant;
end
$$;

comment on function memex.create_tenant(text, jsonb) is
'Creates a tenant (idempotent by name) and returns its id. For memex_admin.';

-- CALL memex.delete_tenant(tenant, confirm): removes a tenant and everything it holds, for
-- memex_admin. `confirm` must repeat the tenant's name (a typo deletes nothing). Its rows go in
-- committed batches (documents and conversations, each cascading to its chunks, vectors,
-- messages and summaries), with progress NOTICEs, so a tenant of millions of rows neither holds
-- one huge transaction nor blocks the others; killed half way, the same CALL finishes the job.
-- Runs under RLS like every admin job: the tenant is set for each batch's transaction.
create or replace procedure memex.delete_tenant(tenant text, confirm text default null, batch_size integer default 500)
language plpgsql
as $$
declare
    victim memex.tenants;
    removed bigint;
    total bigint := 0;
    tables constant text[] := array['documents', 'conversations', 'users', 'folders', 'text_postings', 'text_segments'];
    t text;
begin
    set local search_path = pg_catalog, pg_temp;
    perform memex._check_batch_size(batch_size);
    select x.* into victim from memex.tenants as x where x.id = memex._tenant_named(tenant);
    if victim.id is null then
        raise exception 'unknown tenant: %', coalesce(tenant, 'null')
            using errcode = 'P0002', hint = 'the name or id of a tenant, as memex_admin sees memex.tenants';
    end if;
    if confirm is distinct from victim.name then
        raise exception 'delete_tenant: confirm must repeat the tenant''s name (%)', pg_catalog.quote_literal(victim.name)
            using errcode = '22023', hint = pg_catalog.format('CALL memex.delete_tenant(%L, confirm => %L)', tenant, victim.name);
    end if;
    -- it COMMITs after every batch: inside a transaction block this fails now (2D000)
    commit;
    set local search_path = pg_catalog, pg_temp;
    foreach t in array tables loop
        loop
            perform memex._act_for(victim.id::text);
            execute pg_catalog.format(
                'delete from memex.%1$I as r where r.tenant_id = $1 and r.ctid = any(array('
                || 'select x.ctid from memex.%1$I as x where x.tenant_id = $1 limit $2))', t)
            using victim.id, batch_size;
            get diagnostics removed = row_count;
            commit;
            set local search_path = pg_catalog, pg_temp;
            exit when removed = 0;
            total := total + removed;
            raise notice 'memex.delete_tenant: % rows of % removed so far (now: %)', total, victim.name, t
                using detail = pg_catalog.jsonb_build_object('event', 'progress', 'table', t, 'removed', total)::text;
        end loop;
    end loop;
    delete from memex.tenants as x where x.id = victim.id;  -- what is left cascades
    commit;
    raise notice 'memex.delete_tenant: tenant % (%) deleted, % rows removed', victim.name, victim.id, total
        using detail = pg_catalog.jsonb_build_object('event', 'done', 'tenant', victim.id, 'removed', total)::text;
end
$$;

comment on procedure memex.delete_tenant (text, text, integer) is
'Deletes a tenant and all its rows in committed batches (confirm => its name). For memex_admin.';

-- memex.set_tenant(tenant, is_local): act for a tenant, by name or id.
-- SECURITY DEFINER because an application must resolve the tenant it names while RLS hides every
-- tenants row until a tenant is set; it reveals only the id of a tenant the caller named. Owned by
-- memex_owner (who may read tenants), pinned search_path, EXECUTE revoked from PUBLIC.
create or replace function memex.set_tenant(tenant text, is_local boolean default true)
returns uuid
language plpgsql
volatile
parallel unsafe
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
    found uuid;
begin
    if tenant is null or pg_catalog.btrim(tenant) = '' then
        raise exception 'tenant must be a tenant name or id' using errcode = '22023';
    end if;
    if not coalesce(is_local, true) and memex._distributed() then
        raise exception 'a tenant for the session does not reach the Citus workers: memex is distributed here'
            using errcode = '0A000'
            , hint = 'call memex.set_tenant(tenant) in each transaction (is_local => true, the default)';
    end if;
    found := memex._tenant_named(tenant);
    if found is null then
        raise exception 'unknown tenant: %', tenant
            using errcode = 'P0002', hint = 'an administrator creates tenants with memex.create_tenant(name)';
    end if;
    perform memex._act_for(found::text, coalesce(is_local, true));
    return found;
end
$$;

comment on function memex.set_tenant(text, boolean) is
'Acts for a tenant (name or id) for this transaction (is_local, the default) or session; unknown tenant: error P0002, nothing set.';

-- API tokens: the MCP server over HTTP maps a bearer token to one tenant (docs/mcp.md).

-- memex.tenant_for_token(token): the tenant a valid token (not revoked, not expired) names, or
-- null. SECURITY DEFINER because the server resolves a token before any tenant is set, and
-- api_tokens is memex_admin's alone; it reveals only the tenant of a token the caller holds
-- (by its sha256: a token is 256 random bits). Owned by memex_owner, pinned search_path,
-- EXECUTE revoked from PUBLIC.
create or replace function memex.tenant_for_token(token text)
returns uuid
language sql
stable
parallel safe
security definer
set search_path = pg_catalog, pg_temp
as $$
    select t.tenant_id from memex.api_tokens as t
     where t.token_hash = pg_catalog.sha256(pg_catalog.convert_to(tenant_for_token.token, 'UTF8'))
       and t.revoked_at is null and (t.expires_at is null or t.expires_at > pg_catalog.now())
$$;

comment on function memex.tenant_for_token(text) is
'The tenant a valid API token names (null: unknown, revoked or expired). For the MCP server over HTTP.';

-- memex.create_api_token(tenant, expires_in, label): a new token for a tenant (name or id),
-- returned once: only its sha256 is kept. For memex_admin.
create or replace function memex.create_api_token(
    tenant text, expires_in interval default null, label text default null
    , out id uuid, out token text
)
language plpgsql
volatile
parallel unsafe
security invoker
set search_path = pg_catalog, pg_temp
as $$
declare
    owner uuid;
begin
    owner := memex._tenant_named(create_api_token.tenant);
    if owner is null then
        raise exception 'unknown tenant: %', coalesce(create_api_token.tenant, 'null')
            using errcode = 'P0002', hint = 'memex tenant list shows them';
    end if;
    if create_api_token.expires_in is not null and create_api_token.expires_in <= interval '0' then
        raise exception 'expires_in must be positive, not %', create_api_token.expires_in using errcode = '22023';
    end if;
    -- two random UUIDs: 244 random bits, from the server's own generator (no pgcrypto needed)
    token := 'mx_' || pg_catalog.replace(gen_random_uuid()::text || gen_random_uuid()::text, '-', '');
    insert into memex.api_tokens as a (tenant_id, token_hash, label, expires_at)
    values (owner, pg_catalog.sha256(pg_catalog.convert_to(token, 'UTF8')), create_api_token.label
            , pg_catalog.now() + create_api_token.expires_in)
    returning a.id into id;
end
$$;

comment on function memex.create_api_token(text, interval, text) is
'Creates an API token for a tenant (for the MCP server over HTTP); the token is returned once, only its sha256 is kept.';

-- memex.revoke_api_token(id): true when a live token was revoked. For memex_admin.
create or replace function memex.revoke_api_token(id uuid)
returns boolean
language sql
volatile
parallel unsafe
security invoker
set search_path = pg_catalog, pg_temp
as $$
    update memex.api_tokens as a set revoked_at = pg_catalog.now()
     where a.id = revoke_api_token.id and a.revoked_at is null
    returning true
$$;

comment on function memex.revoke_api_token(uuid) is 'Revokes an API token; true when a live one was revoked.';
