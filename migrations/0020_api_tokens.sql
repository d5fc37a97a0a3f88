-- Bearer tokens of the MCP server over HTTP: each names one tenant. Only a token's sha256 is
-- kept; memex_admin creates, lists and revokes them (memex token ...), and the server resolves
-- a token it was given through memex.tenant_for_token (SECURITY DEFINER, sql/100-tenancy.sql).
set local search_path = pg_catalog, pg_temp;

create table memex.api_tokens (
    id uuid primary key default gen_random_uuid()
    , tenant_id uuid not null references memex.tenants (id) on delete cascade
    , token_hash bytea not null unique
    , label text check (pg_catalog.length(label) <= 200)
    , created_at timestamptz not null default pg_catalog.now()
    , expires_at timestamptz
    , revoked_at timestamptz
);

create index api_tokens_tenant on memex.api_tokens (tenant_id);

-- RLS forced like every table holding a tenant_id: only the policies of sql/200 open it
-- (memex_admin manages every token; memex_owner reads them for tenant_for_token).
alter table memex.api_tokens enable row level security;
alter table memex.api_tokens force row level security;

comment on table memex.api_tokens is
'Bearer tokens of the MCP server over HTTP, one tenant each; only their sha256 is stored.';
