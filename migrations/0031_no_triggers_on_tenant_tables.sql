-- No trigger on a tenant table (docs/scale.md, "Citus": triggers fire on worker shards and fail
-- there, and Citus refuses even DROP TRIGGER on a distributed table, so sql/ holds no trigger
-- DDL at all). The text index's upkeep, the queue's NOTIFY, embed-on-write and the dimension
-- check now run in the write functions (sql/120, 143, 145, 141); their triggers and trigger
-- functions go here, once.
-- Only the triggers that exist: Citus refuses DROP TRIGGER IF EXISTS on a distributed table.
do $$
declare
    t record;
begin
    for t in
        select c.relname, g.tgname from pg_catalog.pg_trigger as g
          join pg_catalog.pg_class as c on c.oid = g.tgrelid
         where c.relnamespace = 'memex'::regnamespace and not g.tgisinternal
           and (c.relname, g.tgname) in (
               ('embeddings', 'dimension_guard'), ('embeddings', 'dimension_guard_insert')
               , ('embeddings', 'dimension_guard_update'), ('chunks', 'embed_on_insert')
               , ('chunks', 'embed_on_update'), ('chunks', 'notify_pending_insert')
               , ('chunks', 'notify_pending_update'), ('chunks', 'text_version')
               , ('chunks', 'text_index_insert'), ('chunks', 'text_index_update')
               , ('chunks', 'text_index_delete')
           )
    loop
        execute pg_catalog.format('drop trigger %I on memex.%I', t.tgname, t.relname);
    end loop;
end
$$;
drop function if exists memex._dimension_guard();
drop function if exists memex._embed_on_write();
drop function if exists memex._notify_pending();
drop function if exists memex._text_index_chunks();
drop function if exists memex._text_new_version();
drop function if exists memex._text_apply(memex.chunks[], integer);
drop function if exists memex._text_terms(memex.chunks);
