-- Re-embedding, part 1: the target of a reembed, its plan (dry run), who runs it, one batch,
-- and the progress view. The procedure itself is in 195-reembed.sql.

-- memex._measure_rate(model, texts): texts/s of a model in this backend (dry-run estimates).
create or replace function memex._measure_rate(model text, texts text[])
returns double precision
language plpython3u
volatile
parallel unsafe
security invoker
set search_path = pg_catalog, pg_temp
as $py$
if "memex_db" not in GD:
    plpy.execute("select memex._python_init()")
return GD["memex_db"].entry.call(plpy, GD, "@memex_version@", "measure_rate", model, texts)
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

-- memex._reembed_no_op(active, model, dimensions, model_hash, space_name): whether the active
-- space already has the signature a reembed asks for. A space made before migration 0005 has
-- no hash recorded: it is taken to match the model's current files.
create or replace function memex._reembed_no_op(
    active memex.spaces, model text, dimensions integer, model_hash text, space_name text
)
returns boolean
language sql
immutable
parallel safe
security invoker
set search_path = pg_catalog, pg_temp
as $$
    select active.id is not null and active.model = model and active.dimensions = dimensions
       and coalesce(active.model_hash, model_hash) = model_hash
       and (space_name is null or active.name = space_name)
$$;

comment on function memex._reembed_no_op(memex.spaces, text, integer, text, text) is
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
    select l.pid from pg_catalog.pg_locks as l
     where l.locktype = 'advisory' and l.granted and l.classid = memex._advisory_class('reembed')::oid
       and l.objid = (memex._reembed_lock_key(space_name)::bigint & 4294967295)::text::oid and l.objsubid = 2
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
    no_op := memex._reembed_no_op(active, reembed_plan.model, target.dimensions_out, target.model_hash, reembed_plan.space_name);
    perform pg_catalog.set_config('memex.tenant_id', '', true);  -- counts span every tenant
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
        perform pg_catalog.set_config('memex.tenant_id', tenant::text, true);
        sample := sample || array(
            select c.content from memex.chunks as c where c.tenant_id = tenant
             order by c.id limit 64 - pg_catalog.cardinality(sample)
        );
    end loop;
    perform pg_catalog.set_config('memex.tenant_id', coalesce(saved, ''), true);
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
