-- memex.limits holds ceilings for the two settings that size an inference batch too: any role
-- may SET memex.embed_batch_size and memex.embed_batch_tokens, and a batch sized by them alone
-- could need tens of GB (memex_db.settings keeps built-in ceilings when no row is set).
set local search_path = pg_catalog, pg_temp;

alter table memex.limits drop constraint limits_name_check;

alter table memex.limits add constraint limits_name_check check (
    name in ('embed_threads', 'memory_budget_mb', 'embed_runtime', 'embed_batch_size', 'embed_batch_tokens')
);

comment on table memex.limits is
'Ceilings on memex.embed_threads, memex.memory_budget_mb, memex.embed_batch_size and memex.embed_batch_tokens, and the one allowed memex.embed_runtime; set by memex_admin.';
