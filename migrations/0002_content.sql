-- Content model: tenants, users, folders, conversations, messages, summaries, documents, chunks.
-- Every tenant table carries tenant_id (defaulting to the transaction's tenant) and every unique
-- key includes it. Children reference parents by (tenant_id, id), so a row can never point at
-- another tenant's row. RLS is enabled and FORCED here; the policies live in sql/200-policies.sql
-- (until they exist, forced RLS with no policy shows nothing: fail closed).

-- The tenant of this transaction: null when the setting is unset or ''. Defined here because
-- column defaults below use it; sql/100-tenancy.sql re-applies the same definition.
create or replace function memex.current_tenant()
returns uuid
language sql
stable
parallel safe
security invoker
set search_path = pg_catalog, pg_temp
as $$ select nullif(pg_catalog.current_setting('memex.tenant_id', true), '')::uuid $$;

create type memex.message_role as enum ('user', 'assistant', 'system', 'tool');

create table memex.tenants (
    id uuid primary key default gen_random_uuid()
    , name text not null unique check (name <> '' and length(name) <= 200)
    , settings jsonb not null default '{}' check (jsonb_typeof(settings) = 'object')
    , created_at timestamptz not null default now()
);

create table memex.users (
    id uuid not null default gen_random_uuid()
    , tenant_id uuid not null default memex.current_tenant() references memex.tenants (id) on delete cascade
    , email text not null check (email like '%_@_%')
    , role text not null default 'member'
    , created_at timestamptz not null default now()
    , primary key (tenant_id, id)
    , unique (tenant_id, email)
);

create table memex.folders (
    id uuid not null default gen_random_uuid()
    , tenant_id uuid not null default memex.current_tenant() references memex.tenants (id) on delete cascade
    , path text not null check (path <> '')
    , created_at timestamptz not null default now()
    , primary key (tenant_id, id)
    , unique (tenant_id, path)
);

create table memex.conversations (
    id uuid not null default gen_random_uuid()
    , tenant_id uuid not null default memex.current_tenant() references memex.tenants (id) on delete cascade
    , user_id uuid
    , slug text not null check (slug <> '' and length(slug) <= 500)
    , title text
    , system_prompt text
    , created_date date
    , total_chars integer not null default 0
    , total_lines integer not null default 0
    , metadata jsonb not null default '{}' check (jsonb_typeof(metadata) = 'object')
    , created_at timestamptz not null default now()
    , updated_at timestamptz not null default now()
    , primary key (tenant_id, id)
    , unique (tenant_id, slug)
    , foreign key (tenant_id, user_id) references memex.users (tenant_id, id) on delete set null (user_id)
);

create table memex.messages (
    id uuid not null default gen_random_uuid()
    , tenant_id uuid not null default memex.current_tenant()
    , conversation_id uuid not null
    , seq integer not null check (seq >= 0)
    , role memex.message_role not null
    , ts timestamptz
    , content text not null
    , metadata jsonb not null default '{}' check (jsonb_typeof(metadata) = 'object')
    , content_hash bytea not null
    , primary key (tenant_id, id)
    , unique (tenant_id, conversation_id, seq)
    , foreign key (tenant_id, conversation_id) references memex.conversations (tenant_id, id) on delete cascade
);

create table memex.summaries (
    id uuid not null default gen_random_uuid()
    , tenant_id uuid not null default memex.current_tenant()
    , conversation_id uuid not null
    , level integer not null check (level >= 1)
    , index integer check (index >= 0)
    , covers jsonb not null default '[]' check (jsonb_typeof(covers) = 'array')
    , content text not null check (content <> '')
    , char_count integer
    , topics text[] not null default '{}'
    , meta jsonb not null default '{}' check (jsonb_typeof(meta) = 'object')
    , content_hash bytea not null
    , created_at timestamptz not null default now()
    , updated_at timestamptz not null default now()
    , primary key (tenant_id, id)
    , foreign key (tenant_id, conversation_id) references memex.conversations (tenant_id, id) on delete cascade
);

-- Idempotency keys of artefact v2: (conversation, level, index), or the content hash when a
-- summary has no index.
create unique index summaries_by_index on memex.summaries (tenant_id, conversation_id, level, index)
where index is not null;
create unique index summaries_by_hash on memex.summaries (tenant_id, conversation_id, level, content_hash)
where index is null;
create index summaries_topics on memex.summaries using gin (topics);

create table memex.documents (
    id uuid not null default gen_random_uuid()
    , tenant_id uuid not null default memex.current_tenant()
    , folder_id uuid
    , uri text not null check (uri <> '' and length(uri) <= 2000)
    , title text
    , mime text
    , status text not null default 'active'
    , content text not null
    , content_hash bytea not null
    , metadata jsonb not null default '{}' check (jsonb_typeof(metadata) = 'object')
    , created_at timestamptz not null default now()
    , updated_at timestamptz not null default now()
    , primary key (tenant_id, id)
    , unique (tenant_id, uri)
    , foreign key (tenant_id, folder_id) references memex.folders (tenant_id, id) on delete set null (folder_id)
);

create index documents_metadata on memex.documents using gin (metadata jsonb_path_ops);
create index documents_uri_prefix on memex.documents (tenant_id, uri text_pattern_ops);
create index conversations_metadata on memex.conversations using gin (metadata jsonb_path_ops);

-- Chunks: the one unit that is embedded and searched. Exactly one source reference is set, and
-- it matches source_kind; each cascades from its source.
create table memex.chunks (
    id uuid not null default gen_random_uuid()
    , tenant_id uuid not null default memex.current_tenant()
    , source_kind text not null check (source_kind in ('message', 'summary', 'document'))
    , message_id uuid
    , summary_id uuid
    , document_id uuid
    , source_id uuid generated always as (coalesce(message_id, summary_id, document_id)) stored
    , conversation_id uuid
    , ord integer not null check (ord >= 0)
    , content text not null check (content <> '')
    , language regconfig not null default 'english'
    , tsv tsvector generated always as (to_tsvector(language, content)) stored
    , token_count integer not null check (token_count >= 0)
    , content_hash bytea not null
    , created_at timestamptz not null default now()
    , primary key (tenant_id, id)
    , unique (tenant_id, source_kind, source_id, ord)
    , check (num_nonnulls(message_id, summary_id, document_id) = 1)
    , check (
        (source_kind = 'message' and message_id is not null)
        or (source_kind = 'summary' and summary_id is not null)
        or (source_kind = 'document' and document_id is not null)
    )
    , foreign key (tenant_id, message_id) references memex.messages (tenant_id, id) on delete cascade
    , foreign key (tenant_id, summary_id) references memex.summaries (tenant_id, id) on delete cascade
    , foreign key (tenant_id, document_id) references memex.documents (tenant_id, id) on delete cascade
    , foreign key (tenant_id, conversation_id) references memex.conversations (tenant_id, id) on delete cascade
);

create index chunks_tsv on memex.chunks using gin (tsv);
create index chunks_conversation on memex.chunks (tenant_id, conversation_id)
where conversation_id is not null;
create index chunks_message on memex.chunks (tenant_id, message_id) where message_id is not null;
create index chunks_summary on memex.chunks (tenant_id, summary_id) where summary_id is not null;
create index chunks_document on memex.chunks (tenant_id, document_id) where document_id is not null;

alter table memex.tenants enable row level security;
alter table memex.tenants force row level security;
alter table memex.users enable row level security;
alter table memex.users force row level security;
alter table memex.folders enable row level security;
alter table memex.folders force row level security;
alter table memex.conversations enable row level security;
alter table memex.conversations force row level security;
alter table memex.messages enable row level security;
alter table memex.messages force row level security;
alter table memex.summaries enable row level security;
alter table memex.summaries force row level security;
alter table memex.documents enable row level security;
alter table memex.documents force row level security;
alter table memex.chunks enable row level security;
alter table memex.chunks force row level security;

comment on table memex.tenants is 'Tenants. Applications see only the row of their current tenant.';
comment on table memex.users is 'Users of a tenant (email unique per tenant).';
comment on table memex.folders is 'Document folders, by path, per tenant.';
comment on table memex.conversations is 'Conversations, by slug (unique per tenant).';
comment on table memex.messages is 'Messages of a conversation, idempotent by (conversation, seq).';
comment on table memex.summaries is 'Hierarchical summaries L1..Lk of a conversation (artefact v2).';
comment on table memex.documents is 'Documents, by uri (unique per tenant), with their full text.';
comment on table memex.chunks is 'Token-bounded pieces of messages, summaries and documents: what is embedded and searched.';
