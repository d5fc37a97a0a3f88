-- Embedding spaces: one (provider, model, dimensions, distance) signature each, and every vector
-- in one table with an untyped vector column. A space's vectors are indexed by a partial
-- expression index ((embedding::vector(N))) WHERE space_id = S, so spaces of different
-- dimensions live side by side and a query of one space can never compare with another's.

-- pgvector's types and operator classes, wherever its extension was created (a DO block: yoyo
-- would print a SELECT's result).
do $$
begin
    perform set_config(
        'search_path'
        , (select e.extnamespace::regnamespace::text from pg_extension as e where e.extname = 'vector')
        || ', pg_catalog'
        , true
    );
end
$$;

create table memex.spaces (
    id integer generated always as identity primary key
    , name text not null unique check (name ~ '^[A-Za-z0-9][A-Za-z0-9_.:@-]{0,127}$')
    , provider text not null check (provider in ('sentence-transformers', 'hash'))
    , model text not null check (model <> '')
    , dimensions integer not null check (dimensions between 1 and 16000)
    , model_dimensions integer not null check (model_dimensions >= dimensions)
    , domain text not null default 'text' check (domain in ('text', 'code'))
    , distance text not null default 'cosine' check (distance in ('cosine', 'l2', 'inner_product'))
    , index_kind text not null default 'hnsw' check (index_kind in ('hnsw', 'ivfflat', 'none'))
    , options jsonb not null default '{}' check (jsonb_typeof(options) = 'object')
    , status text not null default 'building' check (status in ('building', 'active', 'retired'))
    , created_at timestamptz not null default now()
    , activated_at timestamptz
    , retired_at timestamptz
);

-- At most one active space per domain: what search and embed use when no space is named.
create unique index spaces_one_active_per_domain on memex.spaces (domain) where status = 'active';

comment on table memex.spaces is
'Embedding spaces: provider, model, dimensions, distance and index of each set of vectors.';

create table memex.embeddings (
    space_id integer not null references memex.spaces (id) on delete cascade
    , tenant_id uuid not null default memex.current_tenant()
    , chunk_id uuid not null
    , embedding vector not null
    , content_hash bytea not null
    , embedded_at timestamptz not null default now()
    , primary key (space_id, tenant_id, chunk_id)
    , foreign key (tenant_id, chunk_id) references memex.chunks (tenant_id, id) on delete cascade
);

-- The foreign key's own lookup (deleting chunks) and "has this chunk a vector" for every space.
create index embeddings_chunk on memex.embeddings (tenant_id, chunk_id);

alter table memex.embeddings enable row level security;
alter table memex.embeddings force row level security;

comment on table memex.embeddings is
'One vector per (space, chunk), with the content hash it was computed from (stale when they differ).';

-- The default space: the bundled all-MiniLM-L6-v2, active for the text domain.
insert into memex.spaces (
    name, provider, model, dimensions, model_dimensions, domain, distance, index_kind, options
    , status, activated_at
)
values (
    'all-MiniLM-L6-v2@384', 'sentence-transformers', 'all-MiniLM-L6-v2', 384, 384, 'text', 'cosine'
    , 'hnsw', '{"m": 16, "ef_construction": 64}', 'active', now()
);

create index embeddings_space_1_hnsw on memex.embeddings
using hnsw ((embedding::vector(384)) vector_cosine_ops) with (m = 16, ef_construction = 64)
where space_id = 1;
