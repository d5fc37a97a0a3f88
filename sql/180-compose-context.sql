-- memex.compose_context: search results packed into a prompt-ready block with numbered citations.

-- memex.count_tokens(input, space): tokens of a text for the space's model (as chunk_text counts).
create or replace function memex.count_tokens(input text, space text default null)
returns integer
language plpython3u
stable
parallel unsafe
security invoker
set search_path = pg_catalog, pg_temp
as $py$
if "memex_db" not in GD:
    plpy.execute("select memex._python_init()")
return GD["memex_db"].entry.call(plpy, GD, "@memex_version@", "count_tokens", input, space)
$py$;

comment on function memex.count_tokens(text, text) is
'Tokens of a text for the space''s model (null: the active text space), special tokens excluded.';

-- memex.compose_context(query, token_budget, ...): the best passages of rag_search, one block
-- per source in rank order, with a numbered citation line ([n] kind: title (uri or slug));
-- chunks of one source that are neighbours (consecutive ords) are merged into one block.
-- Blocks are added while the whole stays within token_budget (tokens of the space's model); a
-- block that does not fit is left out and smaller ones after it may still go in.
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
    body text;
    cite text;
    piece text;
    used integer := 0;
    cost integer;
    n integer := 0;
    out_text text := '';
begin
    if token_budget is null or token_budget < 1 then
        raise exception 'token_budget must be at least 1, not %', token_budget using errcode = '22023';
    end if;
    for block in
        with hits as (
            select r.*, pg_catalog.row_number() over () as hit_rank
              from memex.rag_search(compose_context.query, compose_context.k, compose_context.mode
                                    , compose_context.filters, compose_context.space) as r
        ),
        numbered as (
            select h.*, (h.metadata ->> 'ord')::integer as ord
                 , (h.metadata ->> 'ord')::integer
                   - pg_catalog.row_number() over (partition by h.source_kind, h.source_id order by (h.metadata ->> 'ord')::integer)::integer
                   as run
              from hits as h
        )
        select x.source_kind, min(x.hit_rank) as best
             , pg_catalog.string_agg(x.content, E'\n' order by x.ord) as content
             , (pg_catalog.array_agg(x.metadata order by x.ord))[1] as metadata
          from numbered as x
         group by x.source_kind, x.source_id, x.run
         order by best
    loop
        cite := pg_catalog.format('[%s] %s: %s', n + 1, block.source_kind
            , concat_ws(', '
                , block.metadata ->> 'title'
                , coalesce(block.metadata ->> 'uri', block.metadata ->> 'conversation')
                , case when block.metadata ? 'level' then 'L' || (block.metadata ->> 'level') end
                , case when block.metadata ? 'seq' then 'message ' || (block.metadata ->> 'seq') end));
        piece := cite || E'\n' || block.content || E'\n\n';
        cost := memex.count_tokens(piece, compose_context.space);
        continue when used + cost > token_budget;
        n := n + 1;
        used := used + cost;
        out_text := out_text || piece;
    end loop;
    return pg_catalog.rtrim(out_text, E'\n');
end
$$;

comment on function memex.compose_context(text, integer, integer, text, jsonb, text) is
'The best rag_search passages as a prompt-ready block with numbered citations, within a token budget.';
