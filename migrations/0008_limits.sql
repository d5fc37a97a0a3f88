-- Ceilings on the embedding settings, which only memex_admin sets. memex.embed_threads,
-- memex.memory_budget_mb and memex.embed_runtime are placeholder GUCs: any role can SET them
-- (and ALTER ROLE itself SET them), so they cannot hold a limit. A session's own settings may
-- only go below these (memex_db.settings).
create table memex.limits (
    name text primary key check (name in ('embed_threads', 'memory_budget_mb', 'embed_runtime'))
    , value text not null
    , updated_at timestamptz not null default now()
);

comment on table memex.limits is
'Ceilings on memex.embed_threads and memex.memory_budget_mb, and the one allowed memex.embed_runtime; set by memex_admin.';
