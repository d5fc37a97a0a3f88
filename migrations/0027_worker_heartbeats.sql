-- `memex worker`s write a heartbeat row each (memex._worker_started / _worker_beat /
-- _worker_stopped, sql/143-queue.sql); admins read them through the memex.workers view, which
-- calls a worker silent for more than three of its intervals lost. Not tenant data: no RLS,
-- memex_admin only.
create table memex.worker_heartbeats (
    id bigint generated always as identity primary key
    , host text not null
    , pid integer not null  -- the worker's process on its host
    , backend_pid integer  -- its database session now (changes when it reconnects)
    , space text not null
    , provider text not null
    , model text not null
    , beat_interval interval not null check (beat_interval > interval '0')
    , started_at timestamptz not null default now()
    , beat_at timestamptz not null default now()
    , last_batch_at timestamptz
    , rows_per_s double precision not null default 0 check (rows_per_s >= 0)  -- over the last minute
    , embedded bigint not null default 0 check (embedded >= 0)
    , last_error text
    , last_error_at timestamptz
    , stopped_at timestamptz
    , stop_reason text
);

comment on table memex.worker_heartbeats is
'One row per memex worker run: its heartbeat, throughput and last error (read memex.workers).';
