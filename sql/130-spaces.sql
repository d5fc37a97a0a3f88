-- Embedding spaces: create, activate, retire, drop; their indexes; what each space holds.
-- Spaces are installation-wide (no tenant): one model serves every tenant. memex_admin manages
-- them; applications read them. Only building and dropping an index needs the table owner,
-- so only memex._build_space_index, memex._drop_space_index and memex._drop_space_storage are
-- SECURITY DEFINER.

-- memex._space_id(name): the id of the named space, or of the active space of domain 'text'
-- when name is null. An id, not the spaces row: a function whose signature names a table's row
-- type is left off the Citus workers (docs/scale.md, "Citus"); callers read the row by its key.
create or replace function memex._space_id(name text default null)
returns integer
language plpgsql
stable
parallel safe
security invoker
set search_path = pg_catalog, pg_temp
as $$
declare
    found_id integer;
begin
    if _space_id.name is null then
        select s.id into found_id from memex.spaces as s where s.domain = 'text' and s.status = 'active';
        if not found then
            raise exception 'no active embedding space for domain text'
                using errcode = 'P0002', hint = 'activate one with memex.activate_space(name)';
        end if;
    else
        select s.id into found_id from memex.spaces as s where s.name = _space_id.name;
        if not found then
            raise exception 'unknown embedding space %', pg_catalog.quote_literal(_space_id.name)
                using errcode = '22023'
                , hint = 'known spaces: ' || coalesce(
                    (select pg_catalog.string_agg(s.name, ', ' order by s.id) from memex.spaces as s), 'none'
                );
        end if;
    end if;
    return found_id;
end
$$;

comment on function memex._space_id(text) is
'Internal: a space''s id by name, or the active text space''s when name is null (22023 / P0002 otherwise).';

-- memex._space_index_name(space_id): the name of a space's vector index,
-- embeddings_space_<id>_<kind> (the default space's, from migration 0003: embeddings_space_1_hnsw).
create or replace function memex._space_index_name(space_id integer)
returns text
language sql
stable
parallel safe
security invoker
set search_path = pg_catalog, pg_temp
as $$
    select 'embeddings_space_' || s.id::text || '_' || s.index_kind
      from memex.spaces as s
     where s.id = _space_index_name.space_id
$$;

comment on function memex._space_index_name(integer) is 'Internal: the name of a space''s vector index.';

-- memex._space_index_valid(space_id): true when the space's index exists and is valid, false
-- when it is INVALID (an interrupted CREATE INDEX CONCURRENTLY left it), null when missing.
create or replace function memex._space_index_valid(space_id integer)
returns boolean
language sql
stable
parallel safe
security invoker
set search_path = pg_catalog, pg_temp
as $$
    select i.indisvalid
      from pg_catalog.pg_index as i
     where i.indexrelid = pg_catalog.to_regclass(
         'memex.' || pg_catalog.quote_ident(memex._space_index_name(_space_index_valid.space_id))
     )
$$;

comment on function memex._space_index_valid(integer) is
'Internal: whether a space''s index is valid (false: INVALID, null: missing).';

-- memex._space_index_sql(space_id, concurrently): the CREATE INDEX statement of a space: a
-- partial expression index on (embedding::vector(N)) WHERE space_id = S.
create or replace function memex._space_index_sql(space_id integer, concurrently boolean default false)
returns text
language plpgsql
stable
parallel safe
security invoker
set search_path = pg_catalog, pg_temp
as $$
declare
    sp memex.spaces;
    vs constant text := $vs$__vector_schema__$vs$;  -- pgvector's schema, quoted, rendered at install
    opclass text;
    params text;
begin
    select s.* into strict sp from memex.spaces as s where s.id = _space_index_sql.space_id;
    opclass := case sp.distance
        when 'cosine' then 'vector_cosine_ops' when 'l2' then 'vector_l2_ops' else 'vector_ip_ops'
    end;
    if sp.index_kind = 'hnsw' then
        params := pg_catalog.format(
            'm = %s, ef_construction = %s'
            , coalesce((sp.options ->> 'm')::integer, 16), coalesce((sp.options ->> 'ef_construction')::integer, 64)
        );
    else
        params := pg_catalog.format('lists = %s', coalesce((sp.options ->> 'lists')::integer, 100));
    end if;
    return pg_catalog.format(
        'create index %s if not exists %I on memex.embeddings using %s ((embedding::%s.vector(%s)) %s.%s) '
        'with (%s) where space_id = %s'
        , case when _space_index_sql.concurrently then 'concurrently' else '' end
        , memex._space_index_name(sp.id), sp.index_kind, vs, sp.dimensions, vs, opclass, params, sp.id
    );
end
$$;

comment on function memex._space_index_sql(integer, boolean) is
'Internal: the CREATE INDEX statement of a space (memex reembed --concurrent-index sends it with CONCURRENTLY).';

-- memex._build_space_index(space_id): builds a space's index if it has none.
-- SECURITY DEFINER because an index on memex.embeddings must be created by its owner
-- (memex_owner) and memex_admin owns nothing. It takes only an id and builds the statement
-- from the validated spaces row; EXECUTE is for memex_admin only.
create or replace function memex._build_space_index(space_id integer)
returns boolean
language plpgsql
volatile
parallel unsafe
security definer
set search_path = pg_catalog, pg_temp
as $$
begin
    if (select s.index_kind from memex.spaces as s where s.id = _build_space_index.space_id) = 'none'
       or pg_catalog.to_regclass('memex.' || memex._space_index_name(_build_space_index.space_id)) is not null then
        return false;
    end if;
    execute memex._space_index_sql(_build_space_index.space_id);
    return true;
end
$$;

comment on function memex._build_space_index(integer) is
'Internal (SECURITY DEFINER: the table owner builds indexes): builds a space''s vector index if missing.';

-- memex._drop_space_index(space_id): drops a space's index. SECURITY DEFINER for the same
-- reason as memex._build_space_index.
create or replace function memex._drop_space_index(space_id integer)
returns void
language plpgsql
volatile
parallel unsafe
security definer
set search_path = pg_catalog, pg_temp
as $$
begin
    execute pg_catalog.format('drop index if exists memex.%I', memex._space_index_name(_drop_space_index.space_id));
end
$$;

comment on function memex._drop_space_index(integer) is
'Internal (SECURITY DEFINER: the table owner drops indexes): drops a space''s vector index.';

-- memex._drop_space_storage(space_id): drops a space's index and its row (its vectors cascade).
-- SECURITY DEFINER for the index, like memex._drop_space_index; the row goes in the same
-- function, as the same role: on Citus the owner's DROP INDEX and a cascade run as the caller
-- would take the same shards over two connections of one transaction, a distributed deadlock.
create or replace function memex._drop_space_storage(space_id integer)
returns void
language plpgsql
volatile
parallel unsafe
security definer
set search_path = pg_catalog, pg_temp
as $$
begin
    execute pg_catalog.format('drop index if exists memex.%I', memex._space_index_name(_drop_space_storage.space_id));
    delete from memex.spaces as s where s.id = _drop_space_storage.space_id;  -- its embeddings cascade
end
$$;

comment on function memex._drop_space_storage(integer) is
'Internal (SECURITY DEFINER: the table owner drops indexes): drops a space''s index and row.';

-- memex.create_space(...): registers a space (status 'building') and builds its empty index.
-- Idempotent by name for the same signature; another signature under an existing name fails.
create or replace function memex.create_space(
    name text, model text, dimensions integer default null, domain text default 'text'
    , distance text default 'cosine', index_kind text default 'hnsw', options jsonb default '{}'
)
returns integer
language plpgsql
volatile
parallel unsafe
security invoker
set search_path = pg_catalog, pg_temp
as $$
declare
    opts jsonb := coalesce(create_space.options, '{}');
    info record;
    dims integer;
    existing memex.spaces;
    new_id integer;
    unknown text[];
    model_hash text;
begin
    if create_space.name is null or create_space.name !~ '^[A-Za-z0-9][A-Za-z0-9_.:@-]{0,127}$' then
        raise exception 'invalid space name %', coalesce(pg_catalog.quote_literal(create_space.name), 'null')
            using errcode = '22023', hint = 'letters, digits and _ . : @ - (at most 128), starting with a letter or digit';
    end if;
    if create_space.domain is null or create_space.domain not in ('text', 'code') then
        raise exception 'invalid domain %: expected text or code', create_space.domain using errcode = '22023';
    end if;
    if create_space.distance is null or create_space.distance not in ('cosine', 'l2', 'inner_product') then
        raise exception 'invalid distance %: expected cosine, l2 or inner_product', create_space.distance
            using errcode = '22023';
    end if;
    if create_space.index_kind is null or create_space.index_kind not in ('hnsw', 'ivfflat', 'none') then
        raise exception 'invalid index_kind %: expected hnsw, ivfflat or none', create_space.index_kind
            using errcode = '22023';
    end if;
    if pg_catalog.jsonb_typeof(opts) <> 'object' then
        raise exception 'space options must be a JSON object' using errcode = '22023';
    end if;
    select pg_catalog.array_agg(k order by k) into unknown
      from pg_catalog.jsonb_object_keys(opts) as k
     where k not in ('m', 'ef_construction', 'lists', 'runtime', 'defer_index');
    if unknown is not null then
        raise exception 'unknown space options: %', pg_catalog.array_to_string(unknown, ', ')
            using errcode = '22023', hint = 'known: m, ef_construction, lists, runtime, defer_index';
    end if;
    if opts ? 'runtime' and opts ->> 'runtime' not in ('auto', 'onnx', 'onnx-int8', 'sentence-transformers') then
        raise exception 'invalid runtime %: expected auto, onnx, onnx-int8 or sentence-transformers', opts ->> 'runtime'
            using errcode = '22023';
    end if;
    info := memex._model_info(create_space.model);  -- 22023 for an unknown model or directory
    dims := coalesce(create_space.dimensions, info.dimensions);
    if dims < 1 or dims > info.dimensions then
        raise exception 'dimensions % for model % (which has %)', dims, create_space.model, info.dimensions
            using errcode = '22023', hint = 'a space may use the model''s dimensions or fewer (truncated, re-normalised)';
    end if;
    if create_space.index_kind <> 'none' and dims > 2000 then
        raise exception 'pgvector indexes at most 2000 dimensions, not %', dims
            using errcode = '22023', hint = 'use fewer dimensions, or index_kind => ''none''';
    end if;
    model_hash := memex._model_hash(create_space.model);
    select s.* into existing from memex.spaces as s where s.name = create_space.name;
    if found then
        if (existing.model, existing.dimensions, existing.domain, existing.distance, existing.index_kind)
           is distinct from (create_space.model, dims, create_space.domain, create_space.distance, create_space.index_kind) then
            raise exception 'space % already exists with another signature (% dimensions of %)'
                , create_space.name, existing.dimensions, existing.model
                using errcode = '42710', hint = 'choose another name, or drop_space the old one';
        end if;
        if existing.model_hash <> model_hash then
            raise exception 'space % was made with other files of model % (model hash %, now %)'
                , create_space.name, existing.model, pg_catalog.left(existing.model_hash, 12), pg_catalog.left(model_hash, 12)
                using errcode = '42710', hint = 'the model changed on the server: re-embed into a space of another name';
        end if;
        return existing.id;
    end if;
    insert into memex.spaces as s (
        name, provider, model, dimensions, model_dimensions, domain, distance, index_kind, options, model_hash
    )
    values (
        create_space.name, info.provider, create_space.model, dims, info.dimensions, create_space.domain
        , create_space.distance, create_space.index_kind, opts, model_hash
    )
    returning s.id into new_id;
    if not coalesce((opts ->> 'defer_index')::boolean, false) and create_space.index_kind = 'hnsw' then
        perform memex._build_space_index(new_id);  -- empty now; HNSW grows with the rows
    end if;
    return new_id;
end
$$;

comment on function memex.create_space(text, text, integer, text, text, text, jsonb) is
'Registers an embedding space (status building) for a model, optionally with fewer dimensions; returns its id.';

-- memex.activate_space(name, force): makes a space the active one of its domain (the previous
-- one is retired), after building its index. Refuses while chunks are still pending in it
-- unless force: search would silently miss them.
create or replace function memex.activate_space(name text, force boolean default false)
returns void
language plpgsql
volatile
parallel unsafe
security invoker
set search_path = pg_catalog, pg_temp
as $$
declare
    sp memex.spaces;
    missing bigint;
begin
    select s.* into strict sp from memex.spaces as s where s.id = memex._space_id(activate_space.name);
    if sp.status = 'active' then
        raise notice 'memex: space % is already active', sp.name;
        return;
    end if;
    -- counting is a pass over every chunk: skipped when forced (reembed has just counted)
    missing := case when activate_space.force then 0 else memex.pending_count(sp.name) end;
    if missing > 0 then
        raise exception 'space % has % chunks without a vector yet', sp.name, missing
            using errcode = '55000'
            , hint = pg_catalog.format('CALL memex.embed_pending(%L) first, or activate_space(%L, force => true)', sp.name, sp.name);
    end if;
    if memex._build_space_index(sp.id) then
        raise notice 'memex: built the % index of space %', sp.index_kind, sp.name;
    end if;
    update memex.spaces as s set status = 'retired', retired_at = pg_catalog.now()
     where s.domain = sp.domain and s.status = 'active';
    update memex.spaces as s set status = 'active', activated_at = pg_catalog.now(), retired_at = null
     where s.id = sp.id;
end
$$;

comment on function memex.activate_space(text, boolean) is
'Makes a space the active one of its domain (the previous one is retired: rollback = activate it again).';

-- memex.retire_space(name): takes a space out of service; its vectors stay until drop_space.
create or replace function memex.retire_space(name text)
returns void
language plpgsql
volatile
parallel unsafe
security invoker
set search_path = pg_catalog, pg_temp
as $$
declare
    sp memex.spaces;
begin
    select s.* into strict sp from memex.spaces as s where s.id = memex._space_id(retire_space.name);
    update memex.spaces as s set status = 'retired', retired_at = pg_catalog.now() where s.id = sp.id;
    if sp.status = 'active' then
        raise warning 'memex: space % was the active % space; there is none now', sp.name, sp.domain
            using hint = 'memex.embed and search need an active space: memex.activate_space(name)';
    end if;
end
$$;

comment on function memex.retire_space(text) is 'Retires a space: not used by default any more; vectors kept.';

-- memex.drop_space(name): deletes a space, its index and its vectors. Never the active one.
create or replace function memex.drop_space(name text)
returns void
language plpgsql
volatile
parallel unsafe
security invoker
set search_path = pg_catalog, pg_temp
as $$
declare
    sp memex.spaces;
begin
    select s.* into strict sp from memex.spaces as s where s.id = memex._space_id(drop_space.name);
    if sp.status = 'active' then
        raise exception 'space % is active', sp.name
            using errcode = '55006', hint = 'activate another space of this domain first';
    end if;
    perform memex._drop_space_storage(sp.id);
end
$$;

comment on function memex.drop_space(text) is 'Drops a space that is not active, with its index and vectors.';

-- Initial loads without the index: the HNSW graph built once at the end of a large load.

-- memex._bulk_index_rows(): the setting memex.bulk_index_rows (default 1000; 0: never): a
-- CALL embed_pending that loads at least this many chunks into a space with no vector yet
-- builds its HNSW index once at the end instead of growing it row by row (docs/embedding.md).
create or replace function memex._bulk_index_rows()
returns integer
language plpgsql
stable
parallel safe
security invoker
set search_path = pg_catalog, pg_temp
as $$
declare
    raw text := pg_catalog.btrim(coalesce(pg_catalog.current_setting('memex.bulk_index_rows', true), ''));
begin
    if raw = '' then
        return 1000;
    end if;
    if raw !~ '^[0-9]{1,9}$' then
        raise exception 'memex.bulk_index_rows must be a number of chunks (0: never), not %', pg_catalog.quote_literal(raw)
            using errcode = '22023';
    end if;
    return raw::integer;
end
$$;

comment on function memex._bulk_index_rows() is
'Internal: memex.bulk_index_rows (default 1000, 0: never); 22023 when it is not a number of chunks.';

-- memex._defer_index_for_load(space_id, loading, current_vectors): true when a load of `loading`
-- chunks should go into the space without its HNSW index, which the load then builds once at
-- its end (memex._finish_load_index): pgvector builds a graph in memory several times faster
-- than it inserts the same vectors one by one (docs/embedding.md, "Initial loads"). Only for a
-- load of at least memex.bulk_index_rows chunks into a space that holds no up-to-date vector yet
-- (or one not searched, status building, that the load at least doubles): dropping the index
-- of a space applications search would turn their searches into scans. Drops the index, waiting
-- at most 1 s for its lock: if searches or writes hold the table longer, the load grows the
-- index as usual.
create or replace function memex._defer_index_for_load(
    space_id integer, loading bigint, current_vectors bigint
)
returns boolean
language plpgsql
volatile
parallel unsafe
security invoker
set search_path = pg_catalog, pg_temp
as $$
declare
    sp memex.spaces;
    min_rows integer := memex._bulk_index_rows();
    saved_timeout text := pg_catalog.current_setting('lock_timeout');
begin
    select s.* into strict sp from memex.spaces as s where s.id = _defer_index_for_load.space_id;
    if sp.index_kind <> 'hnsw' or coalesce((sp.options ->> 'defer_index')::boolean, false)
       or min_rows = 0 or loading < min_rows
       or not (current_vectors = 0 or (sp.status <> 'active' and loading >= current_vectors))
       -- on Citus the drop would run as memex_owner on a connection of its own, behind the
       -- caller's locks on the same shards: a distributed deadlock (docs/scale.md, "Citus")
       or memex._distributed() then
        return false;
    end if;
    -- One runner at a time drops or builds a space's index (two DROPs at once deadlock on the
    -- table and the index; two builds would both create it). Held until the caller commits.
    -- Not waited for: this transaction has read the table (the counts), which the holder's
    -- DROP may be waiting on. The load then grows whatever index is there, and builds it at
    -- its end if the other runner dropped it.
    if not pg_catalog.pg_try_advisory_xact_lock(memex._advisory_class('space_index'), sp.id) then
        return false;
    end if;
    if memex._space_index_valid(sp.id) is null then
        return true;  -- already gone (another runner's load, or an interrupted one): built at the end
    end if;
    begin
        perform pg_catalog.set_config('lock_timeout', '1s', true);
        perform memex._drop_space_index(sp.id);
    exception when lock_not_available then  -- the setting is undone with the subtransaction
        raise notice 'memex.embed_pending: the index of space % is in use: growing it row by row', sp.name;
        return false;
    end;
    perform pg_catalog.set_config('lock_timeout', saved_timeout, true);
    return true;
end
$$;

comment on function memex._defer_index_for_load(integer, bigint, bigint) is
'Internal: drops a space''s HNSW index for a large initial load (built again at its end); true if the load goes without it.';

-- memex._finish_load_index(space_id): builds the HNSW index of a space that should have one
-- and has none (after a load without it, or one that was interrupted); returns the seconds it
-- took, null when there was nothing to build. Writes of vectors wait for the build.
create or replace function memex._finish_load_index(space_id integer)
returns numeric
language plpgsql
volatile
parallel unsafe
security invoker
set search_path = pg_catalog, pg_temp
as $$
declare
    sp memex.spaces;
    started timestamptz := pg_catalog.clock_timestamp();
    saved_timeout text;
begin
    select s.* into strict sp from memex.spaces as s where s.id = _finish_load_index.space_id;
    if sp.index_kind <> 'hnsw' or coalesce((sp.options ->> 'defer_index')::boolean, false)
       or memex._space_index_valid(sp.id) is not null then
        return null;
    end if;
    -- another runner may be building it: wait for it, then look again (memex._defer_index_for_load)
    saved_timeout := pg_catalog.current_setting('lock_timeout');
    perform memex._bounded_lock_timeout();
    begin
        perform pg_catalog.pg_advisory_xact_lock(memex._advisory_class('space_index'), sp.id);
    exception when lock_not_available then
        raise notice 'memex.embed_pending: the index lock of space % is held by %: that session builds the index; this CALL leaves it'
            , sp.name, coalesce(memex._advisory_holders(memex._advisory_class('space_index'), sp.id), 'a session now gone');
        return null;
    end;
    perform pg_catalog.set_config('lock_timeout', saved_timeout, true);  -- the build waits as before
    if memex._space_index_valid(sp.id) is not null then
        return null;
    end if;
    raise notice 'memex.embed_pending: building the hnsw index of space % (writes of vectors wait for it)', sp.name;
    perform memex._build_space_index(sp.id);
    return pg_catalog.round(extract(epoch from pg_catalog.clock_timestamp() - started)::numeric, 1);
end
$$;

comment on function memex._finish_load_index(integer) is
'Internal: builds a space''s missing HNSW index (after a load without it); the seconds it took, or null.';
