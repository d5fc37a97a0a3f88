-- Remote embedding endpoints (OpenAI-compatible /v1/embeddings): a space's model may be
-- 'endpoint:NAME'. No secret here: API keys live in a file of the database server
-- (memex.set_endpoint_key, docs/embedding.md).
create table memex.endpoints (
    name text primary key check (name ~ '^[a-z0-9][a-z0-9_-]{0,62}$')
    , url text not null check (url ~ '^https?://[^\s/]+')
    , model text not null check (model <> '' and pg_catalog.length(model) <= 200)
    , options jsonb not null default '{}' check (pg_catalog.jsonb_typeof(options) = 'object')
    , created_at timestamptz not null default pg_catalog.now()
);

comment on table memex.endpoints is
'Remote OpenAI-compatible embedding endpoints that spaces may use (model => ''endpoint:NAME''); keys are not stored here.';

alter table memex.spaces drop constraint spaces_provider_check;

alter table memex.spaces add constraint spaces_provider_check
check (provider in ('sentence-transformers', 'hash', 'wordllama', 'openai'));
