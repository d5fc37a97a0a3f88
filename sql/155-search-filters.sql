-- rag_search filters: validated whole, turned into SQL over chunks whose values stay parameters.

-- memex._memory_time(tenant, message, conversation, document, created): when a chunk's memory
-- happened: its message's time, else its conversation's date, else its document's creation, else
-- the chunk's own (recency reads it; the after / before filters state the same rule as SQL,
-- memex._search_filters).
create or replace function memex._memory_time(
    tenant uuid, message uuid, conversation uuid, document uuid, created timestamptz
)
returns timestamptz
language plpgsql
stable
parallel safe
security invoker
set search_path = pg_catalog, pg_temp
as $$
begin
    return coalesce(
        (select m.ts from memex.messages as m where m.tenant_id = _memory_time.tenant and m.id = _memory_time.message)
        , (select v.created_date::timestamptz from memex.conversations as v
            where v.tenant_id = _memory_time.tenant and v.id = _memory_time.conversation)
        , (select d.created_at from memex.documents as d
            where d.tenant_id = _memory_time.tenant and d.id = _memory_time.document)
        , _memory_time.created);
end
$$;

comment on function memex._memory_time(uuid, uuid, uuid, uuid, timestamptz) is
'Internal: when a chunk''s memory happened (message time, conversation date, document creation, chunk creation).';

-- memex._search_filters(filters): the WHERE fragment (over chunks `c`) for a filters object,
-- reading every value from parameter $3 (the filters themselves). Unknown keys and wrong types
-- are errors naming them.
create or replace function memex._search_filters(filters jsonb)
returns text
language plpgsql
immutable
parallel safe
security invoker
set search_path = pg_catalog, pg_temp
as $$
declare
    f jsonb := coalesce(_search_filters.filters, '{}');
    key text;
    clauses text[] := '{}';
    known constant text[] := array[
        'source_kind', 'conversation', 'levels', 'document_uri_prefix', 'folder', 'topics_any'
        , 'created_after', 'created_before', 'after', 'before', 'metadata', 'domain'
    ];
    want constant jsonb := '{"source_kind": "array", "conversation": "string", "levels": "array",
        "document_uri_prefix": "string", "folder": "string", "topics_any": "array",
        "created_after": "string", "created_before": "string", "after": "string", "before": "string",
        "metadata": "object",
        "domain": "string"}';
    -- memex._memory_time's rule without the message's time, as SQL over the chunk: the filters
    -- run inside the legs' queries, which Citus sends whole to the tenant's shards, where a
    -- function that queries tables cannot run (docs/scale.md)
    memory_time constant text := 'coalesce(
            (select v.created_date::timestamptz from memex.conversations as v
              where v.tenant_id = c.tenant_id and v.id = c.conversation_id)
            , (select d.created_at from memex.documents as d where d.tenant_id = c.tenant_id and d.id = c.document_id)
            , c.created_at)';
begin
    if pg_catalog.jsonb_typeof(f) <> 'object' then
        raise exception 'filters must be a JSON object, not %', pg_catalog.jsonb_typeof(f) using errcode = '22023';
    end if;
    for key in select k from pg_catalog.jsonb_object_keys(f) as k order by k loop
        if not key = any(known) then
            raise exception 'unknown filter key %', pg_catalog.quote_literal(key)
                using errcode = '22023', hint = 'known keys: ' || pg_catalog.array_to_string(known, ', ');
        end if;
        if pg_catalog.jsonb_typeof(f -> key) <> want ->> key then
            raise exception 'filter % must be a JSON %, not %', key, want ->> key, pg_catalog.jsonb_typeof(f -> key)
                using errcode = '22023';
        end if;
    end loop;
    if f ? 'domain' then
        if f ->> 'domain' not in ('text', 'code') then
            raise exception 'filter domain: expected text or code, not %', pg_catalog.quote_literal(f ->> 'domain')
                using errcode = '22023';
        end if;
        clauses := clauses || text 'c.domain = $3 ->> ''domain''';
    end if;
    if f ? 'source_kind' then
        if exists (
            select from pg_catalog.jsonb_array_elements(f -> 'source_kind') as x
             where pg_catalog.jsonb_typeof(x) <> 'string' or x #>> '{}' not in ('message', 'summary', 'document')
        ) then
            raise exception 'filter source_kind: expected an array of message, summary, document'
                using errcode = '22023';
        end if;
        clauses := clauses || text 'c.source_kind in (select pg_catalog.jsonb_array_elements_text($3 -> ''source_kind''))';
    end if;
    if f ? 'levels' then
        if exists (
            select from pg_catalog.jsonb_array_elements(f -> 'levels') as x
             where pg_catalog.jsonb_typeof(x) <> 'number' or (x #>> '{}')::numeric <> pg_catalog.trunc((x #>> '{}')::numeric)
        ) then
            raise exception 'filter levels: expected an array of integers' using errcode = '22023';
        end if;
        clauses := clauses || text 'exists (select 1 from memex.summaries as s where s.tenant_id = c.tenant_id and s.id = c.summary_id
            and s.level in (select (pg_catalog.jsonb_array_elements_text($3 -> ''levels''))::integer))';
    end if;
    if f ? 'topics_any' then
        clauses := clauses || text 'exists (select 1 from memex.summaries as s where s.tenant_id = c.tenant_id and s.id = c.summary_id
            and s.topics && array(select pg_catalog.jsonb_array_elements_text($3 -> ''topics_any'')))';
    end if;
    if f ? 'conversation' then
        clauses := clauses || text 'c.conversation_id = (select v.id from memex.conversations as v
            where v.tenant_id = c.tenant_id and v.slug = $3 ->> ''conversation'')';
    end if;
    if f ? 'document_uri_prefix' then
        clauses := clauses || text 'exists (select 1 from memex.documents as d where d.tenant_id = c.tenant_id and d.id = c.document_id
            and pg_catalog.starts_with(d.uri, $3 ->> ''document_uri_prefix''))';
    end if;
    if f ? 'folder' then
        clauses := clauses || text 'exists (select 1 from memex.documents as d join memex.folders as o
            on o.tenant_id = d.tenant_id and o.id = d.folder_id
            where d.tenant_id = c.tenant_id and d.id = c.document_id
              and (o.path = $3 ->> ''folder'' or pg_catalog.starts_with(o.path, ($3 ->> ''folder'') || ''/'')))';
    end if;
    if f ? 'created_after' or f ? 'created_before' then
        begin
            perform (f ->> 'created_after')::timestamptz, (f ->> 'created_before')::timestamptz;
        exception when others then
            raise exception 'filters created_after / created_before must be ISO dates or timestamps'
                using errcode = '22023';
        end;
        -- A chunk's date: its conversation's date, else its document's creation, else its own
        -- (a memory's time without its message's).
        clauses := clauses || (text 'pg_catalog.tstzrange(coalesce(($3 ->> ''created_after'')::timestamptz, ''-infinity'')
            , coalesce(($3 ->> ''created_before'')::timestamptz, ''infinity''), ''[]'') @> ' || memory_time);
    end if;
    if f ? 'after' or f ? 'before' then
        begin
            perform (f ->> 'after')::timestamptz, (f ->> 'before')::timestamptz;
        exception when others then
            raise exception 'filters after / before must be ISO dates or timestamps, not %'
                , coalesce(f ->> 'after', '') || case when f ? 'after' and f ? 'before' then ' / ' else '' end
                  || coalesce(f ->> 'before', '')
                using errcode = '22023', hint = 'e.g. "2023-05-08" or "2023-05-08T13:56:00Z"';
        end;
        -- after is inclusive, before exclusive
        clauses := clauses || (text 'pg_catalog.tstzrange(coalesce(($3 ->> ''after'')::timestamptz, ''-infinity'')
            , coalesce(($3 ->> ''before'')::timestamptz, ''infinity''), ''[)'') @> coalesce(
            (select m.ts from memex.messages as m where m.tenant_id = c.tenant_id and m.id = c.message_id), '
            || memory_time || ')');
    end if;
    if f ? 'metadata' then
        clauses := clauses || text '(exists (select 1 from memex.documents as d where d.tenant_id = c.tenant_id
            and d.id = c.document_id and d.metadata @> ($3 -> ''metadata''))
            or exists (select 1 from memex.conversations as v where v.tenant_id = c.tenant_id
            and v.id = c.conversation_id and v.metadata @> ($3 -> ''metadata'')))';
    end if;
    if pg_catalog.cardinality(clauses) = 0 then
        return '';
    end if;
    return ' and ' || pg_catalog.array_to_string(clauses, ' and ');
end
$$;

comment on function memex._search_filters(jsonb) is
'Internal: validates rag_search filters (22023 naming the key) and returns their SQL over chunks c, values read from $3.';
