-- The pending queue: a chunk is pending in a space while it has no vector there made from its
-- current content hash. There is no queue table: the hashes are the queue, so a metadata-only
-- change queues nothing and changed text queues exactly its changed chunks.
--
-- Work that spans tenants (embed_pending, space_status, activate_space) runs as memex_admin,
-- which has no BYPASSRLS: it lists the tenants and acts for each in turn with the tenant set
-- for that transaction, under the same RLS policies as applications.

-- memex._pending_chunks(space_id, after_tokens, after, n, among): the current tenant's chunks of
-- the space's domain (a code space: the code chunks; a text space: every chunk) without a vector
-- made from their current content in the space, and not failing there (a failure record for
-- their current content that is parked or waits for its retry: memex.embedding_failures), shortest first ((token_count, id) order: claims
-- of chunks of about one length pad their inference batches least), after the position
-- (after_tokens, after) when both are given, at most n (null: all), among the given ids when
-- `among` is not null. The one definition of "pending": counts, claims, reembed batches and
-- embed-on-write all read it. One SQL statement (EXPLAIN shows the anti-join over the
-- chunks_pending_order index), built with only the conditions that apply: a generic plan of
-- `(after is null or ...)` cannot use the key, and would scan the tenant from its start at every
-- batch.
-- memex._space_embeds_code_only(space_id): true for a space of domain code (it embeds the code
-- chunks only); a text space embeds every chunk, code included: the general model is what
-- searches fall back to when no code space is active.
create or replace function memex._space_embeds_code_only(space_id integer)
returns boolean
language sql
stable
parallel safe
security invoker
set search_path = pg_catalog, pg_temp
as $$
    select coalesce((select s.domain = 'code' from memex.spaces as s where s.id = _space_embeds_code_only.space_id), false)
$$;

comment on function memex._space_embeds_code_only(integer) is
'Internal: whether a space embeds only code chunks (its domain is code).';

create or replace function memex._pending_chunks(
    space_id integer, after_tokens integer default null, after uuid default null, n integer default null
    , among uuid[] default null
)
returns setof uuid
language plpgsql
stable
parallel safe
security invoker
set search_path = pg_catalog, pg_temp
as $$
begin
    return query execute
        'select c.id from memex.chunks as c where c.tenant_id = memex.current_tenant()'
        || case when _pending_chunks.after_tokens is not null and _pending_chunks.after is not null
                then ' and (c.token_count, c.id) > ($5, $2)' else '' end
        || case when _pending_chunks.among is not null then ' and c.id = any($4)' else '' end
        || case when memex._space_embeds_code_only(_pending_chunks.space_id) then ' and c.domain = ''code''' else '' end
        || ' and not exists (
                 select from memex.embeddings as e
                  where e.space_id = $1 and e.tenant_id = c.tenant_id
                    and e.chunk_id = c.id and e.content_hash = c.content_hash
             )
             and not exists (
                 select from memex.embedding_failures as f
                  where f.space_id = $1 and f.tenant_id = c.tenant_id and f.chunk_id = c.id
                    and f.content_hash = c.content_hash
                    and (f.retry_at is null or f.retry_at > pg_catalog.now())
             )
           order by c.token_count, c.id limit $3'
        using _pending_chunks.space_id, _pending_chunks.after, _pending_chunks.n, _pending_chunks.among
            , _pending_chunks.after_tokens;
end
$$;

comment on function memex._pending_chunks(integer, integer, uuid, integer, uuid[]) is
'Internal: ids of the current tenant''s chunks without an up-to-date vector in a space (shortest first, after a position, at most n, among the given ids).';

-- memex._pending_here(space_id): pending chunks of the current tenant in a space.
create or replace function memex._pending_here(space_id integer)
returns bigint
language sql
stable
parallel safe
security invoker
set search_path = pg_catalog, pg_temp
as $$ select pg_catalog.count(*) from memex._pending_chunks(_pending_here.space_id) $$;

comment on function memex._pending_here(integer) is 'Internal: pending chunks of the current tenant in a space.';

-- memex._chunks_here(space_id): chunks of the current tenant that the space embeds.
create or replace function memex._chunks_here(space_id integer)
returns bigint
language sql
stable
parallel safe
security invoker
set search_path = pg_catalog, pg_temp
as $$
    select pg_catalog.count(*) from memex.chunks as c
     where c.tenant_id = memex.current_tenant()
       -- a scalar subquery: an InitPlan, evaluated once rather than for every row
       and (c.domain = 'code' or not (select memex._space_embeds_code_only(_chunks_here.space_id)))
$$;

comment on function memex._chunks_here(integer) is 'Internal: chunks of the current tenant that a space embeds (its domain''s).';

-- memex._failed_here(space_id): chunks of the current tenant whose current content failed to
-- embed into the space and are not pending: waiting for their retry, or parked.
create or replace function memex._failed_here(space_id integer)
returns bigint
language sql
stable
parallel safe
security invoker
set search_path = pg_catalog, pg_temp
as $$
    select pg_catalog.count(*) from memex.embedding_failures as f
      join memex.chunks as c on c.tenant_id = f.tenant_id and c.id = f.chunk_id and c.content_hash = f.content_hash
     where f.space_id = _failed_here.space_id and f.tenant_id = memex.current_tenant()
       and (f.retry_at is null or f.retry_at > pg_catalog.now())  -- a due retry is pending again
$$;

comment on function memex._failed_here(integer) is 'Internal: chunks of the current tenant that failed to embed into a space (retrying or parked).';

-- memex._space_counts(space_id): (chunks, pending, failed) for the current tenant, or, with no
-- tenant set, summed over every tenant the caller may list (all for memex_admin, none for
-- memex_app).
create or replace function memex._space_counts(
    space_id integer, out chunks bigint, out pending bigint, out failed bigint
)
language plpgsql
volatile
parallel unsafe
security invoker
set search_path = pg_catalog, pg_temp
as $$
declare
    saved text := pg_catalog.current_setting('memex.tenant_id', true);
    tenant uuid;
begin
    if memex.current_tenant() is not null then
        chunks := memex._chunks_here(_space_counts.space_id);
        pending := memex._pending_here(_space_counts.space_id);
        failed := memex._failed_here(_space_counts.space_id);
        return;
    end if;
    chunks := 0;
    pending := 0;
    failed := 0;
    if not exists (select from memex.tenants) then  -- an application role with no tenant set
        raise notice 'no tenant is set: the counts cover no tenant'
            using hint = 'memex.set_tenant(''name'', false) in psql; memex_admin counts every tenant';
        return;
    end if;
    for tenant in select t.id from memex.tenants as t order by t.id loop
        perform pg_catalog.set_config('memex.tenant_id', tenant::text, true);
        chunks := chunks + memex._chunks_here(_space_counts.space_id);
        pending := pending + memex._pending_here(_space_counts.space_id);
        failed := failed + memex._failed_here(_space_counts.space_id);
    end loop;
    perform pg_catalog.set_config('memex.tenant_id', coalesce(saved, ''), true);
end
$$;

comment on function memex._space_counts(integer) is
'Internal: (chunks, pending, failed) of a space for the current tenant, or over every tenant the caller may list.';

-- memex.pending_count(space): chunks without an up-to-date vector in the space (null: the
-- active text space); for the current tenant, or all listable tenants when none is set.
create or replace function memex.pending_count(space text default null)
returns bigint
language sql
volatile
parallel unsafe
security invoker
set search_path = pg_catalog, pg_temp
as $$ select c.pending from memex._space_counts((memex._space(pending_count.space)).id) as c $$;

comment on function memex.pending_count(text) is
'Chunks without an up-to-date vector in a space (null: the active text space).';

create or replace view memex.space_status
with (security_invoker = true)
as
select
    s.name
    , s.model
    , s.dimensions
    , s.domain
    , s.distance
    , s.index_kind
    , s.status
    , c.chunks - c.pending - c.failed as embedded
    , c.pending
    , c.failed
    , s.created_at
    , s.activated_at
from memex.spaces as s
cross join lateral memex._space_counts(s.id) as c;

comment on view memex.space_status is
'Each embedding space: signature, status, and how many chunks are embedded, pending and failed (current tenant, or all for memex_admin).';

-- memex._advisory_class(what): the first key of memex's advisory locks, one per purpose (the
-- second key tells instances apart): 'embedders' (shared, held by every backend embedding a
-- batch, so each can count the others: memex_db.api), 'reembed' (one per target space),
-- 'text_index' (the seed of the per-tenant, per-language text index keys).
create or replace function memex._advisory_class(what text)
returns integer
language sql
immutable
parallel safe
security invoker
set search_path = pg_catalog, pg_temp
as $$
    select case _advisory_class.what
        when 'embedders' then 1835363704  -- "memx"
        when 'reembed' then 1835363705
        when 'text_index' then 1835363706
        when 'space_index' then 1835363707
    end
$$;

comment on function memex._advisory_class(text) is
'Internal: the first key of memex''s advisory locks for a purpose (embedders, reembed, text_index, space_index).';

-- memex._advisory_holders(key1, key2): who holds an advisory lock, for the message of a wait
-- that gave up: "pid 123 (application psql, user api)", or null. One bigint key (key2 null) or
-- two integer keys, as pg_advisory_lock takes them. Any session may take memex's keys (an
-- advisory lock needs no privilege): every memex wait on one is bounded and names the holder.
create or replace function memex._advisory_holders(key1 bigint, key2 integer default null)
returns text
language sql
stable
parallel safe
security invoker
set search_path = pg_catalog, pg_temp
as $$
    select pg_catalog.string_agg(pg_catalog.format('pid %s (application %s, user %s)', l.pid
               , coalesce(nullif(a.application_name, ''), '-'), coalesce(a.usename::text, '-'))
               , ', ' order by l.pid)
      from pg_catalog.pg_locks as l
      left join pg_catalog.pg_stat_activity as a on l.pid = a.pid
     where l.locktype = 'advisory' and l.granted and l.pid <> pg_catalog.pg_backend_pid()
       and case when _advisory_holders.key2 is null
                then l.classid = ((_advisory_holders.key1 >> 32) & 4294967295)::text::oid
                     and l.objid = (_advisory_holders.key1 & 4294967295)::text::oid and l.objsubid = 1
                else l.classid = (_advisory_holders.key1 & 4294967295)::text::oid
                     and l.objid = (_advisory_holders.key2::bigint & 4294967295)::text::oid and l.objsubid = 2
           end
$$;

comment on function memex._advisory_holders(bigint, integer) is
'Internal: the sessions holding an advisory lock (pid, application, user), for the message of a wait that gave up.';

-- memex._bounded_lock_timeout(): lock_timeout for a memex wait on an advisory lock: the
-- session's own when it has one, else 30 s (a wait must end, naming whom it waited for).
create or replace function memex._bounded_lock_timeout()
returns void
language plpgsql
volatile
parallel unsafe
security invoker
set search_path = pg_catalog, pg_temp
as $$
begin
    if pg_catalog.current_setting('lock_timeout') in ('0', '0ms') then
        perform pg_catalog.set_config('lock_timeout', '30s', true);
    end if;
end
$$;

comment on function memex._bounded_lock_timeout() is
'Internal: bounds this transaction''s lock waits at 30 s when the session set no lock_timeout.';

-- memex._check_batch_size(n): the batch sizes embedding procedures accept.
create or replace function memex._check_batch_size(n integer)
returns integer
language plpgsql
immutable
parallel safe
security invoker
set search_path = pg_catalog, pg_temp
as $$
begin
    if n is null or n < 1 or n > 4096 then
        raise exception 'batch_size must be between 1 and 4096, not %', coalesce(n::text, 'null') using errcode = '22023';
    end if;
    return n;
end
$$;

comment on function memex._check_batch_size(integer) is 'Internal: 22023 unless 1 <= batch_size <= 4096.';

-- memex._drain_step(space_id, n, claim, tenant, after_tokens, after, wrapped): the next batch of
-- pending chunks over every tenant the caller may list, tenant by tenant in id order, chunks
-- shortest first (memex._pending_chunks' order): the one engine behind CALL memex.embed_pending,
-- CALL memex.reembed and `memex worker`. The caller keeps the position (tenant, after_tokens,
-- after, wrapped) between calls, embeds the
-- batch, stores it (memex._store_embeddings) and commits; the tenant stays set for its
-- transaction. `finished` when every tenant is done.
--   claim: lock the rows (FOR NO KEY UPDATE SKIP LOCKED) so concurrent runners take disjoint
--   rows, and at the end of a tenant pass once more from its start for rows another runner
--   held and let go. Without claim (reembed), nothing is locked: writers never wait.
-- Holds the shared 'embedders' advisory lock for the transaction (the embedding backends'
-- head count), and sets memex.in_load for it: the batch's embed_batch keeps more freed heap
-- mapped for the next batch (memex_db.api; the CALL trims it at its end).
--   one_tenant: stay on the given tenant: `finished` when its pass is done (memex._claim_step
--   visits the tenants in turn this way).
create or replace function memex._drain_step(
    space_id integer, n integer, claim boolean
    , inout tenant uuid, inout after_tokens integer, inout after uuid, inout wrapped boolean
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
    wrapped := coalesce(wrapped, false);
    if tenant is null then
        tenant := (select t.id from memex.tenants as t order by t.id limit 1);
        after := null;
        after_tokens := null;
    end if;
    loop
        if tenant is null then
            finished := true;
            return;
        end if;
        perform pg_catalog.set_config('memex.tenant_id', tenant::text, true);
        candidates := array(
            select p from memex._pending_chunks(_drain_step.space_id, after_tokens, after, n) as p
        );
        if pg_catalog.cardinality(candidates) > 0 then
            after := candidates[pg_catalog.cardinality(candidates)];
            after_tokens := (
                select c.token_count from memex.chunks as c
                 where c.tenant_id = _drain_step.tenant and c.id = _drain_step.after
            );
            if claim then
                -- Lock what no other runner holds, then re-read with a new snapshot: a row
                -- another runner stored between our first read and our lock is dropped.
                candidates := array(
                    select c.id from memex.chunks as c
                     where c.tenant_id = _drain_step.tenant and c.id = any(candidates)
                     order by c.id
                       for no key update of c skip locked
                );
                candidates := array(
                    select p from memex._pending_chunks(_drain_step.space_id, among => candidates) as p
                );
            end if;
            if pg_catalog.cardinality(candidates) > 0 then
                select pg_catalog.array_agg(c.id order by c.id), pg_catalog.array_agg(c.content order by c.id)
                     , pg_catalog.array_agg(c.content_hash order by c.id)
                  into ids, contents, hashes
                  from memex.chunks as c
                 where c.tenant_id = _drain_step.tenant and c.id = any(candidates);
                return;
            end if;
            continue;  -- every candidate was another runner's: the next ones
        end if;
        if claim and not wrapped and after is not null then
            wrapped := true;  -- once more from the start, for rows that were held when passed
            after := null;
            after_tokens := null;
            continue;
        end if;
        if one_tenant then
            finished := true;
            return;
        end if;
        tenant := (select t.id from memex.tenants as t where t.id > _drain_step.tenant order by t.id limit 1);
        after := null;
        after_tokens := null;
        wrapped := false;
    end loop;
end
$$;

comment on function memex._drain_step(integer, integer, boolean, uuid, integer, uuid, boolean, boolean) is
'Internal: the next batch of pending chunks over every tenant, or of one (the engine of embed_pending, reembed and memex worker).';

-- memex._claim_step(space_id, n, cursors): the next claimed batch, the tenants served in turn:
-- one batch of a tenant, then one of the next tenant with chunks left, and so on, so a tenant
-- that keeps writing cannot hold the queue while the others wait (memex._drain_step holds on
-- to a tenant until its pass is done). `cursors` carries each tenant's position between calls
-- (the caller passes back what it got; null starts a run over the tenants that exist now).
-- `finished` when every tenant's pass is done. The tenant stays set for the transaction.
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
    place jsonb;
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
        place := coalesce(cursors -> 'at' -> tenant::text, '{}');
        continue when coalesce((place ->> 'done')::boolean, false);
        select d.* into step
          from memex._drain_step(
              _claim_step.space_id, n, true, tenant, (place ->> 'after_tokens')::integer
              , (place ->> 'after')::uuid, coalesce((place ->> 'wrapped')::boolean, false), one_tenant => true
          ) as d;
        if step.finished then
            place := '{"done": true}';
        else
            place := pg_catalog.jsonb_build_object(
                'after_tokens', step.after_tokens, 'after', step.after, 'wrapped', step.wrapped);
        end if;
        cursors := pg_catalog.jsonb_set(
            pg_catalog.jsonb_set(cursors, array['at', tenant::text], place), '{next}', pg_catalog.to_jsonb(turn));
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
begin
    if pg_catalog.cardinality(chunk_ids) is distinct from pg_catalog.cardinality(vectors)
       or pg_catalog.cardinality(chunk_ids) is distinct from pg_catalog.cardinality(hashes) then
        raise exception 'chunk_ids, hashes and vectors must have the same length' using errcode = '22023';
    end if;
    insert into memex.embeddings as e (space_id, tenant_id, chunk_id, embedding, content_hash)
    select _store_embeddings.space_id, tenant, x.id, x.v, x.h
      from unnest(chunk_ids, hashes, vectors) as x (id, h, v)  -- FROM-clause form: cannot be qualified
      join memex.chunks as c on c.tenant_id = tenant and c.id = x.id and c.content_hash = x.h
     order by x.id
       for key share of c skip locked
    on conflict on constraint embeddings_pkey do update
       set embedding = excluded.embedding, content_hash = excluded.content_hash, embedded_at = pg_catalog.now()
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
    target integer := (memex._space(retry_failed.space)).id;
    tenant uuid;
    queued bigint := 0;
    n bigint;
begin
    for tenant in
        select t.id from memex.tenants as t
         where memex.current_tenant() is null or t.id = memex.current_tenant() order by t.id
    loop
        perform pg_catalog.set_config('memex.tenant_id', tenant::text, true);
        delete from memex.embedding_failures as f where f.space_id = target and f.tenant_id = tenant;
        get diagnostics n = row_count;
        queued := queued + n;
    end loop;
    perform pg_catalog.set_config('memex.tenant_id', coalesce(saved, ''), true);
    return queued;
end
$$;

comment on function memex.retry_failed(text) is
'Queues again the chunks that failed to embed into a space (current tenant, or every tenant the caller may list); how many.';

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
       or not (current_vectors = 0 or (sp.status <> 'active' and loading >= current_vectors)) then
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
    sp := memex._space(space);
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

-- Embed on write (off by default): with SET memex.embed_on_write = on (per session, role or
-- database), new and changed chunks are embedded into the active text space inside the writing
-- statement. It costs the embedding time in every write: measured 6.4 ms per one-chunk
-- document against 0.5 ms with it off (docs/embedding.md); for small apps with no background job.
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
        , pg_catalog.array_agg(n.content order by n.id)
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
