-- Steps of a search (memex._search, sql/160): the check of a caller's reranker, maximal
-- marginal relevance over candidates given as data, and the check of every argument.

-- memex._check_reranker(fn): the reranker's signature must be (text, jsonb) returns
-- table(uuid, double precision): 42804 otherwise.
create or replace function memex._check_reranker(fn regprocedure)
returns void
language plpgsql
stable
parallel safe
security invoker
set search_path = pg_catalog, pg_temp
as $$
begin
    if not exists (
        select from pg_catalog.pg_proc as p
         where p.oid = fn and p.prokind = 'f' and p.proretset
           and p.pronargs = 2 and p.proargtypes[0] = 'text'::regtype and p.proargtypes[1] = 'jsonb'::regtype
           and array(
               select x.t from unnest(p.proallargtypes, p.proargmodes) with ordinality as x (t, m, o)
                where x.m = 't' order by x.o
           ) = array['uuid'::regtype, 'double precision'::regtype]::oid[]
    ) then
        raise exception 'reranker % has the wrong signature', fn
            using errcode = '42804'
            , hint = 'a reranker is (query text, candidates jsonb) returns table(chunk_id uuid, score double precision)';
    end if;
end
$$;

comment on function memex._check_reranker(regprocedure) is
'Internal: checks a rag_search reranker''s signature (42804 when it is not (text, jsonb) returns table(uuid, double precision)).';

-- memex._mmr(ids, scores, docs, space_id, want, diversity): maximal marginal relevance over
-- candidates given as data, best first: repeatedly take the candidate with the best
-- (1 - diversity) * relevance - diversity * redundancy, where relevance is the score scaled to
-- [0, 1] and redundancy its highest cosine similarity to a candidate already taken, or 1 when
-- one of its document's chunks was already taken (diversity counts documents). Returns the
-- order (positions into ids). k x candidates vector comparisons: rag_search caps k at 100.
create or replace function memex._mmr(
    ids uuid[], scores double precision[], docs uuid[], space_id integer, want integer
    , diversity double precision
)
returns table (pos integer)
language plpgsql
stable
parallel unsafe
security invoker
set search_path = pg_catalog, pg_temp
as $$
declare
    n integer := coalesce(pg_catalog.cardinality(ids), 0);
    tenant uuid := memex.current_tenant();
    found_ids uuid[];
    found_vectors __vector_schema__.vector[];
    vectors __vector_schema__.vector[];
    relevance double precision[];
    redundancy double precision[];
    taken boolean[];
    lo double precision;
    hi double precision;
    best integer;
    best_value double precision;
    value double precision;
    steps integer;
begin
    if n = 0 or want is null or want < 1 then
        return;
    end if;
    if n > 4000 or want > 1000 then
        raise exception 'diversity works on at most 4000 candidates and k <= 1000' using errcode = '54000';
    end if;
    -- the candidates' vectors, then put in the candidates' order (null where one has none): two
    -- steps, so the table is read by a plain key lookup (Citus crashed on an unnest joined to
    -- it, docs/scale.md)
    select pg_catalog.array_agg(e.chunk_id), pg_catalog.array_agg(e.embedding) into found_ids, found_vectors
      from memex.embeddings as e
     where e.space_id = _mmr.space_id and e.tenant_id = tenant and e.chunk_id = any(_mmr.ids);
    select pg_catalog.array_agg(f.v order by x.o) into vectors
      from pg_catalog.unnest(ids) with ordinality as x (id, o)
      left join unnest(found_ids, found_vectors) as f (id, v) on f.id = x.id;  -- FROM-clause form: cannot be qualified
    select min(s), max(s) into lo, hi from pg_catalog.unnest(scores) as s;
    relevance := array(
        select case when hi > lo then (x.s - lo) / (hi - lo) else 1 end
          from pg_catalog.unnest(scores) with ordinality as x (s, o) order by x.o
    );
    redundancy := array_fill(0::double precision, array[n]);
    taken := array_fill(false, array[n]);
    steps := least(want, n);
    for step in 1..steps loop
        best := null;
        for i in 1..n loop
            continue when taken[i];
            value := (1 - diversity) * relevance[i] - diversity * redundancy[i];
            if best is null or value > best_value then
                best := i;
                best_value := value;
            end if;
        end loop;
        taken[best] := true;
        pos := best;
        return next;
        exit when step = steps;
        -- what the newly taken candidate adds to everyone's redundancy (O(n) per step)
        for i in 1..n loop
            continue when taken[i];
            if docs[i] is not null and docs[i] = docs[best] then
                redundancy[i] := 1;
            elsif vectors[i] is not null and vectors[best] is not null then
                redundancy[i] := greatest(redundancy[i], 1 - __vector_schema__.cosine_distance(vectors[i], vectors[best]));
            end if;
        end loop;
    end loop;
end
$$;

comment on function memex._mmr(uuid[], double precision[], uuid[], integer, integer, double precision) is
'Internal: maximal-marginal-relevance order of search candidates given as data (rag_search diversity).';

-- memex._check_search_args(...): rag_search's arguments, each checked before any work (docs/
-- search.md, "Limits and bad input"): 22023 (54000 for an over-long query, 42804 for a
-- reranker of the wrong signature) naming the argument and the values it may take.
create or replace function memex._check_search_args(
    query text, has_embedding boolean, k integer, mode text, rrf_k integer, fusion text
    , vector_weight double precision, text_weight double precision, diversity double precision
    , max_per_document integer, rerank regprocedure, rerank_depth integer, bm25_k1 double precision
    , bm25_b double precision, conversation_weight double precision, recency interval
)
returns void
language plpgsql
stable
parallel safe
security invoker
set search_path = pg_catalog, pg_temp
as $$
begin
    -- While `memex citus distribute --online` runs (its table of saved keys exists), some
    -- tenant tables are distributed and others not yet, and Citus 13.2's planner crashes the
    -- coordinator's backend on memex's searches there (docs/scale.md): they wait instead.
    if pg_catalog.to_regclass('memex.citus_saved_foreign_keys') is not null then
        raise exception 'memex is being distributed across the Citus cluster: searches wait until it is done'
            using errcode = '55000'
            , hint = 'retry when memex citus distribute --online has finished; writes go on meanwhile';
    end if;
    if mode is null or mode not in ('hybrid', 'vector', 'text') then
        raise exception 'unknown search mode %', coalesce(pg_catalog.quote_literal(mode), 'null')
            using errcode = '22023', hint = 'hybrid, vector or text';
    end if;
    if not has_embedding and (query is null or pg_catalog.btrim(query) = '') then
        raise exception 'the search query is empty' using errcode = '22023';
    end if;
    if pg_catalog.length(query) > 32768 then
        raise exception 'the search query has % characters; the limit is 32768', pg_catalog.length(query)
            using errcode = '54000', hint = 'search with the passage''s key sentences, or embed it and pass the vector';
    end if;
    if has_embedding and mode <> 'vector' then
        raise exception 'a query embedding can only be searched in mode vector' using errcode = '22023';
    end if;
    if k is null or k < 1 or k > 1000 then
        raise exception 'k must be between 1 and 1000, not %', coalesce(k::text, 'null')
            using errcode = '22023', hint = 'rag_search retrieves; to export a tenant''s chunks, read memex.chunks';
    end if;
    if rrf_k is null or rrf_k < 1 then
        raise exception 'rrf_k must be at least 1' using errcode = '22023';
    end if;
    if fusion is null or fusion not in ('convex', 'rrf') then
        raise exception 'unknown fusion %', coalesce(pg_catalog.quote_literal(fusion), 'null')
            using errcode = '22023', hint = 'convex (normalised scores, weighted) or rrf (reciprocal ranks)';
    end if;
    if vector_weight is null or text_weight is null or vector_weight < 0
       or text_weight < 0 or vector_weight + text_weight = 0 then
        raise exception 'vector_weight and text_weight must be >= 0 and not both 0' using errcode = '22023';
    end if;
    if diversity is not null and (diversity < 0 or diversity > 1) then
        raise exception 'diversity must be between 0 and 1, not %', diversity using errcode = '22023';
    end if;
    if diversity is not null and k > 100 then
        raise exception 'diversity works on k <= 100, not %', k using errcode = '22023';
    end if;
    if max_per_document is not null and max_per_document < 1 then
        raise exception 'max_per_document must be at least 1, not %', max_per_document using errcode = '22023';
    end if;
    if rerank_depth is null or rerank_depth < 1 or rerank_depth > 1000 then
        raise exception 'rerank_depth must be between 1 and 1000, not %', coalesce(rerank_depth::text, 'null')
            using errcode = '22023';
    end if;
    if bm25_k1 is not null and (bm25_k1 < 0 or bm25_k1 > 10 or bm25_k1 = 'NaN') then
        raise exception 'bm25_k1 must be between 0 and 10, not %', bm25_k1 using errcode = '22023';
    end if;
    if bm25_b is not null and (bm25_b < 0 or bm25_b > 1 or bm25_b = 'NaN') then
        raise exception 'bm25_b must be between 0 and 1, not %', bm25_b using errcode = '22023';
    end if;
    if conversation_weight is null or conversation_weight < 0 or conversation_weight > 10
       or conversation_weight = 'NaN' then
        raise exception 'conversation_weight must be between 0 and 10, not %', coalesce(conversation_weight::text, 'null')
            using errcode = '22023', hint = '0 ranks messages alone, 1 (the default) as measured in docs/search.md';
    end if;
    if recency is not null and (recency <= interval '0' or recency > interval '100 years') then
        raise exception 'recency (a half-life) must be more than 0 and at most 100 years, not %', recency
            using errcode = '22023', hint = 'e.g. recency => ''30 days'': a memory 30 days old counts half';
    end if;
    if rerank is not null then
        perform memex._check_reranker(rerank);
    end if;
end
$$;

comment on function memex._check_search_args(
    text, boolean, integer, text, integer, text, double precision, double precision, double precision
    , integer, regprocedure, integer, double precision, double precision, double precision, interval
) is 'Internal: checks rag_search''s arguments (22023 naming the argument; 54000 for an over-long query).';

-- memex._names_pattern(names): the regular expression of any of these names as whole words
-- (longest first), a possessive 's with them: what memex._mentions looks for and
-- memex._content_query takes out. Not inside a word on either side (\m and \M would refuse a
-- name that opens or ends with a sign, "J.R. (Bob)"); the names' own signs are literal.
create or replace function memex._names_pattern(names text[])
returns text
language sql
immutable
parallel safe
security invoker
set search_path = pg_catalog, pg_temp
as $$
    select '(?<![[:alnum:]_])(' || pg_catalog.string_agg(
               pg_catalog.regexp_replace(n, '([!$()*+.:<=>?\[\\\]^{|}-])', '\\\1', 'g'), '|'
               order by pg_catalog.length(n) desc
           ) || ')(''s)?(?![[:alnum:]_])'
      from pg_catalog.unnest(names) as n
$$;

comment on function memex._names_pattern(text[]) is
'Internal: a regular expression matching any of the names as whole words (longest first), with a possessive.';

-- memex._mentions(query, name): whether a query names a speaker (the whole name, as words, any
-- case): "When did Caroline go ..." names Caroline, not Carol.
create or replace function memex._mentions(query text, name text)
returns boolean
language sql
immutable
parallel safe
security invoker
set search_path = pg_catalog, pg_temp
as $$
    select query is not null and name is not null and query ~* memex._names_pattern(array[name])
$$;

comment on function memex._mentions(text, text) is
'Internal: whether a search query names a speaker (the whole name, as words, case-insensitive).';

-- memex._content_query(tenant, query): the query without the names of the tenant's speakers
-- that it mentions (whole words, a possessive 's with them), or the query itself when it names
-- none or nothing but names. A name in a query says whose turns to prefer, which the speaker
-- signal does; left in the words searched, it matches the turns that mention the name, most
-- often said by the other speaker to that person (docs/memory.md). A name the query holds
-- starts with one of its words: for each word (at most 32), the distinct lower-case names
-- whose first word it is are read one index probe each (a loose scan that jumps over the
-- names going on with longer words), and each is checked whole as memex._mentions does. The
-- cost follows the query's words and the names that share a first word with them, not the
-- tenant's messages or speakers.
create or replace function memex._content_query(tenant uuid, query text)
returns text
language plpgsql
stable
parallel safe
security invoker
set search_path = pg_catalog, pg_temp
as $$
declare
    word text;
    low text;
    name text;
    names text[] := '{}';
    stripped text;
begin
    for word in
        select distinct w.word
          from pg_catalog.regexp_split_to_table(pg_catalog.lower(_content_query.query), '[^[:alnum:]]+') as w (word)
         where w.word <> ''
         limit 32
    loop
        low := null;
        loop
            select pg_catalog.lower(m.name), m.name into low, name
              from memex.messages as m
             where m.tenant_id = _content_query.tenant and m.name is not null
               and pg_catalog.lower(m.name) operator(pg_catalog.~>=~) word
               and pg_catalog.lower(m.name) operator(pg_catalog.~<~) (word || pg_catalog.chr(1114111))
               and (low is null or pg_catalog.lower(m.name) operator(pg_catalog.~>~) low)
             order by pg_catalog.lower(m.name) using operator(pg_catalog.~<~)
             limit 1;
            exit when not found;
            if pg_catalog.substr(low, pg_catalog.length(word) + 1, 1) ~ '[[:alnum:]]' then
                -- a longer first word ("alice" for "a"): skip every name that goes on with it
                low := pg_catalog.substr(low, 1, pg_catalog.length(word) + 1) || pg_catalog.chr(1114111);
                continue;
            end if;
            if pg_catalog.strpos(pg_catalog.lower(_content_query.query), low) > 0
               and memex._mentions(_content_query.query, name) then
                names := names || name;
            end if;
        end loop;
    end loop;
    if pg_catalog.cardinality(names) = 0 then
        return _content_query.query;
    end if;
    stripped := pg_catalog.btrim(pg_catalog.regexp_replace(pg_catalog.regexp_replace(
        _content_query.query, memex._names_pattern(names), ' ', 'gi'), '\s+', ' ', 'g'));
    return case when stripped ~ '[[:alnum:]]' then stripped else _content_query.query end;
end
$$;

comment on function memex._content_query(uuid, text) is
'Internal: a search query without the names of the tenant''s speakers it mentions (what is searched for, not who said it).';

-- memex._decayed(score, at, half_life): a score decayed by its memory's age (recency): halved
-- every half_life, lowered the same way when negative (a vector score by inner product); as it
-- is when either is null or the memory is dated in the future.
create or replace function memex._decayed(score double precision, at timestamptz, half_life interval)
returns double precision
language sql
stable
parallel safe
security invoker
set search_path = pg_catalog, pg_temp
as $$
    -- the exponent is capped: 0.5^1000 is already nothing, and power() would underflow past it
    select case when half_life is null or at is null or at >= pg_catalog.now() then score
                else score * pg_catalog.power(0.5::double precision
                    , case when score >= 0 then 1 else -1 end
                      * least(extract(epoch from pg_catalog.now() - at) / extract(epoch from half_life), 1000))
           end
$$;

comment on function memex._decayed(double precision, timestamptz, interval) is
'Internal: a search score decayed by the age of its memory (halved every half-life).';
