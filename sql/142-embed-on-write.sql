-- Embed on write (off by default): with SET memex.embed_on_write = on (per session, role or
-- database), new and changed chunks are embedded into the active text space inside the writing
-- statement. Every write then pays the embedding time (docs/embedding.md):
-- for small apps with no background job.
create or replace function memex._embed_on_write()
returns trigger
language plpgsql
volatile
parallel unsafe
security invoker
set search_path = pg_catalog, pg_temp
as $$
declare
    sp memex.spaces;
    ids uuid[];
    contents text[];
    hashes bytea[];
begin
    if pg_catalog.lower(coalesce(pg_catalog.current_setting('memex.embed_on_write', true), 'off'))
       not in ('on', 'true', '1', 'yes') then
        return null;
    end if;
    sp := memex._space(null);
    select
        pg_catalog.array_agg(n.id order by n.id)
        , pg_catalog.array_agg(memex._embedding_text(n.content, n.context) order by n.id)
        , pg_catalog.array_agg(n.content_hash order by n.id)
    into ids, contents, hashes
    from changed_chunks as n
    where n.id in (
        select p from memex._pending_chunks(sp.id, among => array(select c.id from changed_chunks as c)) as p
    );
    if ids is null then
        return null;
    end if;
    -- a chunk that cannot be embedded is recorded, not a reason to refuse the write
    perform memex._embed_or_isolate(sp.id, ids, contents, hashes);
    return null;
end
$$;

comment on function memex._embed_on_write() is
'Internal trigger: embeds new and changed chunks at write time when memex.embed_on_write is on.';

drop trigger if exists embed_on_insert on memex.chunks;
create trigger embed_on_insert after insert on memex.chunks
referencing new table as changed_chunks
for each statement execute function memex._embed_on_write();

drop trigger if exists embed_on_update on memex.chunks;
create trigger embed_on_update after update on memex.chunks
referencing new table as changed_chunks
for each statement execute function memex._embed_on_write();
