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
-- embed-on-write all read it. One SQL statement (EXPLAIN, for a claim: a walk of the
-- chunks_pending_order index, each chunk's vector probed by key; for a count, an anti join),
-- built with only the conditions that apply: a generic plan of `(after is null or ...)` cannot
-- use the key, and would scan the tenant from its start at every batch.
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
declare
    -- A claim (n or among given) keeps each NOT EXISTS a subplan (OFFSET 0): every chunk walked,
    -- shortest first from the position until n, probes its own vector by key. As an anti join,
    -- a tenant whose vectors were newer than its statistics got a nested loop over all of them
    -- for every chunk, quadratic over an embed_pending run; a count over the whole tenant
    -- keeps the join, a hash join there (bench/RESULTS.md). Each subquery names the tenant as
    -- a value: a subplan is planned alone, and Citus routes it by that value.
    probe constant text := case when _pending_chunks.n is not null or _pending_chunks.among is not null
                                then ' offset 0' else '' end;
begin
    return query execute
        'select c.id from memex.chunks as c where c.tenant_id = $6'
        || case when _pending_chunks.after_tokens is not null and _pending_chunks.after is not null
                then ' and (c.token_count, c.id) > ($5, $2)' else '' end
        || case when _pending_chunks.among is not null then ' and c.id = any($4)' else '' end
        || case when memex._space_embeds_code_only(_pending_chunks.space_id) then ' and c.domain = ''code''' else '' end
        || ' and not exists (
                 select 1 from memex.embeddings as e
                  where e.space_id = $1 and e.tenant_id = $6
                    and e.chunk_id = c.id and e.content_hash = c.content_hash' || probe || '
             )
             and not exists (
                 select 1 from memex.embedding_failures as f
                  where f.space_id = $1 and f.tenant_id = $6 and f.chunk_id = c.id
                    and f.content_hash = c.content_hash
                    and (f.retry_at is null or f.retry_at > pg_catalog.now())' || probe || '
             )
           order by c.token_count, c.id limit $3'
        using _pending_chunks.space_id, _pending_chunks.after, _pending_chunks.n, _pending_chunks.among
            , _pending_chunks.after_tokens, memex.current_tenant();  -- the tenant bound as a value
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
language plpgsql
stable
parallel safe
security invoker
set search_path = pg_catalog, pg_temp
as $$
declare
    tenant uuid := memex.current_tenant();
    code_only boolean := memex._space_embeds_code_only(_chunks_here.space_id);
begin
    return (select pg_catalog.count(*) from memex.chunks as c
             where c.tenant_id = tenant and (c.domain = 'code' or not code_only));
end
$$;

comment on function memex._chunks_here(integer) is 'Internal: chunks of the current tenant that a space embeds (its domain''s).';

-- memex._failed_here(space_id): chunks of the current tenant whose current content failed to
-- embed into the space and are not pending: waiting for their retry, or parked.
create or replace function memex._failed_here(space_id integer)
returns bigint
language plpgsql
stable
parallel safe
security invoker
set search_path = pg_catalog, pg_temp
as $$
declare
    tenant uuid := memex.current_tenant();
    checked_at constant timestamptz := pg_catalog.now();
begin
    return (select pg_catalog.count(*) from memex.embedding_failures as f
              join memex.chunks as c on c.tenant_id = f.tenant_id and c.id = f.chunk_id and c.content_hash = f.content_hash
             where f.space_id = _failed_here.space_id and f.tenant_id = tenant and c.tenant_id = tenant
               and (f.retry_at is null or f.retry_at > checked_at));  -- a due retry is pending again
end
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
    if not exists (select 1 from memex.tenants) then  -- an application role with no tenant set
        raise notice 'no tenant is set: the counts cover no tenant'
            using hint = 'memex.set_tenant(''name'', false) in psql; memex_admin counts every tenant';
        return;
    end if;
    for tenant in select t.id from memex.tenants as t order by t.id loop
        perform memex._act_for(tenant::text);
        chunks := chunks + memex._chunks_here(_space_counts.space_id);
        pending := pending + memex._pending_here(_space_counts.space_id);
        failed := failed + memex._failed_here(_space_counts.space_id);
    end loop;
    perform memex._act_for(coalesce(saved, ''));
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
as $$ select c.pending from memex._space_counts(memex._space_id(pending_count.space)) as c $$;

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
