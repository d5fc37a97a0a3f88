-- Privileges, re-applied on every install. Functions are created executable by PUBLIC: take
-- that away everywhere, then grant the public API to the memex roles only. The memex roles lose
-- everything first too: a grant that an earlier release made and this one no longer makes must
-- not survive an upgrade (tests/migrations/test_upgrade.py: upgrade == fresh install). All of
-- it runs in the install's transaction: no session sees the roles without their grants.
revoke all on schema memex from public;
grant usage on schema memex to memex_admin, memex_app;

revoke all on all functions in schema memex from public, memex_admin, memex_app;
revoke all on all procedures in schema memex from public, memex_admin, memex_app;

-- Functions and procedures: derived from the catalog, so a new function is granted by being
-- created. Every one is executable by memex_admin; by memex_app too (under its own RLS: they
-- are SECURITY INVOKER), except the operations below. A SECURITY DEFINER function reaches
-- memex_app only when named in definer_for_app. tests/db/expected_privileges.txt is the
-- contract this must produce.
do $grants$
declare
    -- operations: spaces, endpoints, tenants, tokens, draining, re-embedding, index upkeep;
    -- python_check imports torch in the calling backend (seconds, hundreds of MB)
    admin_only constant text[] := array[
        'activate_space', 'create_api_token', 'create_endpoint', 'create_space', 'create_tenant',
        'delete_tenant', 'drop_endpoint', 'drop_space', 'embed_pending', 'optimize_text_index',
        'python_check', 'rechunk', 'reembed', 'reembed_plan', 'retire_space', 'revoke_api_token',
        'set_endpoint_key',
        '_build_space_index', '_bulk_index_rows', '_check_batch_size', '_check_endpoint_options',
        '_claim_step', '_defer_index_for_load', '_drain_step', '_drop_space_index', '_drop_space_storage',
        '_finish_load_index', '_loopback_url', '_measure_rate', '_model_hash', '_model_info',
        '_rechunk_source', '_reembed_holder', '_reembed_lock_key', '_reembed_no_op',
        '_reembed_pass', '_reembed_target', '_release_memory', '_space_index_sql',
        '_space_index_valid', '_tenant_named', '_tenant_tables', '_text_rebuild', '_worker_beat',
        '_worker_started', '_worker_stopped'
    ];
    -- choosing a tenant, resolving an API token: each checks its caller itself
    definer_for_app constant text[] := array['set_tenant', 'tenant_for_token'];
    fn record;
begin
    for fn in
        select p.oid::regprocedure as signature
             , case p.prokind when 'p' then 'procedure' else 'function' end as kind
             , not (p.proname = any(admin_only))
               and (not p.prosecdef or p.proname = any(definer_for_app)) as for_app
          from pg_catalog.pg_proc as p
         where p.pronamespace = 'memex'::regnamespace
           and p.prokind in ('f', 'p')
    loop
        execute format(
            'grant execute on %s %s to memex_admin%s',
            fn.kind, fn.signature, case when fn.for_app then ', memex_app' else '' end
        );
    end loop;
end
$grants$;

revoke all on all tables in schema memex from public, memex_admin, memex_app;
revoke all on all sequences in schema memex from public, memex_admin, memex_app;
grant select on memex.installs to memex_admin, memex_app;
grant usage on type memex.message_role to memex_admin, memex_app;
grant usage on type memex.search_result to memex_admin, memex_app;

-- Tenant tables: applications and admins read and write them under RLS.
grant select, insert, update, delete
on memex.users, memex.folders, memex.conversations, memex.messages, memex.summaries
, memex.documents, memex.chunks
to memex_admin, memex_app;
grant select on memex.tenants to memex_app;
-- The text index: blocks are inserted by writers and merged (deleted and re-inserted) by them.
grant select, insert, delete on memex.text_postings, memex.text_segments to memex_admin, memex_app;
grant usage on sequence memex.text_doc_seq to memex_admin, memex_app;
-- Their identity columns need no privilege on one node; on Citus a write that runs on a worker's
-- shard (an INSERT ... SELECT pushed down) takes its numbers from the worker's sequence.
grant usage on sequence memex.text_postings_block_seq, memex.text_segments_segment_seq
to memex_admin, memex_app;
grant select on memex.text_index_status to memex_admin, memex_app;
-- Vectors: written by embed_pending and workers (memex_admin) and by embed-on-write in the
-- application's own statements, always under RLS; spaces: managed by memex_admin only.
grant select, insert, update, delete on memex.embeddings, memex.embedding_failures to memex_admin;
grant select, insert, update, delete on memex.embedding_failures to memex_app;
-- memex_app stores vectors but deletes none (they go with their chunks) and updates three
-- columns: with no table-level UPDATE or DELETE it cannot LOCK the table every search reads
-- (LOCK ... IN ACCESS EXCLUSIVE MODE needs one of them).
grant select, insert on memex.embeddings to memex_app;
grant update (embedding, content_hash, embedded_at) on memex.embeddings to memex_app;
grant select on memex.spaces, memex.space_status to memex_admin, memex_app;
-- every embedding backend counts the others through it (memex_db.api._concurrent_embedders)
grant select on memex.embedding_backends to memex_admin, memex_app;
grant select, insert, update on memex.reembeds to memex_admin;
grant select, insert, update on memex.api_tokens to memex_admin;
grant select on memex.reembed_progress to memex_admin;
-- memex worker heartbeats (memex._worker_started and its kin write them)
grant select, insert, update, delete on memex.worker_heartbeats to memex_admin;
grant select on memex.workers to memex_admin;
grant insert, update, delete on memex.spaces to memex_admin;
-- Providers are the installer's; on Citus a write to spaces or reembeds locks the providers
-- they reference on every node, which needs a write privilege on them (inserting a name enables nothing: a
-- provider is a module of memex_db.providers).
grant insert, update on memex.providers to memex_admin;
-- Remote endpoints: applications read the URL and model (their queries are embedded there);
-- keys are not in the database at all.
grant select on memex.endpoints to memex_admin, memex_app;
grant insert, update, delete on memex.endpoints to memex_admin;
grant select, insert, update, delete on memex.tenants to memex_admin;

-- limits: every role reads the ceilings its embedding runs under; memex_admin sets them
grant select on memex.limits to memex_admin, memex_app;
grant insert, update, delete on memex.limits to memex_admin;
