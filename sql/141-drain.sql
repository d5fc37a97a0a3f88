-- The drain engine: every batch embed_pending, reembed and `memex worker` embed comes from
-- memex._drain_step (the pending chunks of memex._pending_chunks, sql/140-pending.sql), is
-- embedded and stored by memex._embed_or_isolate, and a chunk that fails alone is recorded.
-- Runs as memex_admin (or the application, embed on write) under RLS, tenant by tenant.

-- memex._drain_step(space_id, n, claim, place, one_tenant): the next batch of pending chunks
-- over every tenant the caller may list, tenant by tenant in id order, chunks shortest first
-- (memex._pending_chunks' order): the one engine behind CALL memex.embed_pending, CALL
-- memex.reembed and `memex worker`. The caller keeps `place` (memex.drain_position; null:
-- start) between calls, embeds the batch, stores it (memex._store_embeddings) and commits;
-- the tenant stays set for its transaction. `finished` when every tenant is done.
--   claim: lock the rows (FOR NO KEY UPDATE SKIP LOCKED) so concurrent runners take disjoint
--   rows, and at the end of a tenant pass once more from its start for rows another runner
--   held and let go. Without claim (reembed), nothing is locked: writers never wait.
--   one_tenant: stay on place's tenant: `finished` when its pass is done (memex._claim_step
--   visits the tenants in turn this way).
-- Holds the shared 'embedders' advisory lock for the transaction (the embedding backends'
-- head count), and sets memex.in_load for it: the batch's embed_batch keeps more freed heap
-- mapped for the next batch (memex_db.api; the CALL trims it at its end).
create or replace function memex._drain_step(
    space_id integer, n integer, claim boolean, inout place memex.drain_position
    , one_tenant boolean default false
    , out finished boolean, out ids uuid[], out contents text[], out hashes bytea[]
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
    candidates uuid[];
begin
    -- shared, tried: a session that took this key exclusively must not stop every embedding
    -- (the head count is then one short)
    perform pg_catalog.pg_try_advisory_xact_lock_shared(memex._advisory_class('embedders'), 1);
    perform pg_catalog.set_config('memex.in_load', 'on', true);
    finished := false;
    if place.tenant is null then
        place := row((select t.id from memex.tenants as t order by t.id limit 1), null, null, false);
    end if;
    place.wrapped := coalesce(place.wrapped, false);
    loop
        if place.tenant is null then
            finished := true;
            return;
        end if;
        perform memex._act_for(place.tenant::text);
        candidates := array(
            select p from memex._pending_chunks(_drain_step.space_id, place.after_tokens, place.after, n) as p
        );
        if pg_catalog.cardinality(candidates) > 0 then
            place.after := candidates[pg_catalog.cardinality(candidates)];
            place.after_tokens := (
                select c.token_count from memex.chunks as c
                 where c.tenant_id = place.tenant and c.id = place.after
            );
            if claim then
                -- Lock what no other runner holds, then re-read with a new snapshot: a row
                -- another runner stored between our first read and our lock is dropped.
                candidates := array(
                    select c.id from memex.chunks as c
                     where c.tenant_id = place.tenant and c.id = any(candidates)
                     order by c.id
                       for no key update of c skip locked
                );
                candidates := array(
                    select p from memex._pending_chunks(_drain_step.space_id, among => candidates) as p
                );
            end if;
            if pg_catalog.cardinality(candidates) > 0 then
                select pg_catalog.array_agg(c.id order by c.id)
                     , pg_catalog.array_agg(memex._embedding_text(c.content, c.context) order by c.id)
                     , pg_catalog.array_agg(c.content_hash order by c.id)
                  into ids, contents, hashes
                  from memex.chunks as c
                 where c.tenant_id = place.tenant and c.id = any(candidates);
                return;
            end if;
            continue;  -- every candidate was another runner's: the next ones
        end if;
        if claim and not place.wrapped and place.after is not null then
            -- once more from the start, for rows that were held when passed
            place := row(place.tenant, null, null, true);
            continue;
        end if;
        if one_tenant then
            finished := true;
            return;
        end if;
        place := row(
            (select t.id from memex.tenants as t where t.id > place.tenant order by t.id limit 1), null, null, false
        );
    end loop;
end
$$;

comment on function memex._drain_step(integer, integer, boolean, memex.drain_position, boolean) is
'Internal: the next batch of pending chunks over every tenant, or of one (the engine of embed_pending, reembed and memex worker).';

-- memex._claim_step(space_id, n, cursors): the next claimed batch, the tenants served in turn:
-- one batch of a tenant, then one of the next tenant with chunks left, and so on, so a tenant
-- that keeps writing cannot hold the queue while the others wait (memex._drain_step holds on
-- to a tenant until its pass is done). `cursors` carries each tenant's memex.drain_position
-- between calls (the caller passes back what it got; null starts a run over the tenants that
-- exist now). `finished` when every tenant's pass is done. The tenant stays set for the
-- transaction.
create or replace function memex._claim_step(
    space_id integer, n integer, inout cursors jsonb
    , out finished boolean, out tenant uuid, out ids uuid[], out contents text[], out hashes bytea[]
)
language plpgsql
volatile
parallel unsafe
security invoker
set search_path = pg_catalog, pg_temp
as $$
declare
    queue text[];
    turn integer;
    visited integer := 0;
    saved jsonb;
    step record;
begin
    if cursors is null then
        cursors := pg_catalog.jsonb_build_object(
            'tenants', coalesce((select pg_catalog.jsonb_agg(t.id order by t.id) from memex.tenants as t), '[]')
            , 'next', 0, 'at', '{}'::jsonb
        );
    end if;
    queue := array(select pg_catalog.jsonb_array_elements_text(cursors -> 'tenants'));
    turn := (cursors ->> 'next')::integer;
    while visited < coalesce(pg_catalog.cardinality(queue), 0) loop
        tenant := queue[turn % pg_catalog.cardinality(queue) + 1]::uuid;
        turn := turn + 1;
        visited := visited + 1;
        saved := coalesce(cursors -> 'at' -> tenant::text, '{}');
        continue when saved = '"done"';
        select d.* into step
          from memex._drain_step(
              _claim_step.space_id, n, true
              , pg_catalog.jsonb_populate_record(row(tenant, null, null, false)::memex.drain_position, saved)
              , one_tenant => true
          ) as d;
        cursors := pg_catalog.jsonb_set(
            pg_catalog.jsonb_set(
                cursors, array['at', tenant::text]
                , case when step.finished then '"done"' else pg_catalog.to_jsonb(step.place) end
            )
            , '{next}', pg_catalog.to_jsonb(turn)
        );
        if not step.finished then
            finished := false;
            ids := step.ids;
            contents := step.contents;
            hashes := step.hashes;
            return;
        end if;
    end loop;
    finished := true;
    tenant := null;
end
$$;

comment on function memex._claim_step(integer, integer, jsonb) is
'Internal: the next claimed batch of pending chunks, the tenants served in turn (embed_pending, memex worker).';

-- memex._store_embeddings(space_id, chunk_ids, hashes, vectors): stores vectors made from the
-- given content hashes; a vector whose chunk changed since is not stored (it would be stale).
-- The chunks are locked KEY SHARE, skipping rows a concurrent delete holds: a chunk deleted
-- while its vector was computed is skipped instead of failing the foreign key. Callers that
-- already lock their rows (claims, embed-on-write) are not affected: their own locks do not
-- conflict.
create or replace function memex._store_embeddings(
    space_id integer, chunk_ids uuid[], hashes bytea[], vectors __vector_schema__.vector[]
)
returns integer
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
    stored integer;
    bad record;
begin
    if pg_catalog.cardinality(chunk_ids) is distinct from pg_catalog.cardinality(vectors)
       or pg_catalog.cardinality(chunk_ids) is distinct from pg_catalog.cardinality(hashes) then
        raise exception 'chunk_ids, hashes and vectors must have the same length' using errcode = '22023';
    end if;
    -- vectors of different models or dimensions are never mixed in a space
    select __vector_schema__.vector_dims(x.v) as got, s.dimensions as want into bad
      from unnest(vectors) as x (v)
      left join memex.spaces as s on s.id = _store_embeddings.space_id
     where x.v is not null and __vector_schema__.vector_dims(x.v) is distinct from s.dimensions
     limit 1;
    if found then
        raise exception 'a vector of % dimensions cannot go into space % (% dimensions)'
            , bad.got, _store_embeddings.space_id, bad.want
            using errcode = '22000', hint = 'vectors of different models or dimensions are never mixed';
    end if;
    insert into memex.embeddings as e (space_id, tenant_id, chunk_id, embedding, content_hash)
    select _store_embeddings.space_id, tenant, x.id, x.v, x.h
      from unnest(chunk_ids, hashes, vectors) as x (id, h, v)  -- FROM-clause form: cannot be qualified
      join memex.chunks as c on c.tenant_id = tenant and c.id = x.id and c.content_hash = x.h
     order by x.id
       for key share of c skip locked
    on conflict on constraint embeddings_pkey do update
       -- excluded.embedded_at is its default, now(): no function in DO UPDATE (Citus)
       set embedding = excluded.embedding, content_hash = excluded.content_hash, embedded_at = excluded.embedded_at
     where e.content_hash <> excluded.content_hash;
    get diagnostics stored = row_count;
    -- a chunk embedded now no longer fails (the records of a retry that worked)
    delete from memex.embedding_failures as f
     where f.space_id = _store_embeddings.space_id and f.tenant_id = tenant and f.chunk_id = any(chunk_ids);
    return stored;
end
$$;

comment on function memex._store_embeddings(integer, uuid[], bytea[], __vector_schema__.vector[]) is
'Internal: stores vectors for chunks of the current tenant, only where the chunk still has that content hash.';

-- memex._embed_and_store(space_id, chunk_ids, contents, hashes): embeds the contents with the
-- space's model in this backend and stores them for those chunks (memex._store_embeddings).
create or replace function memex._embed_and_store(
    space_id integer, chunk_ids uuid[], contents text[], hashes bytea[]
)
returns integer
language plpgsql
volatile
parallel unsafe
security invoker
set search_path = pg_catalog, pg_temp
as $$
declare
    vectors __vector_schema__.vector[];
begin
    select pg_catalog.array_agg(b.embedding order by b.ord) into vectors
      from memex.embed_batch(
          contents, (select s.name from memex.spaces as s where s.id = _embed_and_store.space_id)
      ) as b;
    return memex._store_embeddings(_embed_and_store.space_id, chunk_ids, hashes, vectors);
end
$$;

comment on function memex._embed_and_store(integer, uuid[], text[], bytea[]) is
'Internal: embeds texts in this backend with a space''s model and stores them for the given chunks.';

-- Failures (docs/embedding.md, "Failures"). A batch that fails is split in halves until the
-- chunk that fails alone is found; its failure is recorded with its error and a time to retry;
-- at the last attempt it is parked (retry_at null) until memex.retry_failed(). Only a data fault
-- (SQLSTATE class 22) or a limit (54) can be a chunk's own, and only when the space embeds a
-- harmless text at that moment: a model that cannot load, an endpoint that is down, a bad
-- setting or a cancel stop the run as before, and park nothing.

-- memex._failure_retry_at(attempts): when a chunk that failed `attempts` times is tried again:
-- 1 minute, 10 minutes, 1 hour later; null (parked) after the 4th failure.
create or replace function memex._failure_retry_at(attempts integer)
returns timestamptz
language sql
stable
parallel safe
security invoker
set search_path = pg_catalog, pg_temp
as $$
    select case when _failure_retry_at.attempts >= 4 then null
                else pg_catalog.now() + pg_catalog.make_interval(mins => (array[1, 10, 60])[_failure_retry_at.attempts])
           end
$$;

comment on function memex._failure_retry_at(integer) is
'Internal: the retry time of a chunk after its n-th failure to embed (1 min, 10 min, 1 h; null: parked after the 4th).';

-- memex._record_embedding_failure(space_id, chunk_id, content_hash, sqlstate, error): one more
-- failure of the chunk's content in the space (the count restarts when its content changed),
-- with a NOTICE naming the tenant, the chunk and the error.
create or replace function memex._record_embedding_failure(
    space_id integer, chunk_id uuid, content_hash bytea, sqlstate text, error text
)
returns void
language plpgsql
volatile
parallel unsafe
security invoker
set search_path = pg_catalog, pg_temp
set plan_cache_mode = force_custom_plan
as $$
declare
    tenant uuid := memex._require_tenant();
    old record;
    attempts integer := 1;
    first_failed timestamptz := pg_catalog.now();
    retry timestamptz;
begin
    select f.attempts, f.content_hash, f.first_failed_at into old
      from memex.embedding_failures as f
     where f.space_id = _record_embedding_failure.space_id and f.tenant_id = tenant
       and f.chunk_id = _record_embedding_failure.chunk_id
       for update;
    if found and old.content_hash = _record_embedding_failure.content_hash then
        attempts := old.attempts + 1;
        first_failed := old.first_failed_at;
    end if;
    retry := memex._failure_retry_at(attempts);
    insert into memex.embedding_failures as f (
        space_id, tenant_id, chunk_id, content_hash, attempts, sqlstate, error, first_failed_at
        , last_failed_at, retry_at
    )
    values (
        _record_embedding_failure.space_id, tenant, _record_embedding_failure.chunk_id
        , _record_embedding_failure.content_hash, attempts, _record_embedding_failure.sqlstate
        , pg_catalog.left(_record_embedding_failure.error, 2000), first_failed, pg_catalog.now(), retry
    )
    on conflict on constraint embedding_failures_pkey do update
       set content_hash = excluded.content_hash, attempts = excluded.attempts, sqlstate = excluded.sqlstate
           , error = excluded.error, first_failed_at = excluded.first_failed_at
           , last_failed_at = excluded.last_failed_at, retry_at = excluded.retry_at;
    raise notice 'memex: chunk % of tenant % failed to embed into space % (attempt %): [%] %; %'
        , _record_embedding_failure.chunk_id
        , coalesce((select t.name from memex.tenants as t where t.id = tenant), tenant::text)
        , (select s.name from memex.spaces as s where s.id = _record_embedding_failure.space_id)
        , attempts, _record_embedding_failure.sqlstate, pg_catalog.left(_record_embedding_failure.error, 300)
        , case when retry is null then 'parked: memex.retry_failed() queues it again'
               else 'retried after ' || pg_catalog.to_char(retry, 'YYYY-MM-DD HH24:MI:SS TZ') end
        using detail = pg_catalog.jsonb_build_object(
            'event', 'failed', 'tenant', tenant, 'chunk', _record_embedding_failure.chunk_id
            , 'attempts', attempts, 'parked', retry is null)::text;
end
$$;

comment on function memex._record_embedding_failure(integer, uuid, bytea, text, text) is
'Internal: records a chunk''s failure to embed into a space (attempts, error, next retry or parked), with a NOTICE.';

-- memex._space_embeds(space_id): does the space's model embed a harmless text right now? Tells
-- a chunk's own fault from embedding itself failing.
create or replace function memex._space_embeds(space_id integer)
returns boolean
language plpgsql
volatile
parallel unsafe
security invoker
set search_path = pg_catalog, pg_temp
as $$
begin
    perform from memex.embed_batch(
        array['memex'], (select s.name from memex.spaces as s where s.id = _space_embeds.space_id));
    return true;
exception when others then  -- a cancel is not caught by OTHERS: it still stops the caller
    return false;
end
$$;

comment on function memex._space_embeds(integer) is
'Internal: whether a space''s model embeds a harmless text now (a failing batch: a chunk''s fault, or the model''s).';

-- memex._embed_or_isolate(space_id, chunk_ids, contents, hashes, checked): memex._embed_and_store,
-- and when the batch fails for what may be a chunk's fault, its halves, down to the chunk that
-- fails alone, whose failure is recorded while its neighbours embed. The chunks stored.
create or replace function memex._embed_or_isolate(
    space_id integer, chunk_ids uuid[], contents text[], hashes bytea[], checked boolean default false
)
returns integer
language plpgsql
volatile
parallel unsafe
security invoker
set search_path = pg_catalog, pg_temp
as $$
declare
    n integer := coalesce(pg_catalog.cardinality(chunk_ids), 0);
    half integer := n / 2;
    failed_state text;
    failed_message text;
begin
    if n = 0 then
        return 0;
    end if;
    begin
        return memex._embed_and_store(space_id, chunk_ids, contents, hashes);
    exception when others then
        get stacked diagnostics failed_state = returned_sqlstate, failed_message = message_text;
        if failed_state !~ '^(22|54)' or (not checked and not memex._space_embeds(space_id)) then
            raise;  -- embedding itself fails: the run stops, nothing is recorded against a chunk
        end if;
    end;
    if n = 1 then
        perform memex._record_embedding_failure(space_id, chunk_ids[1], hashes[1], failed_state, failed_message);
        return 0;
    end if;
    return memex._embed_or_isolate(space_id, chunk_ids[1:half], contents[1:half], hashes[1:half], true)
        + memex._embed_or_isolate(space_id, chunk_ids[half + 1:n], contents[half + 1:n], hashes[half + 1:n], true);
end
$$;

comment on function memex._embed_or_isolate(integer, uuid[], text[], bytea[], boolean) is
'Internal: embeds and stores a batch; when it fails for a chunk''s fault, isolates the chunk (its failure recorded) and stores the others.';

-- memex.retry_failed(space): queues again the chunks that failed to embed into a space (null:
-- the active text space), parked or waiting: of the current tenant, or of every tenant the
-- caller may list when none is set. How many.
create or replace function memex.retry_failed(space text default null)
returns bigint
language plpgsql
volatile
parallel unsafe
security invoker
set search_path = pg_catalog, pg_temp
as $$
declare
    saved text := pg_catalog.current_setting('memex.tenant_id', true);
    target integer := memex._space_id(retry_failed.space);
    tenant uuid;
    queued bigint := 0;
    n bigint;
begin
    for tenant in
        select t.id from memex.tenants as t
         where memex.current_tenant() is null or t.id = memex.current_tenant() order by t.id
    loop
        perform memex._act_for(tenant::text);
        delete from memex.embedding_failures as f where f.space_id = target and f.tenant_id = tenant;
        get diagnostics n = row_count;
        queued := queued + n;
    end loop;
    perform memex._act_for(coalesce(saved, ''));
    if queued > 0 then
        perform pg_catalog.pg_notify('memex_pending', '');  -- wake the workers (sql/143-queue.sql)
    end if;
    return queued;
end
$$;

comment on function memex.retry_failed(text) is
'Queues again the chunks that failed to embed into a space (current tenant, or every tenant the caller may list); how many.';

-- CALL memex.embed_pending(space, batch_size, max_rows): embeds every pending chunk of every
-- tenant the caller may list, one committed transaction per batch (a cancel or a crash loses
-- one batch at most, and the same CALL resumes). Several sessions may run it at once: claims
-- skip locked rows. Must be called outside an explicit transaction block (it COMMITs).
-- A procedure that COMMITs cannot carry SET search_path: every name is qualified, and
-- search_path is pinned again with SET LOCAL after each COMMIT.
create or replace procedure memex.embed_pending(
    space text default null, batch_size integer default 64, max_rows integer default null
)
language plpgsql
as $$
declare
    sp memex.spaces;
    counts record;
    total bigint;
    done bigint := 0;
    index_seconds numeric;
    step record;
    cursors jsonb;
    failures bigint := 0;
    started timestamptz := pg_catalog.clock_timestamp();
    last_notice timestamptz := pg_catalog.clock_timestamp();
    rate numeric;
begin
    set local search_path = pg_catalog, pg_temp;
    perform memex._check_batch_size(batch_size);
    if max_rows is not null and max_rows < 1 then
        raise exception 'max_rows must be at least 1, not %', max_rows using errcode = '22023';
    end if;
    select s.* into strict sp from memex.spaces as s where s.id = memex._space_id(space);
    select c.chunks, c.pending into counts from memex._space_counts(sp.id) as c;
    total := counts.pending;
    if max_rows is not null then
        total := least(total, max_rows);
    end if;
    -- Each NOTICE carries its figures as JSON in DETAIL, for programs (memex embed's bar).
    raise notice 'memex.embed_pending: % chunks to embed into space %', total, sp.name
        using detail = pg_catalog.jsonb_build_object('event', 'start', 'done', 0, 'total', total, 'space', sp.name)::text;
    if memex._defer_index_for_load(sp.id, total, counts.chunks - counts.pending) then
        raise notice 'memex.embed_pending: space % has no vectors yet: its hnsw index is built once at the end', sp.name
            using hint = 'faster than growing it row by row; SET memex.bulk_index_rows = 0 to keep it';
    end if;
    commit;  -- releases the lock the dropped index took
    set local search_path = pg_catalog, pg_temp;
    loop
        exit when max_rows is not null and done >= max_rows;
        select d.* into step
          from memex._claim_step(
              sp.id, least(batch_size::bigint, coalesce(max_rows - done, batch_size))::integer, cursors
          ) as d;
        exit when step.finished;
        cursors := step.cursors;
        failures := failures + pg_catalog.cardinality(step.ids)
            - memex._embed_or_isolate(sp.id, step.ids, step.contents, step.hashes);
        commit;
        set local search_path = pg_catalog, pg_temp;
        done := done + pg_catalog.cardinality(step.ids);  -- rows that went through the model
        if pg_catalog.clock_timestamp() - last_notice >= interval '1 second' then
            last_notice := pg_catalog.clock_timestamp();
            rate := done / greatest(extract(epoch from last_notice - started), 0.001);
            raise notice 'memex.embed_pending: %/% chunks (% %%), % chunks/s, about % s left'
                , done, total, pg_catalog.round(100.0 * done / greatest(total, 1))
                , pg_catalog.round(rate), pg_catalog.round(greatest(total - done, 0) / greatest(rate, 0.001))
                using detail = pg_catalog.jsonb_build_object('event', 'progress', 'done', done, 'total', total
                                                            , 'rate', pg_catalog.round(rate, 1))::text;
        end if;
    end loop;
    commit;  -- the last step's transaction (it may have only looked)
    set local search_path = pg_catalog, pg_temp;
    index_seconds := memex._finish_load_index(sp.id);
    if index_seconds is not null then
        raise notice 'memex.embed_pending: index of space % built in % s', sp.name, index_seconds;
    end if;
    perform memex._release_memory();
    commit;
    set local search_path = pg_catalog, pg_temp;
    rate := done / greatest(extract(epoch from pg_catalog.clock_timestamp() - started), 0.001);
    raise notice 'memex.embed_pending: done, % chunks embedded into space % in % s (% chunks/s)%'
        , done - failures, sp.name, pg_catalog.round(extract(epoch from pg_catalog.clock_timestamp() - started)::numeric, 1)
        , pg_catalog.round(rate)
        , case when failures > 0 then pg_catalog.format('; %s failed (memex.embedding_failures, memex status)', failures) else '' end
        using detail = pg_catalog.jsonb_build_object('event', 'done', 'done', done, 'total', total, 'failed', failures
                                                    , 'rate', pg_catalog.round(rate, 1))::text;
end
$$;

comment on procedure memex.embed_pending (text, integer, integer) is
'Embeds pending chunks of every tenant the caller may list into a space (null: the active text space), committing after each batch.';
