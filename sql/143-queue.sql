-- The queue's consumers (docs/worker.md): writes wake `memex worker`s through NOTIFY, and each
-- worker keeps a heartbeat row that admins read in memex.workers.

-- memex._chunks_written(chunk_ids): what follows a write function's new or changed chunks
-- (_replace_chunks, _message_contexts_near): NOTIFY memex_pending, empty payload (any role may
-- LISTEN to any channel: the payload names no tenant), then embed-on-write when it is on
-- (sql/142). PostgreSQL delivers identical notifications of one transaction once, at commit: a
-- load of 10,000 documents in one transaction wakes a worker once, and a rolled-back write
-- never. Called by the write functions, not by a trigger: no trigger on a tenant table
-- (docs/scale.md, "Citus").
create or replace function memex._chunks_written(chunk_ids uuid[])
returns void
language plpgsql
volatile
parallel unsafe
security invoker
set search_path = pg_catalog, pg_temp
as $$
begin
    if coalesce(pg_catalog.cardinality(chunk_ids), 0) = 0 then
        return;
    end if;
    perform pg_catalog.pg_notify('memex_pending', '');
    perform memex._embed_on_write(chunk_ids);
end
$$;

comment on function memex._chunks_written(uuid[]) is
'Internal: after a write function stored new or changed chunks: NOTIFY memex_pending, then embed-on-write.';

-- memex._worker_started(...): a worker's heartbeat row (its id). Rows of workers stopped or
-- silent for a week are removed here: the table stays the size of the fleet.
create or replace function memex._worker_started(
    host text, pid integer, space text, provider text, model text, beat_interval interval
)
returns bigint
language sql
volatile
parallel unsafe
security invoker
set search_path = pg_catalog, pg_temp
as $$
    delete from memex.worker_heartbeats as w
     where coalesce(w.stopped_at, w.beat_at) < pg_catalog.now() - interval '7 days';
    insert into memex.worker_heartbeats (host, pid, backend_pid, space, provider, model, beat_interval)
    values (
        _worker_started.host, _worker_started.pid, pg_catalog.pg_backend_pid(), _worker_started.space
        , _worker_started.provider, _worker_started.model, _worker_started.beat_interval
    )
    returning id;
$$;

comment on function memex._worker_started(text, integer, text, text, text, interval) is
'Internal: registers a memex worker run (its heartbeat row id).';

-- memex._worker_beat(id, embedded, rows_per_s, last_batch_at, error): a heartbeat; an error
-- (null: none new) is kept with its time until the next one. False when the row is gone.
create or replace function memex._worker_beat(
    id bigint, embedded bigint, rows_per_s double precision, last_batch_at timestamptz
    , error text default null
)
returns boolean
language sql
volatile
parallel unsafe
security invoker
set search_path = pg_catalog, pg_temp
as $$
    with beat as (
        update memex.worker_heartbeats as w
           set beat_at = pg_catalog.now()
             , backend_pid = pg_catalog.pg_backend_pid()
             , embedded = _worker_beat.embedded
             , rows_per_s = _worker_beat.rows_per_s
             , last_batch_at = coalesce(_worker_beat.last_batch_at, w.last_batch_at)
             , last_error = coalesce(_worker_beat.error, w.last_error)
             , last_error_at = case when _worker_beat.error is null then w.last_error_at else pg_catalog.now() end
         where w.id = _worker_beat.id
        returning 1
    )
    select exists (select from beat);
$$;

comment on function memex._worker_beat(bigint, bigint, double precision, timestamptz, text) is
'Internal: a memex worker heartbeat (false when its row is gone).';

create or replace function memex._worker_stopped(id bigint, reason text)
returns void
language sql
volatile
parallel unsafe
security invoker
set search_path = pg_catalog, pg_temp
as $$
    update memex.worker_heartbeats as w
       set stopped_at = pg_catalog.now(), beat_at = pg_catalog.now(), stop_reason = _worker_stopped.reason
     where w.id = _worker_stopped.id;
$$;

comment on function memex._worker_stopped(bigint, text) is
'Internal: a memex worker run ended (why).';

-- memex.workers: every worker run of the last week, `lost` when silent for more than three
-- heartbeat intervals (killed, its machine gone, or cut off from the database).
create or replace view memex.workers
with (security_invoker = true)
as
select
    w.id
    , w.host
    , w.pid
    , w.backend_pid
    , w.space
    , w.provider
    , w.model
    , case
        when w.stopped_at is not null then 'stopped'
        when pg_catalog.now() - w.beat_at > 3 * w.beat_interval then 'lost'
        else 'running'
    end as state
    , w.rows_per_s
    , w.embedded
    , w.started_at
    , w.beat_at as last_heartbeat
    , w.last_batch_at
    , w.last_error
    , w.last_error_at
    , w.stopped_at
    , w.stop_reason
from memex.worker_heartbeats as w;

comment on view memex.workers is
'memex worker runs of the last week: host, pid, space, provider, state (running, lost, stopped), rows/s over the last minute, last batch, last error.';
