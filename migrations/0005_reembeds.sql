-- Re-embedding (CALL memex.reembed): the model hash in a space's signature, and one state row
-- per target space, committed with every batch, so that a killed run resumes where it stopped
-- and memex.reembed_progress can be read from any session while it runs.

-- sha256 of the model's files (memex._model_hash): the same name or path with other weights is
-- another signature. Null for spaces made before 0005: filled in by the first reembed.
alter table memex.spaces add column model_hash text;

create table memex.reembeds (
    space_id integer primary key references memex.spaces (id) on delete cascade
    , from_space_id integer references memex.spaces (id) on delete set null
    , phase text not null default 'embedding'
    check (phase in ('embedding', 'indexing', 'ready', 'activating', 'done'))
    , batch_size integer not null check (batch_size between 1 and 4096)
    , rows_total bigint not null default 0 check (rows_total >= 0)
    , rows_done bigint not null default 0 check (rows_done >= 0)
    -- resume point: the last (tenant, chunk) embedded, in key order
    , cursor_tenant uuid
    , cursor_chunk uuid
    , rate double precision  -- chunks/s of the latest run
    , runs integer not null default 1  -- CALLs that worked on it (more than 1: resumed)
    , pid integer  -- the backend of the latest run
    , started_at timestamptz not null default now()
    , updated_at timestamptz not null default now()
    , finished_at timestamptz
    , activation_ms double precision  -- duration of the switch transaction
);

comment on table memex.reembeds is
'One row per reembed target space: phase, progress and resume point (memex.reembed_progress).';
