-- Privileges, re-applied on every install. Functions are created executable by PUBLIC: take
-- that away everywhere, then grant the public API to the memex roles only. The memex roles lose
-- everything first too: a grant that an earlier release made and this one no longer makes must
-- not survive an upgrade (tests/migrations/test_upgrade.py: upgrade == fresh install). All of
-- it runs in the install's transaction: no session sees the roles without their grants.
revoke all on schema memex from public;
grant usage on schema memex to memex_admin, memex_app;

revoke all on all functions in schema memex from public, memex_admin, memex_app;
revoke all on all procedures in schema memex from public, memex_admin, memex_app;

grant execute on function memex.version() to memex_admin, memex_app;
grant execute on function memex.status() to memex_admin, memex_app;
-- python_check imports torch in the calling backend (seconds, hundreds of MB): not for apps
grant execute on function memex.python_check() to memex_admin;
grant execute on function memex.embed(text, text) to memex_admin, memex_app;
grant execute on function memex._python_init() to memex_admin, memex_app;
grant execute on function memex._backend_status() to memex_admin, memex_app;

-- tenancy
grant execute on function memex.current_tenant() to memex_admin, memex_app;
grant execute on function memex._require_tenant() to memex_admin, memex_app;
grant execute on function memex.set_tenant(text, boolean) to memex_admin, memex_app;
grant execute on function memex.create_tenant(text, jsonb) to memex_admin;
-- API tokens (the MCP server over HTTP): resolved by whoever serves, managed by memex_admin
grant execute on function memex.tenant_for_token(text) to memex_admin, memex_app;
grant execute on function memex.create_api_token(text, interval, text) to memex_admin;
grant execute on function memex.revoke_api_token(uuid) to memex_admin;
grant execute on procedure memex.delete_tenant(text, text, integer) to memex_admin;
grant execute on procedure memex.rechunk(integer) to memex_admin;
grant execute on function memex._rechunk_source(text, uuid) to memex_admin;

-- content (SECURITY INVOKER: the caller's RLS applies inside every one of them)
grant execute on function memex.chunk_text(text, integer, integer, text) to memex_admin, memex_app;
grant execute on function memex._check_messages(jsonb, integer) to memex_admin, memex_app;
grant execute on function memex._check_artefact(jsonb, text) to memex_admin, memex_app;
grant execute on function memex._ts_config(jsonb) to memex_admin, memex_app;
grant execute on function memex._language_codes() to memex_admin, memex_app;
-- the expression of chunks' stored tsvector: computed as whoever writes a chunk
grant execute on function memex._tsvector(text, text) to memex_admin, memex_app;
grant execute on function memex._replace_chunks(
    text, uuid, uuid, text, text, text, text
) to memex_admin, memex_app;
grant execute on function memex._chunk_source(text, text) to memex_admin, memex_app;
grant execute on function memex._document_domain(text, jsonb) to memex_admin, memex_app;
grant execute on function memex._folder(text) to memex_admin, memex_app;
grant execute on function memex._document_heading(text, text) to memex_admin, memex_app;
grant execute on function memex._lock_conversation(text) to memex_admin, memex_app;
grant execute on function memex.upsert_document(text, text, text, jsonb, text) to memex_admin, memex_app;
grant execute on function memex.upsert_conversation(text, text, date, jsonb, text) to memex_admin, memex_app;
grant execute on function memex.upsert_document_outcome(text, text, text, jsonb, text) to memex_admin, memex_app;
grant execute on function memex.upsert_conversation_outcome(text, text, date, jsonb, text) to memex_admin, memex_app;
grant execute on function memex.upsert_messages(text, jsonb, boolean) to memex_admin, memex_app;
grant execute on function memex.upsert_messages_outcome(text, jsonb, boolean) to memex_admin, memex_app;
grant execute on function memex._text_size(text) to memex_admin, memex_app;
grant execute on function memex.upsert_summaries(text, jsonb) to memex_admin, memex_app;
grant execute on function memex.delete_document(text) to memex_admin, memex_app;
grant execute on function memex.delete_conversation(text) to memex_admin, memex_app;

-- the BM25 text index, written by the chunks triggers in the writer's own statements
grant execute on function memex._text_terms(memex.chunks) to memex_admin, memex_app;
grant execute on function memex._text_lock_key(uuid, text) to memex_admin, memex_app;
grant execute on function memex._text_merge(uuid, text, text[]) to memex_admin, memex_app;
grant execute on function memex._text_compact(uuid, text) to memex_admin, memex_app;
grant execute on function memex._text_segments_folded() to memex_admin, memex_app;
grant execute on function memex._text_apply(memex.chunks[], integer) to memex_admin, memex_app;
grant execute on function memex._text_index_chunks() to memex_admin, memex_app;
grant execute on function memex._text_new_version() to memex_admin, memex_app;
grant execute on function memex._text_rebuild(uuid, text) to memex_admin;
grant execute on procedure memex.optimize_text_index(text) to memex_admin;
grant execute on function memex._text_candidates(
    text, jsonb, integer, double precision, double precision, uuid[], bigint[]
) to memex_admin, memex_app;

-- embedding: spaces, batches, the pending queue
grant execute on function memex.embed_batch(text[], text) to memex_admin, memex_app;
grant execute on function memex._model_info(text) to memex_admin;
grant execute on function memex._release_memory() to memex_admin;
grant execute on function memex._space(text) to memex_admin, memex_app;
grant execute on function memex._space_index_name(integer) to memex_admin, memex_app;
grant execute on function memex._space_index_sql(integer, boolean) to memex_admin;
grant execute on function memex._space_index_valid(integer) to memex_admin;
grant execute on function memex._build_space_index(integer) to memex_admin;
grant execute on function memex._drop_space_index(integer) to memex_admin;
grant execute on function memex._bulk_index_rows() to memex_admin;
grant execute on function memex._defer_index_for_load(integer, bigint, bigint) to memex_admin;
grant execute on function memex._finish_load_index(integer) to memex_admin;
grant execute on function memex.create_space(text, text, integer, text, text, text, jsonb) to memex_admin;
grant execute on function memex.activate_space(text, boolean) to memex_admin;
grant execute on function memex.retire_space(text) to memex_admin;
grant execute on function memex.drop_space(text) to memex_admin;
grant execute on function memex._dimension_guard() to memex_admin, memex_app;
grant execute on function memex._pending_here(integer) to memex_admin, memex_app;
grant execute on function memex._pending_chunks(integer, integer, uuid, integer, uuid[]) to memex_admin, memex_app;
grant execute on function memex._advisory_class(text) to memex_admin, memex_app;
grant execute on function memex._advisory_holders(bigint, integer) to memex_admin, memex_app;
grant execute on function memex._bounded_lock_timeout() to memex_admin, memex_app;
grant execute on function memex._tenant_tables() to memex_admin;
grant execute on function memex._check_batch_size(integer) to memex_admin;
grant execute on function memex._chunks_here(integer) to memex_admin, memex_app;
grant execute on function memex._space_embeds_code_only(integer) to memex_admin, memex_app;
grant execute on function memex._space_counts(integer) to memex_admin, memex_app;
grant execute on function memex.pending_count(text) to memex_admin, memex_app;
grant execute on function memex._drain_step(
    integer, integer, boolean, uuid, integer, uuid, boolean, boolean
) to memex_admin;
grant execute on function memex._claim_step(integer, integer, jsonb) to memex_admin;
grant execute on function memex._failed_here(integer) to memex_admin, memex_app;
-- failures: recorded by whoever embeds (embed-on-write runs in the application's statement)
grant execute on function memex._failure_retry_at(integer) to memex_admin, memex_app;
grant execute on function memex._record_embedding_failure(integer, uuid, bytea, text, text) to memex_admin, memex_app;
grant execute on function memex._space_embeds(integer) to memex_admin, memex_app;
grant execute on function memex._embed_or_isolate(integer, uuid[], text[], bytea[], boolean) to memex_admin, memex_app;
grant execute on function memex.retry_failed(text) to memex_admin, memex_app;
grant execute on function memex._store_embeddings(integer, uuid[], bytea[], __vector_schema__.vector[]) to memex_admin
, memex_app;
grant execute on function memex._embed_and_store(integer, uuid[], text[], bytea[]) to memex_admin, memex_app;
grant execute on procedure memex.embed_pending(text, integer, integer) to memex_admin;
grant execute on function memex._embed_on_write() to memex_admin, memex_app;
grant execute on function memex._model_hash(text) to memex_admin;

-- re-embedding: memex_admin only
grant execute on function memex._measure_rate(text, text[]) to memex_admin;
grant execute on function memex._reembed_target(text, integer, text) to memex_admin;
grant execute on function memex._reembed_no_op(memex.spaces, text, integer, text, text) to memex_admin;
grant execute on function memex._reembed_lock_key(text) to memex_admin;
grant execute on function memex._reembed_holder(text) to memex_admin;
grant execute on function memex.reembed_plan(text, integer, text, integer) to memex_admin;
grant execute on procedure memex._reembed_pass(integer, integer, boolean, bigint) to memex_admin;
grant execute on procedure memex.reembed(text, integer, text, integer, boolean, boolean, boolean) to memex_admin;

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
grant execute on function memex.tenant_status() to memex_admin, memex_app;
grant select, insert, update on memex.reembeds to memex_admin;
grant select, insert, update on memex.api_tokens to memex_admin;
grant select on memex.reembed_progress to memex_admin;
grant insert, update, delete on memex.spaces to memex_admin;
-- Remote endpoints: applications read the URL and model (their queries are embedded there);
-- keys are not in the database at all.
grant select on memex.endpoints to memex_admin, memex_app;
grant insert, update, delete on memex.endpoints to memex_admin;
grant execute on function memex._check_endpoint_options(jsonb) to memex_admin;
grant execute on function memex.create_endpoint(text, text, text, jsonb, boolean) to memex_admin;
grant execute on function memex._loopback_url(text) to memex_admin;
grant execute on function memex.set_endpoint_key(text, text) to memex_admin;
grant execute on function memex.drop_endpoint(text) to memex_admin;
grant select, insert, update, delete on memex.tenants to memex_admin;

-- search
grant execute on function memex._search_filters(jsonb) to memex_admin, memex_app;
grant execute on function memex._check_reranker(regprocedure) to memex_admin, memex_app;
grant execute on function memex._mmr(
    uuid[], double precision[], uuid[], integer, integer, double precision
) to memex_admin, memex_app;
grant execute on function memex._search(
    text, __vector_schema__.vector, integer, text, jsonb, text, double precision, integer, double precision
    , double precision, double precision, text, integer, regprocedure, integer, double precision, double precision
) to memex_admin, memex_app;
grant execute on function memex.rag_search(
    text, integer, text, jsonb, text, double precision, integer, double precision, double precision
    , double precision, text, integer, regprocedure, integer, double precision, double precision, text
) to memex_admin, memex_app;
grant execute on function memex.rag_search(
    __vector_schema__.vector, integer, text, jsonb, text, double precision, integer, double precision
    , double precision, double precision, text, integer
) to memex_admin, memex_app;
grant execute on function memex.count_tokens(text, text) to memex_admin, memex_app;
grant execute on function memex._join_chunks(text, text) to memex_admin, memex_app;
grant execute on function memex.compose_context(text, integer, integer, text, jsonb, text) to memex_admin, memex_app;

-- limits: every role reads the ceilings its embedding runs under; memex_admin sets them
grant select on memex.limits to memex_admin, memex_app;
grant insert, update, delete on memex.limits to memex_admin;
