-- Content upserts (documents here; conversations, messages and summaries in sql/125). SECURITY INVOKER: RLS applies, the tenant is memex.current_tenant().
-- Idempotent: unchanged content (same sha256) writes nothing. Concurrency: each function locks
-- its parent row (document or conversation) first, then writes children in key order, so
-- concurrent upserts of the same content serialise instead of duplicating or deadlocking.

-- memex._replace_chunks(kind, source, conversation, body, language, heading, domain): make a
-- source's chunks those of `body`, the first one headed by `heading` (a document's title: it
-- counts for both search legs, and a new title changes that chunk only, never where the others
-- are cut); `domain` (text, code, or null: decided per chunk) as memex._chunk_source.
-- Chunks whose (ord, hash, language) are unchanged are kept, with their ids, so their
-- embeddings stay valid; changed ones are updated in place (their embedding goes stale, i.e.
-- pending); extra ones are deleted.
create or replace function memex._replace_chunks(
    kind text, source uuid, conversation uuid, body text, language text, heading text default null
    , domain text default null
)
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
    doomed uuid[];  -- computed on its own: Citus would run a call with it on the shard
    tenant uuid := memex._require_tenant();
    ords integer[];
    contents text[];
    tokens integer[];
    domains text[];
    old_ids uuid[];
    old_languages text[];
    old_docs bigint[];
    old_tsvs tsvector[];
    new_ids uuid[];
    new_languages text[];
    new_docs bigint[];
    new_tsvs tsvector[];
    retired record;
    added record;
begin
    select
        pg_catalog.array_agg(c.ord order by c.ord)
        , pg_catalog.array_agg(c.content order by c.ord)
        , pg_catalog.array_agg(c.token_count order by c.ord)
        , pg_catalog.array_agg(c.domain order by c.ord)
    into ords, contents, tokens, domains
    from memex._chunk_source(body, _replace_chunks.domain) as c;
    if heading is not null and ords is not null then
        contents[1] := heading || E'\n\n' || contents[1];
        tokens[1] := tokens[1] + memex.count_tokens(heading || E'\n\n');
    end if;

    doomed := array(
        select k.id from memex.chunks as k
         where k.tenant_id = tenant and k.source_kind = kind and k.source_id = source
           and k.ord >= coalesce(pg_catalog.cardinality(ords), 0));
    perform memex._drop_chunks(doomed);
    -- the text versions the upsert below may replace (the caller holds the source's parent
    -- row: no other write changes them meanwhile)
    select pg_catalog.array_agg(k.id), pg_catalog.array_agg(k.language), pg_catalog.array_agg(k.text_doc)
         , pg_catalog.array_agg(k.tsv)
      into old_ids, old_languages, old_docs, old_tsvs
      from memex.chunks as k
     where k.tenant_id = tenant and k.source_kind = kind and k.source_id = source;

    with stored as (
        insert into memex.chunks as k (
            tenant_id, source_kind, message_id, summary_id, document_id, conversation_id
            , ord, content, language, token_count, content_hash, domain
        )
        select
            tenant, kind
            , case when kind = 'message' then source end
            , case when kind = 'summary' then source end
            , case when kind = 'document' then source end
            , conversation, f.ord, f.content, _replace_chunks.language, f.tokens
            , pg_catalog.sha256(pg_catalog.convert_to(f.content, 'UTF8')), f.domain
        from unnest(ords, contents, tokens, domains) as f (ord, content, tokens, domain)  -- FROM-clause form: cannot be qualified
        order by f.ord
        on conflict on constraint chunks_tenant_id_source_kind_source_id_ord_key do update
           set content = excluded.content
               , token_count = excluded.token_count
               , content_hash = excluded.content_hash
               , language = excluded.language
               , domain = excluded.domain
               -- excluded's are their defaults, now() and nextval: no function in DO UPDATE
               -- (Citus); new text, new text version (its old postings are dead)
               , created_at = excluded.created_at
               , text_doc = case when k.content <> excluded.content or k.language <> excluded.language
                                 then excluded.text_doc else k.text_doc end
         where k.content_hash <> excluded.content_hash or k.language <> excluded.language
            or k.domain <> excluded.domain
        returning k.id, k.language, k.text_doc, k.tsv
    )
    select pg_catalog.array_agg(s.id), pg_catalog.array_agg(s.language), pg_catalog.array_agg(s.text_doc)
         , pg_catalog.array_agg(s.tsv)
      into new_ids, new_languages, new_docs, new_tsvs
      from stored as s;
    -- the text index: the versions replaced out, the new ones in
    select pg_catalog.array_agg(memex._text_key(o.language, kind)) as languages, pg_catalog.array_agg(o.text_doc) as docs
         , pg_catalog.array_agg(o.tsv) as tsvs
      into retired
      from unnest(old_ids, old_languages, old_docs, old_tsvs) as o (id, language, text_doc, tsv)
      join unnest(new_ids, new_docs) as n (id, text_doc) on n.id = o.id and n.text_doc <> o.text_doc;
    perform memex._text_apply(tenant, retired.languages, retired.docs, retired.tsvs, -1);
    select pg_catalog.array_agg(memex._text_key(n.language, kind)) as languages, pg_catalog.array_agg(n.text_doc) as docs
         , pg_catalog.array_agg(n.tsv) as tsvs
      into added
      from unnest(new_ids, new_languages, new_docs, new_tsvs) as n (id, language, text_doc, tsv)
     where n.text_doc <> all(coalesce(old_docs, '{}'));
    perform memex._text_apply(tenant, added.languages, added.docs, added.tsvs, 1);
    perform memex._chunks_written(new_ids);
end
$$;

comment on function memex._replace_chunks(text, uuid, uuid, text, text, text, text) is
'Internal: replaces a source''s chunks (the first headed by a title), keeping unchanged ones (and so their embeddings).';

-- memex._folder(path): the folder id for a path, created when missing.
create or replace function memex._folder(path text)
returns uuid
language plpgsql
volatile
parallel unsafe
security invoker
set search_path = pg_catalog, pg_temp
as $$
declare
    tenant uuid := memex._require_tenant();
    folder uuid;
begin
    if path is null then
        return null;
    end if;
    insert into memex.folders as f (tenant_id, path) values (tenant, _folder.path)
    on conflict on constraint folders_tenant_id_path_key do nothing
    returning f.id into folder;
    if folder is null then
        select f.id into folder from memex.folders as f where f.tenant_id = tenant and f.path = _folder.path;
    end if;
    return folder;
end
$$;

comment on function memex._folder(text) is 'Internal: folder id by path, created when missing.';

-- memex.upsert_document_outcome(uri, content, title, metadata, folder): idempotent by (tenant,
-- uri); returns the document's id and what happened: inserted, updated or unchanged (what a
-- program reports; memex.upsert_document below returns the id alone).
create or replace function memex.upsert_document_outcome(
    uri text, content text, title text default null, metadata jsonb default '{}', folder text default null
    , out id uuid, out action text
)
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
    meta jsonb := coalesce(upsert_document_outcome.metadata, '{}');
    digest bytea;
    folder_ref uuid;
    old record;
    doc uuid;
begin
    if upsert_document_outcome.uri is null or pg_catalog.btrim(upsert_document_outcome.uri) = '' then
        raise exception 'document uri must not be empty' using errcode = '22023';
    end if;
    if upsert_document_outcome.content is null then
        raise exception 'document content must not be null (uri %)', upsert_document_outcome.uri using errcode = '22023';
    end if;
    if pg_catalog.jsonb_typeof(meta) <> 'object' then
        raise exception 'document metadata must be a JSON object (uri %)', upsert_document_outcome.uri
            using errcode = '22023';
    end if;
    -- A title heads the first chunk: unbounded, one document's title stopped every tenant's
    -- embedding (docs/embedding.md, "Failures").
    if pg_catalog.length(upsert_document_outcome.title) > 1000 then
        raise exception 'document title has % characters; the limit is 1000 (uri %)'
            , pg_catalog.length(upsert_document_outcome.title), upsert_document_outcome.uri
            using errcode = '22023', hint = 'a title names the document; put long text in its content';
    end if;
    perform memex._document_domain(upsert_document_outcome.uri, meta);  -- 22023 before any write
    digest := pg_catalog.sha256(pg_catalog.convert_to(upsert_document_outcome.content, 'UTF8'));
    folder_ref := memex._folder(upsert_document_outcome.folder);
    loop
        select d.id, d.content_hash, d.title, d.metadata, d.folder_id
          into old
          from memex.documents as d
         where d.tenant_id = tenant and d.uri = upsert_document_outcome.uri
           for update;
        if found then
            if (old.content_hash, old.title, old.metadata, old.folder_id)
               is not distinct from (digest, upsert_document_outcome.title, meta, folder_ref) then
                id := old.id;
                action := 'unchanged';  -- write nothing
                return;
            end if;
            update memex.documents as d
               set content = upsert_document_outcome.content, content_hash = digest, title = upsert_document_outcome.title
                   , metadata = meta, folder_id = folder_ref, mime = meta ->> 'mime'
                   , updated_at = pg_catalog.now()
             where d.tenant_id = tenant and d.id = old.id;
            if old.content_hash = digest and old.title is not distinct from upsert_document_outcome.title
               and memex._ts_config(old.metadata) = memex._ts_config(meta)
               and memex._document_domain(upsert_document_outcome.uri, old.metadata)
                   is not distinct from memex._document_domain(upsert_document_outcome.uri, meta) then
                id := old.id;
                action := 'updated';  -- metadata only: chunks (and embeddings) untouched
                return;
            end if;
            doc := old.id;
            action := 'updated';
            exit;
        end if;
        insert into memex.documents as d (tenant_id, uri, title, mime, content, content_hash, metadata, folder_id)
        values (
            tenant, upsert_document_outcome.uri, upsert_document_outcome.title, meta ->> 'mime', upsert_document_outcome.content
            , digest, meta, folder_ref
        )
        on conflict on constraint documents_tenant_id_uri_key do nothing
        returning d.id into doc;
        action := 'inserted';
        exit when doc is not null;  -- else a concurrent insert won: lock its row and compare
    end loop;
    perform memex._replace_chunks(
        'document', doc, null, upsert_document_outcome.content, memex._ts_config(meta)
        , memex._document_heading(upsert_document_outcome.title, upsert_document_outcome.content)
        , memex._document_domain(upsert_document_outcome.uri, meta)
    );
    id := doc;
end
$$;

comment on function memex.upsert_document_outcome(text, text, text, jsonb, text) is
'Creates or updates a document by uri, like memex.upsert_document, and says what it did: inserted, updated or unchanged.';

-- memex.upsert_document(uri, content, title, metadata, folder): idempotent by (tenant, uri);
-- the document's id.
create or replace function memex.upsert_document(
    uri text, content text, title text default null, metadata jsonb default '{}', folder text default null
)
returns uuid
language sql
volatile
parallel unsafe
security invoker
set search_path = pg_catalog, pg_temp
as $$
    select o.id from memex.upsert_document_outcome(
        upsert_document.uri, upsert_document.content, upsert_document.title, upsert_document.metadata
        , upsert_document.folder
    ) as o
$$;


comment on function memex.upsert_document(text, text, text, jsonb, text) is
'Creates or updates a document by uri; unchanged content writes nothing, changed content replaces its chunks (pending embedding).';

-- memex.delete_document(uri): true when a document was deleted, with its chunks (out of the
-- text index first: memex._drop_chunks).
create or replace function memex.delete_document(uri text)
returns boolean
language plpgsql
volatile
parallel unsafe
security invoker
set search_path = pg_catalog, pg_temp
-- custom plans: a generic one made on small tables scans by tenant alone (docs/architecture.md)
set plan_cache_mode = force_custom_plan
as $$
declare
    doomed uuid[];  -- computed on its own: Citus would run a call with it on the shard
    tenant uuid := memex._require_tenant();
    document uuid;
begin
    select d.id into document from memex.documents as d
     where d.tenant_id = tenant and d.uri = delete_document.uri
       for update;
    if document is null then
        return false;
    end if;
    doomed := array(
        select k.id from memex.chunks as k where k.tenant_id = tenant and k.document_id = document);
    perform memex._drop_chunks(doomed);
    delete from memex.documents as d where d.tenant_id = tenant and d.id = document;
    return true;
end
$$;

comment on function memex.delete_document(text) is
'Deletes a document by uri with its chunks; true when one was deleted.';
