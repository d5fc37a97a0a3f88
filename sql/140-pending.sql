-- The pending queue: a chunk is pending in a space while it has no vector there made from its
-- current content hash. There is no queue table: the hashes are the queue, so a metadata-only
-- change queues nothing and changed text queues exactly its changed chunks.
--
-- Work that spans tenants (embed_pending, space_status, activate_space) runs as memex_admin,
-- which has no BYPASSRLS: it lists the tenants and acts for each in turn with the tenant set
-- for that transaction, under the same RLS policies as applications.

-- memex._pending_here(space_id): pending chunks of the current tenant in a space.
create or replace function memex._pending_here(space_id integer)
returns bigint
language sql
stable
parallel safe
security invoker
set search_path = pg_catalog, pg_temp
as $$
    select pg_catalog.count(*)
      from memex.chunks as c
     where c.tenant_id = memex.current_tenant()
       and not exists (
           select from memex.embeddings as e
            where e.space_id = _pending_here.space_id and e.tenant_id = c.tenant_id
              and e.chunk_id = c.id and e.content_hash = c.content_hash
       )
$$;

comment on function memex._pending_here(integer) is 'Internal: pending chunks of the current tenant in a space.';

-- memex._chunks_here(): chunks of the current tenant.
create or replace function memex._chunks_here()
returns bigint
language sql
stable
parallel safe
security invoker
set search_path = pg_catalog, pg_temp
as $$ select pg_catalog.count(*) from memex.chunks as c where c.tenant_id = memex.current_tenant() $$;

comment on function memex._chunks_here() is 'Internal: chunks of the current tenant.';

-- memex._space_counts(space_id): (chunks, pending) for the current tenant, or, with no tenant
-- set, summed over every tenant the caller may list (all for memex_admin, none for memex_app).
create or replace function memex._space_counts(space_id integer, out chunks bigint, out pending bigint)
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
        chunks := memex._chunks_here();
        pending := memex._pending_here(_space_counts.space_id);
        return;
    end if;
    chunks := 0;
    pending := 0;
    for tenant in select t.id from memex.tenants as t order by t.id loop
        perform pg_catalog.set_config('memex.tenant_id', tenant::text, true);
        chunks := chunks + memex._chunks_here();
        pending := pending + memex._pending_here(_space_counts.space_id);
    end loop;
    perform pg_catalog.set_config('memex.tenant_id', coalesce(saved, ''), true);
end
$$;

comment on function memex._space_counts(integer) is
'Internal: (chunks, pending) of a space for the current tenant, or over every tenant the caller may list.';

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
    , c.chunks - c.pending as embedded
    , c.pending
    , s.created_at
    , s.activated_at
from memex.spaces as s
cross join lateral memex._space_counts(s.id) as c;

comment on view memex.space_status is
'Each embedding space: signature, status, and how many chunks are embedded and pending (current tenant, or all for memex_admin).';

-- memex._claim_pending(space_id, n, after): up to n pending chunks of the current tenant with
-- id > after, locked for this transaction. SKIP LOCKED: concurrent runners take disjoint rows.
-- The second statement re-reads with a new snapshot, so a row another runner committed between
-- our snapshot and our lock is dropped instead of embedded twice.
create or replace function memex._claim_pending(space_id integer, n integer, after uuid default null)
returns table (chunk_id uuid, content text, content_hash bytea)
language plpgsql
volatile
parallel unsafe
security invoker
set search_path = pg_catalog, pg_temp
as $$
declare
    tenant uuid := memex._require_tenant();
    ids uuid[];
begin
    select pg_catalog.array_agg(q.id) into ids
      from (
          select c.id
            from memex.chunks as c
           where c.tenant_id = tenant and (_claim_pending.after is null or c.id > _claim_pending.after)
             and not exists (
                 select from memex.embeddings as e
                  where e.space_id = _claim_pending.space_id and e.tenant_id = c.tenant_id
                    and e.chunk_id = c.id and e.content_hash = c.content_hash
             )
           order by c.id
           limit _claim_pending.n
             for no key update of c skip locked
      ) as q;
    return query
        select c.id, c.content, c.content_hash
          from memex.chunks as c
         where c.tenant_id = tenant and c.id = any(ids)
           and not exists (
               select from memex.embeddings as e
                where e.space_id = _claim_pending.space_id and e.tenant_id = c.tenant_id
                  and e.chunk_id = c.id and e.content_hash = c.content_hash
           )
         order by c.id;
end
$$;

comment on function memex._claim_pending(integer, integer, uuid) is
'Internal: locks and returns up to n pending chunks of the current tenant (id > after), skipping rows other runners hold.';

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

-- memex._embed_pending_batch(space_id, n, after): claim, embed in this backend, store. One
-- transaction's worth of work for embed_pending. The shared advisory lock lets every batch
-- embedder count the others and size its threads (memex_db.api.EMBEDDERS_LOCK).
create or replace function memex._embed_pending_batch(
    space_id integer, n integer, after uuid, out claimed integer, out embedded integer, out last_id uuid
)
language plpgsql
volatile
parallel unsafe
security invoker
set search_path = pg_catalog, pg_temp
as $$
declare
    ids uuid[];
    contents text[];
    hashes bytea[];
begin
    perform pg_catalog.pg_advisory_xact_lock_shared(1835363704, 1);
    select
        pg_catalog.array_agg(p.chunk_id order by p.chunk_id)
        , pg_catalog.array_agg(p.content order by p.chunk_id)
        , pg_catalog.array_agg(p.content_hash order by p.chunk_id)
    into ids, contents, hashes
    from memex._claim_pending(_embed_pending_batch.space_id, _embed_pending_batch.n, _embed_pending_batch.after) as p;
    claimed := coalesce(pg_catalog.cardinality(ids), 0);
    embedded := 0;
    if claimed = 0 then
        return;
    end if;
    embedded := memex._embed_and_store(_embed_pending_batch.space_id, ids, contents, hashes);
    last_id := ids[claimed];
end
$$;

comment on function memex._embed_pending_batch(integer, integer, uuid) is
'Internal: one batch of embed_pending for the current tenant: claim, embed in this backend, store.';

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
    tenants uuid[];
    tenant uuid;
    total bigint;
    done bigint := 0;
    batch record;
    cursor_id uuid;
    wrapped boolean;
    started timestamptz := pg_catalog.clock_timestamp();
    last_notice timestamptz := pg_catalog.clock_timestamp();
    rate numeric;
begin
    set local search_path = pg_catalog, pg_temp;
    if batch_size is null or batch_size < 1 or batch_size > 4096 then
        raise exception 'batch_size must be between 1 and 4096, not %', batch_size using errcode = '22023';
    end if;
    if max_rows is not null and max_rows < 1 then
        raise exception 'max_rows must be at least 1, not %', max_rows using errcode = '22023';
    end if;
    sp := memex._space(space);
    total := memex.pending_count(sp.name);
    if max_rows is not null then
        total := least(total, max_rows);
    end if;
    raise notice 'memex.embed_pending: % chunks to embed into space %', total, sp.name;
    select pg_catalog.array_agg(t.id order by t.id) into tenants from memex.tenants as t;
    foreach tenant in array coalesce(tenants, '{}') loop
        cursor_id := null;
        wrapped := false;
        loop
            exit when max_rows is not null and done >= max_rows;
            perform pg_catalog.set_config('memex.tenant_id', tenant::text, true);
            select b.* into batch
              from memex._embed_pending_batch(
                  sp.id, least(batch_size::bigint, coalesce(max_rows - done, batch_size))::integer, cursor_id
              ) as b;
            commit;
            set local search_path = pg_catalog, pg_temp;
            if batch.claimed = 0 then
                -- End of this tenant's ids: one more pass from the start picks up rows that
                -- were locked by another runner when we passed them (if it let them go).
                exit when wrapped or cursor_id is null;
                wrapped := true;
                cursor_id := null;
                continue;
            end if;
            done := done + batch.claimed;  -- rows that went through the model
            cursor_id := batch.last_id;
            if pg_catalog.clock_timestamp() - last_notice >= interval '1 second' then
                last_notice := pg_catalog.clock_timestamp();
                rate := done / greatest(extract(epoch from last_notice - started), 0.001);
                raise notice 'memex.embed_pending: %/% chunks (% %%), % chunks/s, about % s left'
                    , done, total, pg_catalog.round(100.0 * done / greatest(total, 1))
                    , pg_catalog.round(rate), pg_catalog.round(greatest(total - done, 0) / greatest(rate, 0.001));
            end if;
        end loop;
    end loop;
    rate := done / greatest(extract(epoch from pg_catalog.clock_timestamp() - started), 0.001);
    raise notice 'memex.embed_pending: done, % chunks embedded into space % in % s (% chunks/s)'
        , done, sp.name, pg_catalog.round(extract(epoch from pg_catalog.clock_timestamp() - started)::numeric, 1)
        , pg_catalog.round(rate);
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
    where not exists (
        select from memex.embeddings as e
         where e.space_id = sp.id and e.tenant_id = n.tenant_id and e.chunk_id = n.id
           and e.content_hash = n.content_hash
    );
    if ids is null then
        return null;
    end if;
    perform memex._embed_and_store(sp.id, ids, contents, hashes);
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
