-- Internals that files from 100 on share: the registry of memex's advisory locks, bounded
-- waits on them that name the holder, and the batch sizes embedding procedures accept.

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

-- memex._advisory_holder_pids(key1, key2): the backends holding an advisory lock, one bigint key
-- (key2 null) or two integer keys, as pg_advisory_lock takes them. memex._advisory_holders: the
-- same as the message of a wait that gave up: "pid 123 (application psql, user api)", or null
-- (the caller left out). Any session may take memex's keys (an
-- advisory lock needs no privilege): every memex wait on one is bounded and names the holder.
create or replace function memex._advisory_holder_pids(key1 bigint, key2 integer default null)
returns setof integer
language sql
stable
parallel safe
security invoker
set search_path = pg_catalog, pg_temp
as $$
    select l.pid
      from pg_catalog.pg_locks as l
     where l.locktype = 'advisory' and l.granted
       and case when _advisory_holder_pids.key2 is null
                then l.classid = ((_advisory_holder_pids.key1 >> 32) & 4294967295)::text::oid
                     and l.objid = (_advisory_holder_pids.key1 & 4294967295)::text::oid and l.objsubid = 1
                else l.classid = (_advisory_holder_pids.key1 & 4294967295)::text::oid
                     and l.objid = (_advisory_holder_pids.key2::bigint & 4294967295)::text::oid and l.objsubid = 2
           end
     order by l.pid
$$;

comment on function memex._advisory_holder_pids(bigint, integer) is
'Internal: the backends holding an advisory lock given as pg_advisory_lock takes it (one bigint, or two integers).';

create or replace function memex._advisory_holders(key1 bigint, key2 integer default null)
returns text
language sql
stable
parallel safe
security invoker
set search_path = pg_catalog, pg_temp
as $$
    select pg_catalog.string_agg(pg_catalog.format('pid %s (application %s, user %s)', h.pid
               , coalesce(nullif(a.application_name, ''), '-'), coalesce(a.usename::text, '-'))
               , ', ' order by h.pid)
      from memex._advisory_holder_pids(_advisory_holders.key1, _advisory_holders.key2) as h (pid)
      left join pg_catalog.pg_stat_activity as a on h.pid = a.pid
     where h.pid <> pg_catalog.pg_backend_pid()
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
