-- Embed on write (off by default): with SET memex.embed_on_write = on (per session, role or
-- database), new and changed chunks are embedded into the active text space inside the writing
-- call (upsert_document, upsert_messages, ...). Every write then pays the embedding time
-- (docs/embedding.md): for small apps with no background job. The write functions call it for
-- the chunks they stored (memex._chunks_written, sql/143): no trigger on a tenant table
-- (docs/scale.md, "Citus").
create or replace function memex._embed_on_write(chunk_ids uuid[])
returns void
language plpgsql
volatile
parallel unsafe
security invoker
set search_path = pg_catalog, pg_temp
as $$
declare
    tenant uuid := memex._require_tenant();
    sp memex.spaces;
    pending uuid[];
    ids uuid[];
    contents text[];
    hashes bytea[];
begin
    if pg_catalog.lower(coalesce(pg_catalog.current_setting('memex.embed_on_write', true), 'off'))
       not in ('on', 'true', '1', 'yes') then
        return;
    end if;
    select s.* into strict sp from memex.spaces as s where s.id = memex._space_id(null);
    -- on its own: Citus runs a statement over one tenant's rows on its shard, where a function
    -- reading distributed tables cannot run
    pending := array(select p from memex._pending_chunks(sp.id, among => chunk_ids) as p);
    select
        pg_catalog.array_agg(n.id order by n.id)
        , pg_catalog.array_agg(memex._embedding_text(n.content, n.context) order by n.id)
        , pg_catalog.array_agg(n.content_hash order by n.id)
    into ids, contents, hashes
    from memex.chunks as n
    where n.tenant_id = tenant and n.id = any(pending);
    if ids is null then
        return;
    end if;
    -- a chunk that cannot be embedded is recorded, not a reason to refuse the write
    perform memex._embed_or_isolate(sp.id, ids, contents, hashes);
end
$$;

comment on function memex._embed_on_write(uuid[]) is
'Internal: embeds the given new or changed chunks at write time when memex.embed_on_write is on.';
