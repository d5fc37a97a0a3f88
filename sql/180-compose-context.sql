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

-- memex.compose_context(query, token_budget, ...): the best passages of rag_search as one block
-- per source, in the order of each source's best hit, under a numbered citation line
-- ([n] kind: title, uri or slug; a message adds its number, speaker and time). A source's chunks are in document order: neighbours
-- (consecutive ords) are joined with their overlap written once, and a gap between them is
-- shown as [...]. A first chunk that opens with the source's title (memex puts it there) does
-- not repeat it under the citation. Blocks are added while the whole stays within token_budget
-- (tokens of the space's model); a block that does not fit is left out and smaller ones after
-- it may still go in; a NOTICE says when none fits.
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
    block record;
    piece record;
    body text;
    cite text;
    part text;
    prev_ord integer;
    used integer := 0;
    cost integer;
    n integer := 0;
    found_any boolean := false;
    out_text text := '';
begin
    if token_budget is null or token_budget < 1 then
        raise exception 'token_budget must be at least 1, not %', coalesce(token_budget::text, 'null')
            using errcode = '22023';
    end if;
    for block in
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
              from pg_catalog.jsonb_array_elements(block.pieces) as x (p)
        loop
            part := piece.content;
            if piece.ord = 0 and block.metadata ? 'title'
               and pg_catalog.starts_with(part, (block.metadata ->> 'title') || E'\n') then
                part := pg_catalog.ltrim(pg_catalog.substr(part, pg_catalog.length(block.metadata ->> 'title') + 2), E'\n');
            end if;
            body := case when prev_ord is null then part
                         when piece.ord = prev_ord + 1 then memex._join_chunks(body, part)
                         else body || E'\n[...]\n' || part end;
            prev_ord := piece.ord;
        end loop;
        cite := pg_catalog.format('[%s] %s: %s', n + 1, block.source_kind
            , concat_ws(', '
                , block.metadata ->> 'title'
                , coalesce(block.metadata ->> 'uri', block.metadata ->> 'conversation')
                , case when block.metadata ? 'level' then 'L' || (block.metadata ->> 'level') end
                , case when block.metadata ? 'seq' then 'message ' || (block.metadata ->> 'seq') end
                -- who said it, and when: the message's time, else its conversation's date
                , block.metadata ->> 'role'
                , coalesce(pg_catalog.to_char((block.metadata ->> 'ts')::timestamptz, 'YYYY-MM-DD HH24:MI TZ')
                           , block.metadata ->> 'date')));
        part := cite || E'\n' || body || E'\n\n';
        cost := memex.count_tokens(part, compose_context.space);
        continue when used + cost > token_budget;
        n := n + 1;
        used := used + cost;
        out_text := out_text || part;
    end loop;
    if found_any and n = 0 then
        raise notice 'compose_context: no passage fits in % tokens', token_budget
            using hint = 'raise token_budget (the smallest passage found needs more)';
    end if;
    return pg_catalog.rtrim(out_text, E'\n');
end
$$;

comment on function memex.compose_context(text, integer, integer, text, jsonb, text) is
'The best rag_search passages as a prompt-ready block with numbered citations, one block per source, within a token budget.';
