-- CALL memex.rechunk(batch_size): re-cut every stored source (documents, messages, summaries) of
-- every tenant the caller may list with today's chunking rules. An upgrade whose release
-- changed the rules (titles as headings in 0006, code/text domains in 0011) leaves the chunks
-- of existing content cut the old way until then, and an unchanged re-upsert writes nothing.
-- Chunks that come out the same keep their ids and vectors (memex._replace_chunks); changed
-- ones become pending for `CALL memex.embed_pending()`. One committed transaction per batch of
-- sources; each source's parent row is locked first, as the upserts do. Idempotent.
create or replace procedure memex.rechunk(batch_size integer default 200)
language plpgsql
as $$
declare
    tenant uuid;
    source record;
    done bigint := 0;
    total bigint := 0;
    in_batch integer := 0;
    last_notice timestamptz := pg_catalog.clock_timestamp();
begin
    set local search_path = pg_catalog, pg_temp;
    perform memex._check_batch_size(batch_size);
    for tenant in select t.id from memex.tenants as t order by t.id loop
        perform memex._act_for(tenant::text);
        total := total + (select pg_catalog.count(*) from memex.documents as d where d.tenant_id = tenant)
            + (select pg_catalog.count(*) from memex.messages as m where m.tenant_id = tenant)
            + (select pg_catalog.count(*) from memex.summaries as s where s.tenant_id = tenant);
    end loop;
    raise notice 'memex.rechunk: % sources to re-cut', total
        using detail = pg_catalog.jsonb_build_object('event', 'start', 'done', 0, 'total', total)::text;
    for tenant in select t.id from memex.tenants as t order by t.id loop
        perform memex._act_for(tenant::text);
        -- Ids only (the loop's rows are kept across COMMITs); the content is read under a lock.
        for source in
            select 'document' as kind, d.id from memex.documents as d where d.tenant_id = tenant
            union all
            select 'message', m.id from memex.messages as m where m.tenant_id = tenant
            union all
            select 'summary', s.id from memex.summaries as s where s.tenant_id = tenant
            order by 1, 2
        loop
            perform memex._rechunk_source(source.kind, source.id);
            done := done + 1;
            in_batch := in_batch + 1;
            if in_batch >= batch_size then
                commit;
                set local search_path = pg_catalog, pg_temp;
                perform memex._act_for(tenant::text);
                in_batch := 0;
                if pg_catalog.clock_timestamp() - last_notice >= interval '1 second' then
                    last_notice := pg_catalog.clock_timestamp();
                    raise notice 'memex.rechunk: %/% sources (% %%)', done, total
                        , pg_catalog.round(100.0 * done / greatest(total, 1))
                        using detail = pg_catalog.jsonb_build_object('event', 'progress', 'done', done
                                                                    , 'total', total)::text;
                end if;
            end if;
        end loop;
        commit;
        set local search_path = pg_catalog, pg_temp;
    end loop;
    raise notice 'memex.rechunk: done, % sources re-cut; chunks that changed are pending: CALL memex.embed_pending()'
        , done
        using detail = pg_catalog.jsonb_build_object('event', 'done', 'done', done, 'total', total)::text;
end
$$;

comment on procedure memex.rechunk (integer) is
'Re-cuts every stored source of every tenant the caller may list with today''s chunking rules (after an upgrade that changed them); changed chunks become pending.';

-- memex._rechunk_source(kind, id): one source of the current tenant re-cut, its parent row
-- locked first (the document, or the conversation of a message or summary), like the upserts.
create or replace function memex._rechunk_source(kind text, id uuid)
returns void
language plpgsql
volatile
parallel unsafe
security invoker
set search_path = pg_catalog, pg_temp
-- custom plans: a generic one made on small tables scans by tenant alone (docs/architecture.md)
set plan_cache_mode = force_custom_plan
as $$
declare
    tenant uuid := memex._require_tenant();
    d record;
    body text;
    conversation uuid;
    lang text;
begin
    if kind = 'document' then
        select x.id, x.uri, x.title, x.content, x.metadata into d
          from memex.documents as x where x.tenant_id = tenant and x.id = _rechunk_source.id for update;
        if found then
            perform memex._replace_chunks(
                'document', d.id, null, d.content, memex._ts_config(d.metadata)
                , memex._document_heading(d.title, d.content), memex._document_domain(d.uri, d.metadata)
            );
        end if;
        return;
    end if;
    if kind = 'message' then
        select m.conversation_id into conversation from memex.messages as m
         where m.tenant_id = tenant and m.id = _rechunk_source.id;
    elsif kind = 'summary' then
        select s.conversation_id into conversation from memex.summaries as s
         where s.tenant_id = tenant and s.id = _rechunk_source.id;
    else
        raise exception 'unknown source kind %', kind using errcode = '22023';
    end if;
    select memex._ts_config(c.metadata) into lang
      from memex.conversations as c where c.tenant_id = tenant and c.id = conversation for update;
    if kind = 'message' then
        select m.content into body from memex.messages as m where m.tenant_id = tenant and m.id = _rechunk_source.id;
    else
        select s.content into body from memex.summaries as s where s.tenant_id = tenant and s.id = _rechunk_source.id;
    end if;
    if body is not null then
        perform memex._replace_chunks(kind, _rechunk_source.id, conversation, body, lang);
        if kind = 'message' then
            perform memex._message_contexts(conversation, _rechunk_source.id);
        end if;
    end if;
end
$$;

comment on function memex._rechunk_source(text, uuid) is
'Internal: re-cuts one source (document, message or summary) of the current tenant with today''s chunking rules.';
