-- Conversations, their messages and their summaries (artefact v2): upserts and deletes, with the
-- same rules as documents (sql/120): SECURITY INVOKER, idempotent, parent row locked first.

-- memex._cut(body, chars): body, or its first `chars` characters cut back to a word and "...".
create or replace function memex._cut(body text, chars integer)
returns text
language sql
immutable
parallel safe
security invoker
set search_path = pg_catalog, pg_temp
as $$
    select case when pg_catalog.length(body) <= chars then body
                else pg_catalog.regexp_replace(pg_catalog.left(body, chars), '\s+\S*$', '') || ' ...' end
$$;

comment on function memex._cut(text, integer) is 'Internal: a text cut to a length at a word, with "..." when cut.';

-- memex._message_context(previous_role, previous): what a message's chunks are embedded with
-- besides their own text: the turn before it with its speaker (its name, else its role), cut to
-- 300 characters at a word ("Yes, finished
-- it last week" means nothing without "Did you finish the book?"). Null for a conversation's
-- first message. Chosen on LoCoMo's development conversations (docs/search.md, "Messages in
-- context": the turn after it as well measured no better).
create or replace function memex._message_context(previous_role text, previous text)
returns text
language sql
immutable
parallel safe
security invoker
set search_path = pg_catalog, pg_temp
as $$
    select 'In reply to ' || previous_role || ': ' || memex._cut(previous, 300)
$$;

comment on function memex._message_context(text, text) is
'Internal: the context a message is embedded with (the turn before it, cut to 300 characters), or null.';

-- memex._covers(covers, seq, metadata): whether a summary's covers names a message: its seq, or
-- the source app's id (metadata.source_id) of an imported message (docs/artefact-v2.md).
create or replace function memex._covers(covers jsonb, seq integer, metadata jsonb)
returns boolean
language sql
immutable
parallel safe
security invoker
set search_path = pg_catalog, pg_temp
as $$
    select covers @> pg_catalog.to_jsonb(seq)
        or (metadata ? 'source_id' and covers @> pg_catalog.jsonb_build_array(metadata -> 'source_id'))
$$;

comment on function memex._covers(jsonb, integer, jsonb) is
'Internal: whether a summary''s covers names a message (its seq, or its metadata.source_id).';

-- memex._embedding_text(content, context): what the model embeds for a chunk: its content,
-- then its context (after it: a model that truncates cuts the context, never the content).
create or replace function memex._embedding_text(content text, context text)
returns text
language sql
immutable
parallel safe
security invoker
set search_path = pg_catalog, pg_temp
as $$
    select case when context is null then content else content || E'\n\n' || context end
$$;

comment on function memex._embedding_text(text, text) is
'Internal: the text embedded for a chunk (its content, then its context when it has one).';

-- memex._message_contexts_near(conversation, seqs): gives the chunks of the messages an upsert
-- wrote (seqs) and of the message after each (the only ones whose context can change when
-- nothing was removed) their context and the hash of what is embedded; a chunk whose context
-- changed (its neighbour was added, changed or removed) becomes pending. The one place
-- contexts are computed: an agent appending one turn to a long conversation reads a few rows,
-- not all of it. The turn before a message is the one with the highest lower seq (seq may skip
-- numbers).
create or replace function memex._message_contexts_near(conversation uuid, seqs integer[])
returns void
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
    changed uuid[];
begin
    with written as (
        select m.id, m.seq from memex.messages as m
         where m.tenant_id = tenant and m.conversation_id = _message_contexts_near.conversation
           and m.seq = any(_message_contexts_near.seqs)
    ),
    affected as (
        select w.id, w.seq from written as w
        union
        select n.id, n.seq
          from pg_catalog.unnest(_message_contexts_near.seqs) as s (seq)
          cross join lateral (
              select m.id, m.seq from memex.messages as m
               where m.tenant_id = tenant and m.conversation_id = _message_contexts_near.conversation
                 and m.seq > s.seq
               order by m.seq limit 1
          ) as n
    ),
    contexts as (
        select a.id, memex._message_context(coalesce(p.name, p.role::text), p.content) as context
          from affected as a
          left join lateral (
              select m.name, m.role, m.content from memex.messages as m
               where m.tenant_id = tenant and m.conversation_id = _message_contexts_near.conversation
                 and m.seq < a.seq
               order by m.seq desc limit 1
          ) as p on true
    ),
    wanted as (
        select k.id, x.context
             , pg_catalog.sha256(pg_catalog.convert_to(memex._embedding_text(k.content, x.context), 'UTF8')) as hash
          from memex.chunks as k
          join contexts as x on k.message_id = x.id
         where k.tenant_id = tenant and k.conversation_id = _message_contexts_near.conversation
    ),
    updated as (
        update memex.chunks as k
           set context = w.context, content_hash = w.hash
          from wanted as w
         where k.tenant_id = tenant and k.id = w.id and k.content_hash <> w.hash
        returning k.id
    )
    select pg_catalog.array_agg(u.id) into changed from updated as u;
    perform memex._chunks_written(changed);
end
$$;

comment on function memex._message_contexts_near(uuid, integer[]) is
'Internal: sets the context of the messages written (seqs) and of the message after each; changed ones become pending.';

-- memex._message_contexts(conversation, message): the same for every message of a conversation
-- (an upsert that removed messages), or for one (rechunk, which re-cuts one message at a time).
create or replace function memex._message_contexts(conversation uuid, message uuid default null)
returns void
language plpgsql
volatile
parallel unsafe
security invoker
set search_path = pg_catalog, pg_temp
as $$
declare
    seqs integer[];  -- computed on its own: Citus would run a call with it on the shard
    tenant uuid := memex._require_tenant();
begin
    seqs := array(
        select m.seq from memex.messages as m
         where m.tenant_id = tenant and m.conversation_id = _message_contexts.conversation
           and (_message_contexts.message is null or m.id = _message_contexts.message));
    perform memex._message_contexts_near(_message_contexts.conversation, seqs);
end
$$;

comment on function memex._message_contexts(uuid, uuid) is
'Internal: sets the context (and embedded-text hash) of a conversation''s message chunks (or one message''s); changed ones become pending.';


-- memex.upsert_conversation_outcome(slug, title, created_date, metadata, system_prompt): by
-- (tenant, slug); the conversation's id and what happened: inserted, updated or unchanged. A
-- null argument keeps the stored value, so a later call with fewer arguments erases nothing.
create or replace function memex.upsert_conversation_outcome(
    slug text, title text default null, created_date date default null, metadata jsonb default null
    , system_prompt text default null, out id uuid, out action text
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
    tenant uuid := memex._require_tenant();
    old record;
    conversation uuid;
begin
    if upsert_conversation_outcome.slug is null or pg_catalog.btrim(upsert_conversation_outcome.slug) = '' then
        raise exception 'conversation slug must not be empty' using errcode = '22023';
    end if;
    if pg_catalog.length(upsert_conversation_outcome.title) > 1000 then
        raise exception 'conversation title has % characters; the limit is 1000 (slug %)'
            , pg_catalog.length(upsert_conversation_outcome.title), upsert_conversation_outcome.slug
            using errcode = '22023';
    end if;
    if upsert_conversation_outcome.metadata is not null and pg_catalog.jsonb_typeof(upsert_conversation_outcome.metadata) <> 'object' then
        raise exception 'conversation metadata must be a JSON object (slug %)', upsert_conversation_outcome.slug
            using errcode = '22023';
    end if;
    loop
        select c.id, c.title, c.created_date, c.metadata, c.system_prompt
          into old
          from memex.conversations as c
         where c.tenant_id = tenant and c.slug = upsert_conversation_outcome.slug
           for update;
        if found then
            if (old.title, old.created_date, old.metadata, old.system_prompt) is distinct from (
                coalesce(upsert_conversation_outcome.title, old.title)
                , coalesce(upsert_conversation_outcome.created_date, old.created_date)
                , coalesce(upsert_conversation_outcome.metadata, old.metadata)
                , coalesce(upsert_conversation_outcome.system_prompt, old.system_prompt)
            ) then
                update memex.conversations as c
                   set title = coalesce(upsert_conversation_outcome.title, c.title)
                       , created_date = coalesce(upsert_conversation_outcome.created_date, c.created_date)
                       , metadata = coalesce(upsert_conversation_outcome.metadata, c.metadata)
                       , system_prompt = coalesce(upsert_conversation_outcome.system_prompt, c.system_prompt)
                       , updated_at = pg_catalog.now()
                 where c.tenant_id = tenant and c.id = old.id;
                action := 'updated';
            else
                action := 'unchanged';
            end if;
            id := old.id;
            return;
        end if;
        insert into memex.conversations as c (tenant_id, slug, title, created_date, metadata, system_prompt)
        values (
            tenant, upsert_conversation_outcome.slug, upsert_conversation_outcome.title, upsert_conversation_outcome.created_date
            , coalesce(upsert_conversation_outcome.metadata, '{}'), upsert_conversation_outcome.system_prompt
        )
        on conflict on constraint conversations_tenant_id_slug_key do nothing
        returning c.id into conversation;
        if conversation is not null then
            id := conversation;
            action := 'inserted';
            return;
        end if;
    end loop;
end
$$;

comment on function memex.upsert_conversation_outcome(text, text, date, jsonb, text) is
'Creates or updates a conversation by slug, like memex.upsert_conversation, and says what it did: inserted, updated or unchanged.';

-- memex.upsert_conversation(slug, title, created_date, metadata, system_prompt): the same,
-- returning the conversation's id.
create or replace function memex.upsert_conversation(
    slug text, title text default null, created_date date default null, metadata jsonb default null
    , system_prompt text default null
)
returns uuid
language sql
volatile
parallel unsafe
security invoker
set search_path = pg_catalog, pg_temp
as $$
    select o.id from memex.upsert_conversation_outcome(
        upsert_conversation.slug, upsert_conversation.title, upsert_conversation.created_date
        , upsert_conversation.metadata, upsert_conversation.system_prompt
    ) as o
$$;

comment on function memex.upsert_conversation(text, text, date, jsonb, text) is
'Creates or updates a conversation by slug; null arguments keep stored values.';

-- memex._lock_conversation(slug): the conversation's id, its row locked for this transaction.
create or replace function memex._lock_conversation(slug text)
returns uuid
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
    conversation uuid;
begin
    select c.id into conversation
      from memex.conversations as c
     where c.tenant_id = tenant and c.slug = _lock_conversation.slug
       for update;
    if conversation is null then
        raise exception 'unknown conversation: %', _lock_conversation.slug
            using errcode = 'P0002', hint = 'create it first with memex.upsert_conversation(slug)';
    end if;
    return conversation;
end
$$;

comment on function memex._lock_conversation(text) is
'Internal: locks a conversation row (serialises writers of its messages and summaries).';

-- memex._text_size(body): its characters and lines (a conversation's running totals).
create or replace function memex._text_size(body text, out chars bigint, out lines bigint)
language sql
immutable
strict
parallel safe
security invoker
set search_path = pg_catalog, pg_temp
as $$
    select
        pg_catalog.length(_text_size.body)::bigint
        , (pg_catalog.length(_text_size.body) - pg_catalog.length(pg_catalog.replace(_text_size.body, E'\n', '')) + 1)::bigint
$$;

comment on function memex._text_size(text) is
'Internal: characters and lines of a text (a conversation''s total_chars and total_lines).';

-- memex.upsert_messages_outcome(conversation_slug, messages, replace): idempotent by
-- (conversation, seq). A message without seq is appended after the conversation's last one, so
-- an agent logging one turn per call keeps every turn. With replace, the payload is the whole
-- conversation: messages it does not hold are deleted (with their chunks), and seq counts from 1
-- for messages without one. Counts what happened to the conversation's messages.
create or replace function memex.upsert_messages_outcome(
    conversation_slug text, messages jsonb, replace boolean default false
    , out inserted integer, out updated integer, out unchanged integer, out removed integer
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
    doomed uuid[];  -- computed on its own: Citus would run a call with it on the shard
    tenant uuid := memex._require_tenant();
    conversation uuid;
    last_seq integer := 0;
    lang text;
    checked jsonb;
    m record;
    old record;
    message uuid;
    digest bytea;
    delta_chars bigint := 0;  -- the conversation's running totals move by these
    delta_lines bigint := 0;
    written integer[] := '{}';  -- the seqs inserted or updated: their contexts, and the next ones'
begin
    inserted := 0;
    updated := 0;
    unchanged := 0;
    removed := 0;
    if upsert_messages_outcome.replace is null then
        raise exception 'replace must be true or false, not null' using errcode = '22023';
    end if;
    -- Locked before the last seq is read: two concurrent appends never take the same number.
    conversation := memex._lock_conversation(upsert_messages_outcome.conversation_slug);
    if not upsert_messages_outcome.replace then
        select coalesce(pg_catalog.max(g.seq), 0) into last_seq
          from memex.messages as g where g.tenant_id = tenant and g.conversation_id = conversation;
    end if;
    checked := memex._check_messages(upsert_messages_outcome.messages, last_seq);  -- whole, before any write
    if checked ? 'error' then
        raise exception using errcode = '22023', message = checked ->> 'error', hint = checked ->> 'hint';
    end if;
    if upsert_messages_outcome.replace then
        doomed := array(
            select k.id from memex.chunks as k
              join memex.messages as g on g.tenant_id = k.tenant_id and g.id = k.message_id
             where k.tenant_id = tenant and k.conversation_id = conversation and g.tenant_id = tenant
               and g.conversation_id = conversation
               and g.seq <> all (array(select (x ->> 'seq')::integer from pg_catalog.jsonb_array_elements(checked) as x)));
        perform memex._drop_chunks(doomed);
        with gone as (
            delete from memex.messages as g
             where g.tenant_id = tenant and g.conversation_id = conversation
               and g.seq <> all (array(select (x ->> 'seq')::integer from pg_catalog.jsonb_array_elements(checked) as x))
            returning g.content
        )
        select pg_catalog.count(*), coalesce(pg_catalog.sum(z.chars), 0), coalesce(pg_catalog.sum(z.lines), 0)
          into removed, delta_chars, delta_lines
          from gone cross join lateral memex._text_size(gone.content) as z;
        delta_chars := -delta_chars;
        delta_lines := -delta_lines;
    end if;
    select memex._ts_config(c.metadata) into lang
      from memex.conversations as c where c.tenant_id = tenant and c.id = conversation;
    for m in
        select x.seq, x.role, x.name, x.ts, x.content, x.metadata
          from pg_catalog.jsonb_to_recordset(checked)
            as x (seq integer, role memex.message_role, name text, ts timestamptz, content text, metadata jsonb)
         order by x.seq
    loop
        digest := pg_catalog.sha256(pg_catalog.convert_to(m.content, 'UTF8'));
        select g.id, g.role, g.name, g.ts, g.metadata, g.content_hash, s.chars, s.lines into old
          from memex.messages as g
          cross join lateral memex._text_size(g.content) as s
         where g.tenant_id = tenant and g.conversation_id = conversation and g.seq = m.seq;
        if not found then
            insert into memex.messages as g (tenant_id, conversation_id, seq, role, name, ts, content, metadata, content_hash)
            values (tenant, conversation, m.seq, m.role, m.name, m.ts, m.content, m.metadata, digest)
            returning g.id into message;
            inserted := inserted + 1;
        elsif (old.role, old.name, old.ts, old.metadata, old.content_hash)
              is distinct from (m.role, m.name, m.ts, m.metadata, digest) then
            update memex.messages as g
               set role = m.role, name = m.name, ts = m.ts, content = m.content, metadata = m.metadata, content_hash = digest
             where g.tenant_id = tenant and g.id = old.id;
            message := old.id;
            updated := updated + 1;
            delta_chars := delta_chars - old.chars;
            delta_lines := delta_lines - old.lines;
        else
            unchanged := unchanged + 1;
            continue;
        end if;
        written := written || m.seq;
        select delta_chars + z.chars, delta_lines + z.lines into delta_chars, delta_lines
          from memex._text_size(m.content) as z;
        if old.content_hash is distinct from digest then
            perform memex._replace_chunks('message', message, conversation, m.content, lang);
        end if;
    end loop;
    if inserted + updated + removed > 0 then
        if removed > 0 then
            perform memex._message_contexts(conversation);
        else
            perform memex._message_contexts_near(conversation, written);
        end if;
        update memex.conversations as c
           set total_chars = c.total_chars + delta_chars, total_lines = c.total_lines + delta_lines
               , updated_at = pg_catalog.now()
         where c.tenant_id = tenant and c.id = conversation;
    end if;
end
$$;

comment on function memex.upsert_messages_outcome(text, jsonb, boolean) is
'Upserts messages of a conversation by (conversation, seq), appending those without seq; with replace, deletes the messages the payload does not hold. Counts inserted, updated, unchanged and removed messages.';

-- memex.upsert_messages(conversation_slug, messages, replace): the same, returning how many
-- messages were inserted, changed or removed.
create or replace function memex.upsert_messages(conversation_slug text, messages jsonb, replace boolean default false)
returns integer
language sql
volatile
parallel unsafe
security invoker
set search_path = pg_catalog, pg_temp
as $$
    select o.inserted + o.updated + o.removed
      from memex.upsert_messages_outcome(
          upsert_messages.conversation_slug, upsert_messages.messages, upsert_messages.replace
      ) as o
$$;

comment on function memex.upsert_messages(text, jsonb, boolean) is
'Upserts messages [{seq?, role, name?, ts?, content, metadata?}] of a conversation by (conversation, seq); a message without seq is appended after the last one; replace => true makes the payload the whole conversation. Returns how many messages were inserted, changed or removed.';

-- memex.upsert_summaries(conversation_slug, artefact): an artefact v2 document.
create or replace function memex.upsert_summaries(conversation_slug text, artefact jsonb)
returns table (inserted integer, updated integer, unchanged integer)
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
    checked jsonb;
    conversation uuid;
    lang text;
    lvl integer;
    s record;
    old record;
    summary uuid;
    digest bytea;
begin
    inserted := 0;
    updated := 0;
    unchanged := 0;
    checked := memex._check_artefact(upsert_summaries.artefact, upsert_summaries.conversation_slug);
    if checked ? 'error' then
        raise exception using errcode = '22023', message = checked ->> 'error', hint = checked ->> 'hint';
    end if;
    lvl := (checked ->> 'level')::integer;
    perform memex.upsert_conversation(
        upsert_summaries.conversation_slug, checked ->> 'title', (checked ->> 'date')::date
    );
    conversation := memex._lock_conversation(upsert_summaries.conversation_slug);
    select memex._ts_config(c.metadata) into lang
      from memex.conversations as c where c.tenant_id = tenant and c.id = conversation;
    for s in
        select x.index, x.content, x.covers, x.char_count, x.topics, x.meta
          from pg_catalog.jsonb_to_recordset(checked -> 'summaries')
            as x (
                index integer, content text, covers jsonb, char_count integer, topics text[], meta jsonb
            )
         order by x.index nulls last, x.content
    loop
        digest := pg_catalog.sha256(pg_catalog.convert_to(s.content, 'UTF8'));
        if s.index is not null then
            select u.id, u.content_hash, u.covers, u.char_count, u.topics, u.meta into old
              from memex.summaries as u
             where u.tenant_id = tenant and u.conversation_id = conversation and u.level = lvl and u.index = s.index;
        else
            select u.id, u.content_hash, u.covers, u.char_count, u.topics, u.meta into old
              from memex.summaries as u
             where u.tenant_id = tenant and u.conversation_id = conversation and u.level = lvl
               and u.index is null and u.content_hash = digest;
        end if;
        if not found then
            insert into memex.summaries as u (
                tenant_id, conversation_id, level, index, covers, content, char_count, topics, meta, content_hash
            )
            values (tenant, conversation, lvl, s.index, s.covers, s.content, s.char_count, s.topics, s.meta, digest)
            returning u.id into summary;
            inserted := inserted + 1;
        elsif (old.content_hash, old.covers, old.char_count, old.topics, old.meta)
              is distinct from (digest, s.covers, s.char_count, s.topics, s.meta) then
            update memex.summaries as u
               set content = s.content, content_hash = digest, covers = s.covers, char_count = s.char_count
                   , topics = s.topics, meta = s.meta, updated_at = pg_catalog.now()
             where u.tenant_id = tenant and u.id = old.id;
            summary := old.id;
            updated := updated + 1;
        else
            unchanged := unchanged + 1;
            continue;
        end if;
        if old.content_hash is distinct from digest then
            perform memex._replace_chunks('summary', summary, conversation, s.content, lang);
        end if;
    end loop;
    return next;
end
$$;

comment on function memex.upsert_summaries(text, jsonb) is
'Upserts the summaries of an artefact v2 document, by (conversation, level, index) or (conversation, level, content hash); returns counts.';

-- memex.delete_conversation(slug): true when a conversation was deleted (with everything in it).
create or replace function memex.delete_conversation(slug text)
returns boolean
language plpgsql
volatile
parallel unsafe
security invoker
set search_path = pg_catalog, pg_temp
-- custom plans: a generic one made on small tables scans by tenant alone (docs/architecture.md)
set plan_cache_mode = force_custom_plan
as $$
declare
    doomed uuid[];  -- computed on its own: Citus would run a call with it on the shard
    tenant uuid := memex._require_tenant();
    conversation uuid;
begin
    select c.id into conversation from memex.conversations as c
     where c.tenant_id = tenant and c.slug = delete_conversation.slug
       for update;
    if conversation is null then
        return false;
    end if;
    -- its messages' and summaries' chunks, out of the text index first
    doomed := array(
        select k.id from memex.chunks as k where k.tenant_id = tenant and k.conversation_id = conversation);
    perform memex._drop_chunks(doomed);
    delete from memex.conversations as c where c.tenant_id = tenant and c.id = conversation;
    return true;
end
$$;

comment on function memex.delete_conversation(text) is
'Deletes a conversation by slug with its messages, summaries and chunks; true when one was deleted.';
