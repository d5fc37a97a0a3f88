-- Re-embedding: the target of a reembed, its plan (dry run), who runs it and the progress
-- view, then the procedure (CALL memex.reembed) and its passes.

-- memex._measure_rate(model, texts): texts/s of a model in this backend (dry-run estimates).
create or replace function memex._measure_rate(model text, texts text[])
returns double precision
language plpython3u
volatile
parallel unsafe
security invoker
set search_path = pg_catalog, pg_temp
as $py$
@memex_db api:measure_rate(model, texts)@
$py$;

comment on function memex._measure_rate(text, text[]) is
'Internal: texts per second of a model on the given texts in this backend, load time excluded.';

-- memex._reembed_target(model, dimensions, space_name): the signature a reembed asks for, and
-- the space it goes to. Validates the arguments (22023) without writing anything.
create or replace function memex._reembed_target(
    model text, dimensions integer, space_name text
    , out name text, out dimensions_out integer, out model_hash text, out model_dimensions integer
)
language plpgsql
volatile
parallel unsafe
security invoker
set search_path = pg_catalog, pg_temp
as $$
declare
    info record;
begin
    if _reembed_target.model is null or pg_catalog.btrim(_reembed_target.model) = '' then
        raise exception 'reembed needs a model' using errcode = '22023'
            , hint = 'e.g. CALL memex.reembed(''all-MiniLM-L6-v2'', dimensions => 256)';
    end if;
    model_hash := memex._model_hash(_reembed_target.model);  -- 22023 for an unknown model or directory
    -- a space made from these very files knows their dimensions: no model load (a fast no-op)
    select s.model_dimensions into model_dimensions
      from memex.spaces as s where s.model = _reembed_target.model and s.model_hash = _reembed_target.model_hash limit 1;
    if model_dimensions is null then
        info := memex._model_info(_reembed_target.model);
        model_dimensions := info.dimensions;
    end if;
    dimensions_out := coalesce(_reembed_target.dimensions, model_dimensions);
    if dimensions_out < 1 or dimensions_out > model_dimensions then
        raise exception 'dimensions % for model % (which has %)', dimensions_out, _reembed_target.model, model_dimensions
            using errcode = '22023', hint = 'a space may use the model''s dimensions or fewer (truncated, re-normalised)';
    end if;
    -- default name: the model's last path component, @dimensions (as the default space's)
    name := coalesce(
        _reembed_target.space_name
        , pg_catalog.regexp_replace(pg_catalog.regexp_replace(_reembed_target.model, '^.*/', ''), '[^A-Za-z0-9_.:@-]', '-', 'g')
        || '@' || dimensions_out
    );
    if name !~ '^[A-Za-z0-9][A-Za-z0-9_.:@-]{0,127}$' then  -- before any lock or write
        raise exception 'invalid space name %', pg_catalog.quote_literal(name)
            using errcode = '22023', hint = 'letters, digits and _ . : @ - (at most 128), starting with a letter or digit';
    end if;
end
$$;

comment on function memex._reembed_target(text, integer, text) is
'Internal: (space name, dimensions, model hash, model dimensions) a reembed targets; validates its arguments.';

-- memex._reembed_no_op(active_id, model, dimensions, model_hash, space_name): whether the
-- active space (its id; null when there is none) already has the signature a reembed asks for.
-- A space made before migration 0005 has no hash recorded: it is taken to match the model's
-- current files. An id, not the spaces row: docs/scale.md, "Citus".
create or replace function memex._reembed_no_op(
    active_id integer, model text, dimensions integer, model_hash text, space_name text
)
returns boolean
language sql
stable
parallel safe
security invoker
set search_path = pg_catalog, pg_temp
as $$
    select exists (
        select 1 from memex.spaces as a
         where a.id = _reembed_no_op.active_id and a.model = _reembed_no_op.model
           and a.dimensions = _reembed_no_op.dimensions
           and coalesce(a.model_hash, _reembed_no_op.model_hash) = _reembed_no_op.model_hash
           and (_reembed_no_op.space_name is null or a.name = _reembed_no_op.space_name)
    )
$$;

comment on function memex._reembed_no_op(integer, text, integer, text, text) is
'Internal: whether the active space already has the signature a reembed asks for.';

-- memex._reembed_lock_key(space_name): the advisory lock ('reembed' class, key) one reembed of a
-- space holds for its whole run (session level: it outlives the batches' COMMITs).
create or replace function memex._reembed_lock_key(space_name text)
returns integer
language sql
immutable
parallel safe
security invoker
set search_path = pg_catalog, pg_temp
as $$ select pg_catalog.hashtext('memex.reembed:' || space_name) $$;

comment on function memex._reembed_lock_key(text) is 'Internal: the advisory lock key of a reembed into a space.';

-- memex._reembed_holder(space_name): the backend holding a space's reembed lock, or null.
create or replace function memex._reembed_holder(space_name text)
returns integer
language sql
stable
parallel safe
security invoker
set search_path = pg_catalog, pg_temp
as $$
    select h.pid
      from memex._advisory_holder_pids(memex._advisory_class('reembed'), memex._reembed_lock_key(space_name)) as h (pid)
     limit 1
$$;

comment on function memex._reembed_holder(text) is 'Internal: the pid running a reembed into a space, or null.';

-- memex.reembed_plan(...): what CALL memex.reembed would do, as JSON, writing nothing: the
-- target and active signatures, whether it is a no-op, whether the dimensions change, the
-- chunks to embed, the batches, and a time estimate from the model's rate measured here on up
-- to 64 of the chunks. Counting reads every tenant's chunks (memex_admin: all tenants).
create or replace function memex.reembed_plan(
    model text, dimensions integer default null, space_name text default null, batch_size integer default 128
)
returns jsonb
language plpgsql
volatile
parallel unsafe
security invoker
set search_path = pg_catalog, pg_temp
as $$
declare
    target record;
    active memex.spaces;
    existing memex.spaces;
    counts record;
    sample text[] := '{}';
    tenant uuid;
    rate double precision;
    todo bigint;
    saved text := pg_catalog.current_setting('memex.tenant_id', true);
    no_op boolean;
begin
    perform memex._check_batch_size(reembed_plan.batch_size);
    target := memex._reembed_target(reembed_plan.model, reembed_plan.dimensions, reembed_plan.space_name);
    select s.* into active from memex.spaces as s where s.domain = 'text' and s.status = 'active';
    select s.* into existing from memex.spaces as s where s.name = target.name;
    no_op := memex._reembed_no_op(active.id, reembed_plan.model, target.dimensions_out, target.model_hash, reembed_plan.space_name);
    perform memex._act_for('');  -- counts span every tenant
    if existing.id is not null then
        counts := memex._space_counts(existing.id);
        todo := counts.pending;
    else
        counts := memex._space_counts(coalesce(active.id, 0));
        todo := counts.chunks;
    end if;
    -- a sample of real chunks, from the first tenants, for the measured rate
    for tenant in select t.id from memex.tenants as t order by t.id loop
        exit when pg_catalog.cardinality(sample) >= 64;
        perform memex._act_for(tenant::text);
        sample := sample || array(
            select c.content from memex.chunks as c where c.tenant_id = tenant
             order by c.id limit 64 - pg_catalog.cardinality(sample)
        );
    end loop;
    perform memex._act_for(coalesce(saved, ''));
    if not no_op and todo > 0 then
        rate := memex._measure_rate(reembed_plan.model, sample);
    end if;
    return pg_catalog.jsonb_build_object(
        'target_space', target.name
        , 'target_exists', existing.id is not null
        , 'target_status', existing.status
        , 'model', reembed_plan.model
        , 'dimensions', target.dimensions_out
        , 'model_hash', target.model_hash
        , 'active_space', active.name
        , 'active_dimensions', active.dimensions
        , 'dimension_change', active.dimensions is distinct from target.dimensions_out
        , 'no_op', no_op
        , 'chunks', counts.chunks
        , 'chunks_to_embed', case when no_op then 0 else todo end
        , 'batches', case when no_op then 0 else (todo + reembed_plan.batch_size - 1) / reembed_plan.batch_size end
        , 'measured_rate', pg_catalog.round(rate::numeric, 1)
        , 'rate_sample', pg_catalog.cardinality(sample)
        -- embedding at the measured rate, plus about 15% for storing (bench/bench_reembed.py)
        , 'estimated_seconds', case when no_op then 0 when rate > 0 then pg_catalog.round((todo / rate * 1.15)::numeric, 1) end
        , 'running_pid', memex._reembed_holder(target.name)
    );
end
$$;

comment on function memex.reembed_plan(text, integer, text, integer) is
'What CALL memex.reembed would do (target, no-op, dimension change, chunks, batches, estimate), writing nothing.';

-- memex.reembed_progress: every reembed, running or finished, readable while it runs (each
-- batch commits its progress). running_pid: the backend holding its lock now, if any.
create or replace view memex.reembed_progress as
select
    s.name as space
    , f.name as from_space
    , r.phase
    , r.rows_done
    , r.rows_total
    , pg_catalog.round(100.0 * r.rows_done / greatest(r.rows_total, 1), 1) as percent
    , pg_catalog.round(r.rate::numeric, 1) as rate
    , case
        when r.phase = 'embedding' and r.rate > 0
            then pg_catalog.make_interval(secs => pg_catalog.round(greatest(r.rows_total - r.rows_done, 0) / r.rate))
    end as eta
    , memex._reembed_holder(s.name) as running_pid
    , r.runs
    , r.started_at
    , r.updated_at
    , r.finished_at
    , r.activation_ms
from memex.reembeds as r
inner join memex.spaces as s on r.space_id = s.id
left join memex.spaces as f on r.from_space_id = f.id;

comment on view memex.reembed_progress is
'Each reembed: phase, chunks done of total, rate, ETA, the backend running it, and the switch duration.';

-- CALL memex.reembed. The new model's vectors are built in a space of
-- their own beside the active one; search keeps serving the active space until one short
-- transaction switches them; the old space stays 'retired' for rollback (activate_space).
--
-- Steps: no-op if the active space has the target signature; take the space's lock (or say
-- who has it and return); create or resume the target space (index deferred); embed every
-- tenant's chunks in id order, one committed batch at a time, the resume point saved with each
-- batch; catch up chunks written meanwhile; build the index; switch. Killed at any point, the
-- same CALL resumes from the saved point. Runs as memex_admin under RLS, tenant by tenant.
-- A procedure that COMMITs cannot carry SET search_path: every name is qualified, and
-- search_path is pinned again with SET LOCAL after each COMMIT. NOTICEs a program acts on
-- (progress, no-op, busy, ready) carry JSON in DETAIL with an "event" key (memex reembed).

-- memex._reembed_pass(state, batch_size, from_start): one pass over every tenant's chunks in
-- claim order (shortest first, memex._pending_chunks) from the saved point (or from the start), committing each batch with its progress.
-- Returns the chunks embedded. Called by memex.reembed only (it COMMITs, so it is a procedure).
create or replace procedure memex._reembed_pass(
    target_id integer, batch_size integer, from_start boolean, inout embedded bigint default 0
)
language plpgsql
as $$
declare
    state memex.reembeds;
    step record;
    place memex.drain_position;
    run_started timestamptz := pg_catalog.clock_timestamp();
    step_at timestamptz;
    run_done bigint := 0;
    run_rate double precision;
begin
    set local search_path = pg_catalog, pg_temp;
    embedded := 0;
    select r.* into state from memex.reembeds as r where r.space_id = target_id;
    if not from_start then  -- resume where the last committed batch ended
        place := row(state.cursor_tenant, state.cursor_tokens, state.cursor_chunk, false);
    end if;
    loop
        -- no claim: the reembed reads without locking, writers never wait for the model
        select d.* into step
          from memex._drain_step(target_id, batch_size, false, place) as d;
        exit when step.finished;
        place := step.place;
        -- a chunk that fails alone is recorded (memex.embedding_failures), the others go on
        perform memex._embed_or_isolate(target_id, step.ids, step.contents, step.hashes);
        run_done := run_done + pg_catalog.cardinality(step.ids);
        embedded := embedded + pg_catalog.cardinality(step.ids);
        step_at := pg_catalog.clock_timestamp();  -- a value: Citus refuses volatile calls in an UPDATE
        run_rate := run_done / greatest(extract(epoch from step_at - run_started), 0.001);
        update memex.reembeds as r
           set rows_done = r.rows_done + pg_catalog.cardinality(step.ids)
             , rows_total = greatest(r.rows_total, r.rows_done + pg_catalog.cardinality(step.ids))
             , cursor_tenant = case when from_start then r.cursor_tenant else place.tenant end
             , cursor_tokens = case when from_start then r.cursor_tokens else place.after_tokens end
             , cursor_chunk = case when from_start then r.cursor_chunk else place.after end
             , rate = case when from_start then r.rate else run_rate end  -- the main pass's rate
             , updated_at = step_at
         where r.space_id = target_id
        returning r.* into state;
        commit;
        set local search_path = pg_catalog, pg_temp;
        raise notice 'memex.reembed: %/% chunks (% %%), % chunks/s, ETA % s'
            , state.rows_done, state.rows_total, pg_catalog.round(100.0 * state.rows_done / greatest(state.rows_total, 1), 1)
            , pg_catalog.round(run_rate::numeric), pg_catalog.round((greatest(state.rows_total - state.rows_done, 0) / greatest(run_rate, 0.001))::numeric)
            using detail = pg_catalog.jsonb_build_object('event', 'progress', 'done', state.rows_done
                                                        , 'total', state.rows_total, 'rate', pg_catalog.round(run_rate::numeric, 1))::text;
    end loop;
    perform memex._act_for('');
    perform memex._release_memory();
end
$$;

comment on procedure memex._reembed_pass (integer, integer, boolean, bigint) is
'Internal: one committed-batch pass of a reembed over every tenant''s chunks, shortest first.';

create or replace procedure memex.reembed(
    model text, dimensions integer default null, space_name text default null
    , batch_size integer default 128, activate boolean default true, dry_run boolean default false
    , build_index boolean default true
)
language plpgsql
as $$
declare
    plan jsonb;
    target record;
    active memex.spaces;
    sp memex.spaces;
    state memex.reembeds;
    lock_key integer;
    holder integer;
    counts record;
    embedded bigint := 0;
    caught_up bigint;
    started timestamptz := pg_catalog.clock_timestamp();
    step_started timestamptz;
    switch_ms double precision;
begin
    set local search_path = pg_catalog, pg_temp;
    perform memex._check_batch_size(batch_size);
    if dry_run then
        plan := memex.reembed_plan(model, dimensions, space_name, batch_size);
        raise notice 'memex.reembed (dry run, nothing written): %', pg_catalog.jsonb_pretty(plan);
        return;
    end if;
    target := memex._reembed_target(model, dimensions, space_name);
    select s.* into active from memex.spaces as s where s.domain = 'text' and s.status = 'active';
    if memex._reembed_no_op(active.id, model, target.dimensions_out, target.model_hash, space_name) then
        if active.model_hash is null then  -- a space from before 0005: record what it was made with
            update memex.spaces as s set model_hash = target.model_hash where s.id = active.id;
        end if;
        raise notice 'memex.reembed: the active space % already has this signature (%, % dimensions, model hash %): nothing to do'
            , active.name, model, target.dimensions_out, pg_catalog.left(target.model_hash, 12)
            using detail = pg_catalog.jsonb_build_object('event', 'no_op', 'space', active.name)::text;
        return;
    end if;

    -- it COMMITs after every batch: inside a transaction block this fails now (2D000), before
    -- anything is locked or written
    commit;
    set local search_path = pg_catalog, pg_temp;
    perform memex._act_for('');  -- counts span every tenant

    -- one reembed per space: a session-level lock, held across the batches' COMMITs. A lock
    -- this session still holds from a CALL that failed is reused, not taken twice.
    lock_key := memex._reembed_lock_key(target.name);
    holder := memex._reembed_holder(target.name);
    if holder is distinct from pg_catalog.pg_backend_pid()
       and not pg_catalog.pg_try_advisory_lock(memex._advisory_class('reembed'), lock_key) then
        holder := memex._reembed_holder(target.name);
        raise notice 'memex.reembed: a reembed into space % is already running in backend % (%); this call does nothing'
            , target.name, holder
            , coalesce((select case when a.state is null then pg_catalog.format('user %s', a.usename)  -- hidden from this role
                                    else pg_catalog.format('user %s, %s since %s', a.usename, a.state, a.state_change) end
                          from pg_catalog.pg_stat_activity as a where a.pid = holder), 'no detail visible')
            using hint = 'follow it in memex.reembed_progress; an idle holder had its CALL fail: it lets go when it closes or CALLs again'
            , detail = pg_catalog.jsonb_build_object('event', 'busy', 'space', target.name, 'pid', holder)::text;
        return;
    end if;

    -- a failure here (another space of that name, changed model files) lets the lock go: no
    -- COMMIT happens in this block, so it can catch
    begin
        select s.* into sp from memex.spaces as s where s.name = target.name;
        if sp.id is null then
            -- same distance and index parameters as the active space; the index is built after the
            -- bulk load (a build is faster than as many inserts into a growing graph)
            perform memex.create_space(
                target.name, model, target.dimensions_out, 'text', coalesce(active.distance, 'cosine')
                , coalesce(active.index_kind, 'hnsw')
                , (coalesce(active.options, '{}') - 'runtime' - 'defer_index') || '{"defer_index": true}'
            );
            select s.* into sp from memex.spaces as s where s.name = target.name;
        else
            -- resuming, or going back to a retired space: it must be the same signature
            perform memex.create_space(target.name, model, target.dimensions_out, sp.domain, sp.distance, sp.index_kind, sp.options);
            if sp.model_hash is null then
                update memex.spaces as s set model_hash = target.model_hash where s.id = sp.id;
            end if;
        end if;
    exception when others then
        perform pg_catalog.pg_advisory_unlock(memex._advisory_class('reembed'), lock_key);
        raise;
    end;
    if sp.status = 'active' then
        raise notice 'memex.reembed: space % is already the active one', sp.name;
        perform pg_catalog.pg_advisory_unlock(memex._advisory_class('reembed'), lock_key);
        return;
    end if;
    counts := memex._space_counts(sp.id);  -- one pass over every tenant's chunks
    insert into memex.reembeds as r (space_id, from_space_id, batch_size, rows_total, pid)
    values (sp.id, active.id, batch_size, counts.pending, pg_catalog.pg_backend_pid())
    on conflict (space_id) do update
       set runs = r.runs + 1, pid = excluded.pid, batch_size = excluded.batch_size
         , from_space_id = coalesce(excluded.from_space_id, r.from_space_id)
         -- a finished reembed into this space starts over (only changed chunks get embedded)
         , phase = case when r.phase = 'done' then 'embedding' else r.phase end
         , rows_done = case when r.phase = 'done' then 0 else r.rows_done end
         , cursor_tenant = case when r.phase = 'done' then null else r.cursor_tenant end
         , cursor_tokens = case when r.phase = 'done' then null else r.cursor_tokens end
         , cursor_chunk = case when r.phase = 'done' then null else r.cursor_chunk end
         , finished_at = null, activation_ms = null
         -- excluded's times are their defaults, now(): no function in DO UPDATE (Citus)
         , started_at = case when r.phase = 'done' then excluded.started_at else r.started_at end
         , rows_total = case when r.phase = 'done' then excluded.rows_total else r.rows_done + excluded.rows_total end
         , updated_at = excluded.updated_at
    returning r.* into state;
    commit;
    set local search_path = pg_catalog, pg_temp;
    if state.rows_total > state.rows_done then
        raise warning 'memex.reembed: embedding % chunks into space % with % in this backend keeps % busy until it is done'
            , greatest(state.rows_total - state.rows_done, 0), sp.name, model
            , coalesce('memex.embed_threads = ' || nullif(nullif(pg_catalog.current_setting('memex.embed_threads', true), ''), '0') || ' cores'
                       , 'every CPU core of the server (set memex.embed_threads to use fewer)')
            using hint = pg_catalog.format(
                'search keeps serving space %s meanwhile; follow it in memex.reembed_progress; the same CALL resumes if stopped'
                , coalesce(active.name, '(none)'));
    end if;
    if state.runs > 1 then
        raise notice 'memex.reembed: resuming space % (run %), % of % chunks already done', sp.name, state.runs, state.rows_done, state.rows_total;
    end if;

    if state.phase = 'embedding' then
        call memex._reembed_pass(sp.id, batch_size, false, embedded);
        set local search_path = pg_catalog, pg_temp;
        update memex.reembeds as r set phase = 'indexing', updated_at = pg_catalog.now() where r.space_id = sp.id;
        commit;
        set local search_path = pg_catalog, pg_temp;
    end if;

    -- chunks written or changed during the pass (before or behind the cursor)
    call memex._reembed_pass(sp.id, batch_size, true, caught_up);
    set local search_path = pg_catalog, pg_temp;
    if caught_up > 0 then
        raise notice 'memex.reembed: caught up % chunks written during the run', caught_up;
    end if;

    -- the index: a failed CREATE INDEX CONCURRENTLY leaves an INVALID one: rebuilt
    if memex._space_index_valid(sp.id) = false and build_index then
        raise notice 'memex.reembed: index % is INVALID (an interrupted concurrent build): rebuilding it'
            , memex._space_index_name(sp.id);
        perform memex._drop_space_index(sp.id);
        commit;
        set local search_path = pg_catalog, pg_temp;
    end if;
    if build_index then
        step_started := pg_catalog.clock_timestamp();
        raise notice 'memex.reembed: building the % index of space % (writes of vectors wait for it)', sp.index_kind, sp.name;
        if memex._build_space_index(sp.id) then
            raise notice 'memex.reembed: index built in % s'
                , pg_catalog.round(extract(epoch from pg_catalog.clock_timestamp() - step_started)::numeric, 1);
        end if;
        commit;
        set local search_path = pg_catalog, pg_temp;
    end if;
    update memex.reembeds as r set phase = 'ready', updated_at = pg_catalog.now() where r.space_id = sp.id;
    commit;
    set local search_path = pg_catalog, pg_temp;

    if activate then
        call memex._reembed_pass(sp.id, batch_size, true, caught_up);  -- the last stragglers
        set local search_path = pg_catalog, pg_temp;
        -- the switch: one short transaction (two rows of memex.spaces); searches running now
        -- finish on the old space, the next ones use the new one
        step_started := pg_catalog.clock_timestamp();
        perform memex.activate_space(sp.name, force => true);
        switch_ms := extract(epoch from pg_catalog.clock_timestamp() - step_started) * 1000;
        update memex.reembeds as r
           set phase = 'done', finished_at = pg_catalog.now(), updated_at = pg_catalog.now(), activation_ms = switch_ms, pid = null
         where r.space_id = sp.id;
        commit;
        set local search_path = pg_catalog, pg_temp;
        raise notice 'memex.reembed: space % is active (switch: % ms, total % s); % is retired: roll back with SELECT memex.activate_space(%)'
            , sp.name, pg_catalog.round(switch_ms::numeric, 1)
            , pg_catalog.round(extract(epoch from pg_catalog.clock_timestamp() - started)::numeric, 1)
            , coalesce(active.name, '(none)'), pg_catalog.quote_literal(coalesce(active.name, ''));
    else
        update memex.reembeds as r set pid = null where r.space_id = sp.id;
        commit;
        set local search_path = pg_catalog, pg_temp;
        raise notice 'memex.reembed: space % is ready; switch to it with SELECT memex.activate_space(%)'
            , sp.name, pg_catalog.quote_literal(sp.name)
            using detail = pg_catalog.jsonb_build_object('event', 'ready', 'space', sp.name)::text;
    end if;
    perform pg_catalog.pg_advisory_unlock(memex._advisory_class('reembed'), lock_key);
end
$$;

comment on procedure memex.reembed (text, integer, text, integer, boolean, boolean, boolean) is
'Re-embeds every chunk into a new space (model, dimensions) beside the active one, then switches in one short transaction; resumable.';
