-- memex.compose_context: search results packed into a prompt-ready block with numbered citations.

-- memex._join_chunks(a, b): two consecutive chunks of one source as one text: the overlap
-- that chunking repeats at the start of b (the end of a, verbatim) is written once. The overlap
-- is never longer than b, so only a's last length(b) characters are searched: the work of a
-- join is bounded by the chunk's size (at most 16 characters a token), whatever a has grown to.
-- (Searching all of a, a 141 KB document of repeated words took over 15 s to compose.)
create or replace function memex._join_chunks(a text, b text)
returns text
language plpgsql
immutable
parallel safe
security invoker
set search_path = pg_catalog, pg_temp
as $$
declare
    tail text := pg_catalog.right(a, pg_catalog.length(b));
    probe text := pg_catalog.left(b, 32);
    p integer;
    start integer := 1;
    n integer;
begin
    -- the longest end of a that b starts with: where b's first characters occur in a's tail
    loop
        p := pg_catalog.strpos(pg_catalog.substr(tail, start), probe);
        exit when p = 0 or probe = '';
        p := p + start - 1;
        n := pg_catalog.length(tail) - p + 1;
        if pg_catalog.substr(tail, p) = pg_catalog.left(b, n) then
            return a || pg_catalog.substr(b, n + 1);
        end if;
        start := p + 1;
    end loop;
    n := least(pg_catalog.length(tail), pg_catalog.length(probe) - 1);
    while n > 0 loop  -- an overlap shorter than the probe
        if pg_catalog.right(a, n) = pg_catalog.left(b, n) then
            return a || pg_catalog.substr(b, n + 1);
        end if;
        n := n - 1;
    end loop;
    return a || E'\n' || b;
end
$$;

comment on function memex._join_chunks(text, text) is
'Internal: joins consecutive chunks of a source, writing their overlap once.';

-- memex._turn_line(seq, ts, speaker, content, session_start): one turn of a conversation block:
-- "#7 13:56 Caroline: text". The time is left out when it is the session's own (its header
-- shows it: a transcript that dates every turn with its session's time repeats nothing), HH:MM
-- on the session's day, the date as well otherwise; none when the message has no time. A
-- content that already opens with "<speaker>:" (a transcript that writes its speakers) is not
-- prefixed again.
create or replace function memex._turn_line(
    seq integer, ts timestamptz, speaker text, content text, session_start timestamptz
)
returns text
language sql
stable
parallel safe
security invoker
set search_path = pg_catalog, pg_temp
as $$
    select pg_catalog.concat_ws(' '
        , '#' || seq
        , case when ts is null then null
               when pg_catalog.date_trunc('minute', ts) = pg_catalog.date_trunc('minute', session_start) then null
               when ts::date = session_start::date then pg_catalog.to_char(ts, 'HH24:MI')
               else pg_catalog.to_char(ts, 'YYYY-MM-DD HH24:MI') end
        , case when pg_catalog.starts_with(content, speaker || ':') then content
               else speaker || ': ' || content end)
$$;

comment on function memex._turn_line(integer, timestamptz, text, text, timestamptz) is
'Internal: one turn of a compose_context conversation block: number, time (unless the session''s), speaker, text.';

-- memex.compose_context(query, token_budget, ...): the best passages of rag_search, within a
-- token budget (tokens of the space's model, counted on the text returned), under numbered
-- citations (docs/search.md, "compose_context").
--   * A document or summary is one block per source under "[n] kind: title, uri or slug": its
--     chunks in document order, neighbours (consecutive ords) joined with their overlap written
--     once and a gap shown as [...]; a first chunk that opens with the title does not repeat it.
--     A block that does not fit is left out and smaller ones after it may still go in.
--   * Messages are grouped by conversation (a session): "[n] conversation: title, slug, time"
--     (its first timed turn's, else its date), the line of the summary covering its first turn
--     when it has one, then its turns in order, one line each with number, time (unless the
--     session's) and speaker. Turns are taken one by one in the order of the hits (a session's
--     header is paid by its first turn), never twice; when every hit is placed and budget is
--     left, the turns just before and after the hits follow (nearest hits first), then the
--     summary lines of the sessions shown (a summary that is a hit itself takes its line in
--     its hit's turn). Evidence first: a summary line is 40-50 tokens that turns would use.
--     Sessions are listed in time order, in the places their hits earned among the blocks.
-- A NOTICE says when nothing fits.
create or replace function memex.compose_context(
    query text, token_budget integer default 2000, k integer default 8, mode text default 'hybrid'
    , filters jsonb default '{}', space text default null
)
returns text
language plpgsql
stable
parallel unsafe
security invoker
set search_path = pg_catalog, pg_temp
as $$
declare
    tenant uuid := memex.current_tenant();
    unit record;
    piece record;
    turn record;
    body text;
    part text;
    head text;
    prev_ord integer;
    session_slug text;
    used integer := 0;
    cost integer;
    found_any boolean := false;
    slot integer := 0;
    -- what is kept, in the order found: {slot, session, seq, text}; seq null for a block's
    -- own text (a document, a summary, a session's header)
    kept jsonb := '[]';
    sessions jsonb := '{}';  -- slug -> {slot, at, start, id, summary_id, summary} of the sessions opened
    shown uuid[] := '{}';  -- the summaries shown (as a block or as a session's summary line)
    summary_line constant integer := -2147483648;  -- the seq that sorts a summary line under its header
    out_text text;
begin
    if token_budget is null or token_budget < 1 then
        raise exception 'token_budget must be at least 1, not %', coalesce(token_budget::text, 'null')
            using errcode = '22023';
    end if;
    for unit in
        with hits as (
            select r.*, pg_catalog.row_number() over () as hit_rank
              from memex.rag_search(compose_context.query, compose_context.k, compose_context.mode
                                    , compose_context.filters, compose_context.space) as r
        )
        select h.source_kind, h.source_id, min(h.hit_rank) as best
             , pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(
                   'ord', (h.metadata ->> 'ord')::integer, 'content', h.content)
                   order by (h.metadata ->> 'ord')::integer) as pieces
             , (pg_catalog.array_agg(h.metadata order by h.hit_rank))[1] as metadata
          from hits as h
         group by h.source_kind, h.source_id
         order by best
    loop
        found_any := true;
        body := '';
        prev_ord := null;
        for piece in
            select (x.p ->> 'ord')::integer as ord, x.p ->> 'content' as content
              from pg_catalog.jsonb_array_elements(unit.pieces) as x (p)
        loop
            part := piece.content;
            if piece.ord = 0 and unit.metadata ? 'title'
               and pg_catalog.starts_with(part, (unit.metadata ->> 'title') || E'\n') then
                part := pg_catalog.ltrim(pg_catalog.substr(part, pg_catalog.length(unit.metadata ->> 'title') + 2), E'\n');
            end if;
            body := case when prev_ord is null then part
                         when piece.ord = prev_ord + 1 then memex._join_chunks(body, part)
                         else body || E'\n[...]\n' || part end;
            prev_ord := piece.ord;
        end loop;
        if unit.source_kind = 'message' and unit.metadata ? 'conversation' then
            session_slug := unit.metadata ->> 'conversation';
            head := null;
            if not sessions ? session_slug then
                -- a session's time: its first timed turn's, else its date
                select v.id, coalesce(f.ts, v.created_date::timestamptz) as at, f.ts as start
                     , pg_catalog.concat_ws(', ', v.title, v.slug
                           , coalesce(pg_catalog.to_char(f.ts, 'YYYY-MM-DD HH24:MI'), v.created_date::text)) as text
                     , c.id as summary_id, c.content as summary
                  into turn
                  from memex.conversations as v
                  left join lateral (
                      select m.ts from memex.messages as m
                       where m.tenant_id = tenant and m.conversation_id = v.id and m.ts is not null
                       order by m.seq limit 1
                  ) as f on true
                  left join lateral (
                      select u.id, u.content from memex.summaries as u
                       where u.tenant_id = tenant and u.conversation_id = v.id and u.id <> all(shown)
                         and memex._covers(u.covers, (unit.metadata ->> 'seq')::integer
                             , (select m.metadata from memex.messages as m where m.tenant_id = tenant and m.id = unit.source_id))
                       order by u.level, u.index nulls last, u.id limit 1
                  ) as c on true
                 where v.tenant_id = tenant and v.slug = session_slug;
                head := 'conversation: ' || turn.text;
            end if;
            part := memex._turn_line((unit.metadata ->> 'seq')::integer, (unit.metadata ->> 'ts')::timestamptz
                , coalesce(unit.metadata ->> 'name', unit.metadata ->> 'role'), body
                , case when head is null then (sessions -> session_slug ->> 'start')::timestamptz else turn.start end);
            cost := memex.count_tokens(part || E'\n', compose_context.space)
                + coalesce(memex.count_tokens('[' || (slot + 1) || '] ' || head || E'\n', compose_context.space), 0);
            continue when used + cost > token_budget;
            if head is not null then
                slot := slot + 1;
                sessions := sessions || pg_catalog.jsonb_build_object(session_slug, pg_catalog.jsonb_build_object(
                    'slot', slot, 'at', turn.at, 'start', turn.start, 'id', turn.id
                    , 'summary_id', turn.summary_id, 'summary', turn.summary));
                kept := kept || pg_catalog.jsonb_build_object('slot', slot, 'session', session_slug, 'text', head);
            end if;
            kept := kept || pg_catalog.jsonb_build_object('slot', (sessions -> session_slug ->> 'slot')::integer
                , 'session', session_slug, 'seq', (unit.metadata ->> 'seq')::integer, 'text', part);
        else
            continue when unit.source_kind = 'summary' and unit.source_id = any(shown);
            -- a summary hit whose session is open: its line under that session's header
            session_slug := (select x.key from pg_catalog.jsonb_each(sessions) as x
                              where unit.source_kind = 'summary' and x.value ->> 'summary_id' = unit.source_id::text);
            if session_slug is not null then
                part := 'summary: ' || memex._cut(sessions -> session_slug ->> 'summary', 200);
                cost := memex.count_tokens(part || E'\n', compose_context.space);
                continue when used + cost > token_budget;
                shown := shown || unit.source_id;
                kept := kept || pg_catalog.jsonb_build_object('slot', (sessions -> session_slug ->> 'slot')::integer
                    , 'session', session_slug, 'seq', summary_line, 'text', part);
                used := used + cost;
                continue;
            end if;
            head := unit.source_kind || ': ' || concat_ws(', '
                , unit.metadata ->> 'title'
                , coalesce(unit.metadata ->> 'uri', unit.metadata ->> 'conversation')
                , case when unit.metadata ? 'level' then 'L' || (unit.metadata ->> 'level') end
                , unit.metadata ->> 'date');
            part := head || E'\n' || body;
            cost := memex.count_tokens('[' || (slot + 1) || '] ' || part || E'\n\n', compose_context.space);
            continue when used + cost > token_budget;
            slot := slot + 1;
            if unit.source_kind = 'summary' then
                shown := shown || unit.source_id;
            end if;
            kept := kept || pg_catalog.jsonb_build_object('slot', slot, 'text', part);
        end if;
        used := used + cost;
    end loop;
    -- Budget left: the turns next to the kept ones (a reply, the question it answers).
    if used < token_budget and sessions <> '{}' then
        for turn in
            select x.session, x.seq + d.delta as seq, m.role::text as role, m.name, m.ts, m.content
                 , (sessions -> x.session ->> 'start')::timestamptz as start
              from pg_catalog.jsonb_array_elements(kept) with ordinality as k (item, o)
              cross join lateral (select k.item ->> 'session' as session, (k.item ->> 'seq')::integer as seq) as x
              cross join (values (-1), (1)) as d (delta)
              join memex.messages as m
                on m.tenant_id = tenant and m.conversation_id = (sessions -> x.session ->> 'id')::uuid
               and m.seq = x.seq + d.delta
             where x.seq > summary_line  -- a turn: not a header (null seq) nor a summary line
             order by k.o, d.delta
        loop
            continue when exists (
                select from pg_catalog.jsonb_array_elements(kept) as k (item)
                 where k.item ->> 'session' = turn.session and (k.item ->> 'seq')::integer = turn.seq);
            part := memex._turn_line(turn.seq, turn.ts, coalesce(turn.name, turn.role), memex._cut(turn.content, 1000), turn.start);
            cost := memex.count_tokens(part || E'\n', compose_context.space);
            continue when used + cost > token_budget;
            used := used + cost;
            kept := kept || pg_catalog.jsonb_build_object('slot', (sessions -> turn.session ->> 'slot')::integer
                , 'session', turn.session, 'seq', turn.seq, 'text', part);
        end loop;
    end if;
    -- Budget left: the covering summary line of each session that has none yet, under its
    -- header (sessions in the order their hits earned), when it fits.
    for turn in
        select x.key as session, x.value ->> 'summary' as summary
          from pg_catalog.jsonb_each(sessions) as x
         where x.value ->> 'summary' is not null
           and not (x.value ->> 'summary_id')::uuid = any(shown)
         order by (x.value ->> 'slot')::integer
    loop
        part := 'summary: ' || memex._cut(turn.summary, 200);
        cost := memex.count_tokens(part || E'\n', compose_context.space);
        continue when used + cost > token_budget;
        used := used + cost;
        kept := kept || pg_catalog.jsonb_build_object('slot', (sessions -> turn.session ->> 'slot')::integer
            , 'session', turn.session, 'seq', summary_line, 'text', part);
    end loop;
    if found_any and slot = 0 then
        raise notice 'compose_context: no passage fits in % tokens', token_budget
            using hint = 'raise token_budget (the smallest passage found needs more)';
    end if;
    -- The blocks in the order their hits earned, sessions in time order in the places sessions
    -- earned; each block's header numbered, a session's turns in order, blocks apart by a blank
    -- line. Counted whole at the end: a tokenizer that merges across the joins may count the
    -- whole differently from its parts, then the last parts kept go until it fits.
    loop
        with items as (
            select (k.item ->> 'slot')::integer as slot, k.item ->> 'session' as session
                 , (k.item ->> 'seq')::integer as seq, k.item ->> 'text' as text
              from pg_catalog.jsonb_array_elements(kept) as k (item)
        ),
        blocks as (
            select distinct i.slot, i.session from items as i
        ),
        session_places as (
            select b.slot, pg_catalog.row_number() over (order by b.slot) as r from blocks as b where b.session is not null
        ),
        session_times as (
            select b.slot, pg_catalog.row_number() over (
                       order by (sessions -> b.session ->> 'at')::timestamptz nulls last, b.slot) as r
              from blocks as b where b.session is not null
        ),
        placed as (
            select b.slot, pg_catalog.row_number() over (order by coalesce(p.slot, b.slot)) as n
              from blocks as b
              left join session_times as t on t.slot = b.slot
              left join session_places as p on p.r = t.r
        ),
        rendered as (
            select x.n, pg_catalog.string_agg(case when i.seq is null then '[' || x.n || '] ' || i.text else i.text end
                                              , E'\n' order by i.seq nulls first) as text
              from items as i join placed as x on x.slot = i.slot
             group by x.n
        )
        select pg_catalog.string_agg(r.text, E'\n\n' order by r.n) into out_text from rendered as r;
        exit when out_text is null or memex.count_tokens(out_text, compose_context.space) <= token_budget;
        kept := kept - (pg_catalog.jsonb_array_length(kept) - 1);
    end loop;
    return coalesce(out_text, '');
end
$$;

comment on function memex.compose_context(text, integer, integer, text, jsonb, text) is
'The best rag_search passages as a prompt-ready block with numbered citations (documents and summaries by source, messages by conversation in time order, with time and speaker), within a token budget.';
