-- Pending chunks are claimed shortest first: each claim then holds chunks of about one length,
-- and its inference batches carry almost no padding (docs/embedding.md, "Claims in length
-- order"). The claim walks this index in (token_count, id) order, one tenant at a time.
create index chunks_pending_order on memex.chunks (tenant_id, token_count, id);

-- A reembed's saved position is now (tenant, token_count, chunk id). A position saved by an
-- earlier release has no token count: the pass restarts its tenant from the start, skipping
-- what is already embedded.
alter table memex.reembeds add column cursor_tokens integer;

-- The claim engine's cursor gained the token count: the old signatures go (sql/ creates the
-- new ones).
drop function if exists memex._drain_step(integer, integer, boolean, uuid, uuid, boolean);
drop function if exists memex._pending_chunks(integer, uuid, integer, uuid[]);
