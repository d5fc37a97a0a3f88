-- Steps of a search (memex._search, sql/160): the check of a caller's reranker, and maximal
-- marginal relevance over candidates given as data.

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
    select pg_catalog.array_agg(e.embedding order by x.o) into vectors
      from pg_catalog.unnest(ids) with ordinality as x (id, o)
      left join memex.embeddings as e
        on e.space_id = _mmr.space_id and e.tenant_id = memex.current_tenant() and e.chunk_id = x.id;
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
