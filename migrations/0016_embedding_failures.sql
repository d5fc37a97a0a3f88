-- A chunk that fails to embed no longer stops the queue for every tenant: its failure is
-- recorded here (attempts, the error, when to retry), the drain skips it while it waits for
-- its retry, and after the last attempt it is parked until memex.retry_failed(). A record
-- holds for the content that failed: a chunk whose text changes is pending again.
set local search_path = pg_catalog, pg_temp;

create table memex.embedding_failures (
    space_id integer not null references memex.spaces (id) on delete cascade
    , tenant_id uuid not null default memex.current_tenant()
    , chunk_id uuid not null
    , content_hash bytea not null
    , attempts integer not null default 1 check (attempts >= 1)
    , sqlstate text not null check (sqlstate ~ '^[0-9A-Z]{5}$')
    , error text not null check (pg_catalog.length(error) <= 2000)
    , first_failed_at timestamptz not null default pg_catalog.now()
    , last_failed_at timestamptz not null default pg_catalog.now()
    , retry_at timestamptz  -- null: parked, retried only by memex.retry_failed()
    , primary key (space_id, tenant_id, chunk_id)
    , foreign key (tenant_id, chunk_id) references memex.chunks (tenant_id, id) on delete cascade
);

create index embedding_failures_chunk on memex.embedding_failures (tenant_id, chunk_id);

alter table memex.embedding_failures enable row level security;
alter table memex.embedding_failures force row level security;

comment on table memex.embedding_failures is
'Chunks that failed to embed into a space: attempts, last error, next retry (null: parked). One row per (space, chunk).';

-- Their columns gain the failed counts: sql/ creates them again.
drop view if exists memex.space_status;
drop function if exists memex._space_counts(integer);
drop function if exists memex.tenant_status();
-- The claim engine gains a per-tenant mode (round-robin claims): sql/ creates the new one.
drop function if exists memex._drain_step(integer, integer, boolean, uuid, integer, uuid, boolean);
