-- Search: memex._search, the one implementation behind both rag_search overloads (at the end).
-- SECURITY INVOKER: RLS applies, and every statement also filters on the current tenant. With
-- no tenant set the result is empty, with a NOTICE saying why (nothing leaks, no model call).
--
-- The steps, each over a few hundred candidates at most (docs/search.md, "How a search runs"):
--   1. vector leg: the space's own partial HNSW index (the statement is built per space, with
--      its id and dimensions as literals, so the planner matches the index; every user value
--      travels as a parameter);
--   2. text leg: BM25 over the tenant's text index (memex._text_candidates, sql/147), which
--      also scores the vector leg's candidates, so fusion sees both scores of every candidate;
--   3. fusion (a convex combination of the similarity and the BM25 score scaled by the best
--      one, or reciprocal rank fusion), min_similarity, the per-document cap, the cut to the
--      pool;
--   4. the caller's reranker on the pool (rerank => ...), then diversity (MMR); these steps'
--      helpers are in sql/158-search-steps.sql;
--   5. metadata joins for the final k rows only.

-- memex._search(...): the implementation of both rag_search overloads.
create or replace function memex._search(
    query text, query_embedding __vector_schema__.vector, k integer, mode text, filters jsonb, space text
    , min_similarity double precision, rrf_k integer, vector_weight double precision
    , text_weight double precision, diversity double precision, fusion text, max_per_document integer
    , rerank regprocedure, rerank_depth integer, bm25_k1 double precision, bm25_b double precision
    , conversation_weight double precision, recency interval
)
returns setof memex.search_result
language plpgsql
stable
parallel unsafe
security invoker
set search_path = pg_catalog, pg_temp
-- pgvector >= 0.8: keep scanning the HNSW graph until the filters (and RLS) leave enough rows.
set "hnsw.iterative_scan" = 'relaxed_order'
as $$
declare
    tenant uuid := memex.current_tenant();
    sp memex.spaces;
    vs constant text := $vs$__vector_schema__$vs$;  -- pgvector's schema, quoted, rendered at install
    where_filters text;
    want integer := _search.k;
    pool integer;
    vector_depth integer;
    text_depth integer;
    per_document boolean := _search.max_per_document is not null or _search.diversity is not null;
    -- the conversation signals and recency read each candidate's message, conversation, document
    with_signals boolean := _search.conversation_weight > 0 or _search.recency is not null;
    query_vector __vector_schema__.vector := _search.query_embedding;
    -- the words searched by both legs: without the speakers the query names, which the speaker
    -- signal weighs instead (memex._content_query)
    content_query text := case when _search.conversation_weight > 0 and _search.query is not null
                               then memex._content_query(tenant, _search.query) else _search.query end;
    vector_ids uuid[];
    vector_distances double precision[];
    vector_docs bigint[];
    text_only_ids uuid[];
    text_only_distances double precision[];
    distance_op text;
    text_ids uuid[];
    text_scores double precision[];
    text_ranks integer[];
    pool_ids uuid[];
    pool_scores double precision[];
    pool_similarities double precision[];
    pool_vector_ranks integer[];
    pool_text_ranks integer[];
    pool_sources uuid[];
    summary_ids uuid[];
    summary_scores double precision[];
    -- what the fusion statement reads of its candidates and of the matching summaries, read
    -- before it by tenant: with no table in it, Citus leaves it to PostgreSQL (a distributed
    -- table outer-joined to the unnested candidates crashed its planner where RLS applies)
    cand_ids uuid[];
    cand_kinds text[];
    cand_conversations uuid[];
    cand_documents uuid[];
    cand_messages uuid[];
    cand_created timestamptz[];
    cand_seqs integer[];
    cand_metadata jsonb[];
    cand_names text[];
    summary_rows uuid[];
    summary_conversations uuid[];
    summary_covers jsonb[];
    reranker_input jsonb;
    unembedded integer;
begin
    -- Every argument is checked before any work (docs/search.md, "Limits and bad input").
    perform memex._check_search_args(
        query => _search.query, has_embedding => query_vector is not null, k => _search.k, mode => _search.mode
        , rrf_k => _search.rrf_k, fusion => _search.fusion, vector_weight => _search.vector_weight
        , text_weight => _search.text_weight, diversity => _search.diversity
        , max_per_document => _search.max_per_document, rerank => _search.rerank
        , rerank_depth => _search.rerank_depth, bm25_k1 => _search.bm25_k1, bm25_b => _search.bm25_b
        , conversation_weight => _search.conversation_weight, recency => _search.recency
    );
    where_filters := memex._search_filters(_search.filters);
    select s.* into strict sp from memex.spaces as s where s.id = memex._space_id(_search.space);
    if query_vector is not null and __vector_schema__.vector_dims(query_vector) <> sp.dimensions then
        raise exception 'the query embedding has % dimensions, space % has %'
            , __vector_schema__.vector_dims(query_vector), sp.name, sp.dimensions
            using errcode = '22000', hint = 'embed the query with memex.embed(text, space)';
    end if;
    if tenant is null then
        raise notice 'no tenant is set: the search returns no rows'
            using hint = 'in psql (autocommit) call memex.set_tenant(''name'', false) first; in a transaction, '
                || 'memex.set_tenant(''name'') inside it';
        return;
    end if;

    -- Candidate depths. The pool is what survives fusion: k, or more for a reranker, for
    -- diversity and for the per-document cap to choose from. Vector candidates are fetched
    -- deeper than the pool and re-sorted by exact distance: a relaxed-order HNSW scan can
    -- return a true top row a few places late (pgvector's advice).
    pool := case when _search.rerank is not null then greatest(_search.rerank_depth, want)
                 when per_document then greatest(want * 4, 40)
                 else want end;
    vector_depth := greatest(pool * 2, 40);
    text_depth := case when _search.mode = 'text' then pool else vector_depth end;
    -- Text mode never calls the model (similarity is null) unless min_similarity needs it.
    if query_vector is null and (_search.mode <> 'text' or _search.min_similarity is not null) then
        query_vector := memex.embed(content_query, sp.name);
    end if;
    distance_op := pg_catalog.format('operator(%s.%s)', vs
        , case sp.distance when 'cosine' then '<=>' when 'l2' then '<->' else '<#>' end);

    if _search.mode <> 'text' then
        execute pg_catalog.format($sql$
            select pg_catalog.array_agg(q.chunk_id order by q.d, q.chunk_id), pg_catalog.array_agg(q.d order by q.d, q.chunk_id)
                 , pg_catalog.array_agg(q.text_doc order by q.d, q.chunk_id)
              from (
                  select e.chunk_id, (e.embedding::%1$s.vector(%2$s) %3$s $1::%1$s.vector(%2$s)) as d, c.text_doc
                    from memex.embeddings as e
                    join memex.chunks as c on c.tenant_id = e.tenant_id and c.id = e.chunk_id
                   where e.space_id = %4$s and e.tenant_id = $2 %5$s
                   order by e.embedding::%1$s.vector(%2$s) %3$s $1::%1$s.vector(%2$s)
                   limit $4
              ) as q
            $sql$
            , vs, sp.dimensions, distance_op, sp.id, where_filters)
        into vector_ids, vector_distances, vector_docs
        using query_vector, tenant, coalesce(_search.filters, '{}'), vector_depth;
        if _search.mode = 'vector' then
            vector_ids := vector_ids[1:vector_depth / 2];  -- the re-sorted best half: the pool, or 40
            vector_distances := vector_distances[1:vector_depth / 2];
        end if;
    end if;
    if _search.mode <> 'vector' then
        -- In convex fusion the text leg also scores the vector leg's candidates (by their text
        -- versions: no chunk row is read for them).
        select
            pg_catalog.array_agg(t.chunk_id order by t.o), pg_catalog.array_agg(t.score order by t.o)
            , pg_catalog.array_agg(t.rank order by t.o)
          into text_ids, text_scores, text_ranks
          from memex._text_candidates(
              tenant => tenant, query => content_query, filters => coalesce(_search.filters, '{}')
              , where_filters => where_filters, n => text_depth, k1 => _search.bm25_k1, b => _search.bm25_b
              , vector_ids => case when _search.mode = 'hybrid' and _search.fusion = 'convex' then vector_ids end
              , vector_docs => case when _search.mode = 'hybrid' and _search.fusion = 'convex' then vector_docs end
          ) with ordinality as t (chunk_id, score, rank, o);
        -- The distances of text candidates the vector leg did not bring (no index needed: a
        -- static statement, planned once per session).
        if query_vector is not null and text_ids is not null then
            select
                pg_catalog.array_agg(e.chunk_id)
                , pg_catalog.array_agg(case sp.distance
                    when 'cosine' then e.embedding operator(__vector_schema__.<=>) query_vector
                    when 'l2' then e.embedding operator(__vector_schema__.<->) query_vector
                    else e.embedding operator(__vector_schema__.<#>) query_vector end)
              into text_only_ids, text_only_distances
              from memex.embeddings as e
             where e.space_id = sp.id and e.tenant_id = tenant and e.chunk_id = any(text_ids)
               and e.chunk_id <> all(coalesce(vector_ids, '{}'));
        end if;
    end if;

    -- Summaries lead to their messages (docs/search.md, "Conversations: speakers, signals,
    -- recency"): when the tenant has summaries, the five that match the query's words best
    -- (BM25 over the words both legs search, without speakers' names, which every summary of
    -- a conversation writes; the same filters, summaries only) lift the messages they cover, whatever the
    -- mode. Not by vector: an HNSW scan filtered down to the few summary chunks cost about
    -- four times as much for no better recall (docs/memory.md), and it would say the
    -- caller's pending chunks cannot be found when only summaries are few.
    if _search.conversation_weight > 0 and _search.query is not null
       and exists (select 1 from memex.summaries as u where u.tenant_id = tenant) then
        select pg_catalog.array_agg(r.source_id order by r.o), pg_catalog.array_agg(r.score order by r.o)
          into summary_ids, summary_scores
          from memex._search(
              query => content_query, query_embedding => null, k => 5, mode => 'text'
              , filters => coalesce(_search.filters, '{}') || '{"source_kind": ["summary"]}', space => _search.space
              , min_similarity => null, rrf_k => _search.rrf_k, vector_weight => _search.vector_weight
              , text_weight => _search.text_weight, diversity => null, fusion => _search.fusion
              , max_per_document => null, rerank => null, rerank_depth => 50, bm25_k1 => _search.bm25_k1
              , bm25_b => _search.bm25_b, conversation_weight => 0, recency => null
          ) with ordinality as r (chunk_id, source_kind, source_id, content, score, similarity, vector_rank, text_rank, metadata, o);
        select pg_catalog.array_agg(u.id), pg_catalog.array_agg(u.conversation_id), pg_catalog.array_agg(u.covers)
          into summary_rows, summary_conversations, summary_covers
          from memex.summaries as u
         where u.tenant_id = tenant and u.id = any(summary_ids);
    end if;
    if with_signals or per_document then
        select
            pg_catalog.array_agg(c.id), pg_catalog.array_agg(c.source_kind), pg_catalog.array_agg(c.conversation_id)
            , pg_catalog.array_agg(c.document_id), pg_catalog.array_agg(c.message_id), pg_catalog.array_agg(c.created_at)
            , pg_catalog.array_agg(m.seq), pg_catalog.array_agg(m.metadata), pg_catalog.array_agg(m.name)
          into cand_ids, cand_kinds, cand_conversations, cand_documents, cand_messages, cand_created
             , cand_seqs, cand_metadata, cand_names
          from memex.chunks as c
          left join memex.messages as m on m.tenant_id = c.tenant_id and m.id = c.message_id
         where c.tenant_id = tenant
           and c.id = any(coalesce(vector_ids, '{}') || coalesce(text_ids, '{}'));
    end if;

    -- Fusion over the union of both legs' candidates, then min_similarity, the per-document
    -- cap, and the cut to the pool.
    with vector_leg as (
        select x.chunk_id, x.d, x.r::integer as rank
          from unnest(vector_ids, vector_distances) with ordinality as x (chunk_id, d, r)
    ),
    text_leg as (
        select x.chunk_id, x.score, x.rank from unnest(text_ids, text_scores, text_ranks) as x (chunk_id, score, rank)
    ),
    text_only as (
        select x.chunk_id, x.d from unnest(text_only_ids, text_only_distances) as x (chunk_id, d)
    ),
    both_legs as (
        select
            coalesce(v.chunk_id, t.chunk_id) as chunk_id, v.rank as vrank, t.rank as trank
            , coalesce(t.score, 0) as bm25
            , case when sp.distance = 'cosine' then 1 - coalesce(v.d, o.d) else -coalesce(v.d, o.d) end as sim
          from vector_leg as v full join text_leg as t on t.chunk_id = v.chunk_id
          left join text_only as o on v.chunk_id is null and o.chunk_id = t.chunk_id
    ),
    with_ranges as (
        select
            l.*, min(l.sim) over () as sim_lo, max(l.sim) over () as sim_hi
            , max(l.bm25) over () as bm25_hi
          from both_legs as l
    ),
    -- convex fusion's two parts: the cosine similarity as it is (its range is known), BM25
    -- over the best BM25 of the candidates; other distances min-max over them
    convex_parts as (
        select
            r.*
            , _search.vector_weight * coalesce(case when sp.distance = 'cosine' then r.sim
                                                    when r.sim_hi > r.sim_lo then (r.sim - r.sim_lo) / (r.sim_hi - r.sim_lo)
                                                    else 1 end, 0) as vector_part
            , _search.text_weight * coalesce(r.bm25 / nullif(r.bm25_hi, 0), 0) as text_part
          from with_ranges as r
         where _search.min_similarity is null or r.sim >= _search.min_similarity
    ),
    fused as (
        select
            r.chunk_id, r.sim, r.vrank, r.trank
            , case _search.mode
                when 'vector' then r.sim
                when 'text' then r.bm25
                else case _search.fusion
                    when 'rrf' then coalesce(_search.vector_weight / (_search.rrf_k + r.vrank), 0)
                        + coalesce(_search.text_weight / (_search.rrf_k + r.trank), 0)
                    else r.vector_part + r.text_part
                end
            end as score
            -- Messages are ordered among themselves (below) with their words at 0.4 of their
            -- weight: a turn's vector holds the turn before it, its BM25 document only its own
            -- words (docs/memory.md, "How a conversation is searched")
            , case when _search.conversation_weight > 0 and _search.mode = 'hybrid' and _search.fusion = 'convex'
                   then r.vector_part + 0.4 * r.text_part end as message_score
          from convex_parts as r
    ),
    -- Conversation signals (docs/search.md, "Conversations: speakers, signals, recency"): a
    -- message's own score (message_key: message_score in hybrid convex fusion, else the fused
    -- score) gains from its conversation: 0.5 of the best score when the query names its
    -- speaker (the name is out of the words searched, memex._content_query: this signal alone
    -- carries it), 0.3 of the best other candidate of its conversation (a session that holds
    -- the answer holds its other parts), 0.2 of the better of its neighbour turns, 0.3 of its
    -- own score times the strength of the best matching summary that covers it, when that
    -- summary's conversation holds one of the ten best messages (a summary the messages do not
    -- agree with floods the first places with its session's turns); all times
    -- conversation_weight.
    -- Then recency decays every score by its memory's age.
    candidates as (
        select
            f.*, c.source_kind = 'message' as is_message, c.conversation_id, c.seq, c.metadata as message_metadata
            , case when _search.conversation_weight > 0 then memex._mentions(_search.query, c.name) end as named
            , case when _search.recency is not null
                   then memex._memory_time(tenant, c.message_id, c.conversation_id, c.document_id, c.created_at) end as at
            , case when per_document then coalesce(c.document_id, c.conversation_id, c.id) end as doc
            , coalesce(f.message_score, f.score) as message_key  -- what the signals add to
            , pg_catalog.max(coalesce(f.message_score, f.score)) over () as best
          from fused as f
          left join unnest(cand_ids, cand_kinds, cand_conversations, cand_documents, cand_messages, cand_created
                           , cand_seqs, cand_metadata, cand_names)
                 as c (id, source_kind, conversation_id, document_id, message_id, created_at, seq, metadata, name)
            on c.id = f.chunk_id
    ),
    turns as (  -- each message candidate once (its best chunk), for the session and neighbour signals
        select x.conversation_id, x.seq, pg_catalog.max(x.message_key) as score
          from candidates as x
         where _search.conversation_weight > 0 and x.is_message
         group by x.conversation_id, x.seq
    ),
    turn_signals as (
        select
            t.conversation_id, t.seq
            , pg_catalog.max(t.score) over (partition by t.conversation_id order by t.seq
                  rows between unbounded preceding and unbounded following exclude current row) as session_best
            , greatest(case when pg_catalog.lag(t.seq) over turn_order = t.seq - 1 then pg_catalog.lag(t.score) over turn_order end
                       , case when pg_catalog.lead(t.seq) over turn_order = t.seq + 1 then pg_catalog.lead(t.score) over turn_order end
              ) as neighbour_best
          from turns as t
        window turn_order as (partition by t.conversation_id order by t.seq)
    ),
    summary_hits as (  -- each matching summary's strength: its score over the best one's
        select u.conversation_id, u.covers
             , greatest(h.score, 0) / nullif(pg_catalog.max(greatest(h.score, 0)) over (), 0) as strength
          from unnest(summary_ids, summary_scores) as h (id, score)
          join unnest(summary_rows, summary_conversations, summary_covers) as u (id, conversation_id, covers) on u.id = h.id
    ),
    leading_conversations as (  -- the conversations of the ten best message candidates
        select x.conversation_id from candidates as x
         where x.is_message and summary_ids is not null
         order by x.message_key desc, x.chunk_id
         limit 10
    ),
    boosted as (
        select
            x.*, x.message_key + coalesce(_search.conversation_weight * (
                0.5 * pg_catalog.abs(x.best) * coalesce(x.named, false)::integer
                + 0.3 * greatest(s.session_best, 0) + 0.2 * greatest(s.neighbour_best, 0)
                + 0.3 * greatest(x.message_key, 0) * coalesce((
                    select pg_catalog.max(h.strength) from summary_hits as h
                     where x.is_message and h.conversation_id = x.conversation_id
                       and h.conversation_id in (select l.conversation_id from leading_conversations as l)
                       and memex._covers(h.covers, x.seq, x.message_metadata)), 0)), 0) as boosted
          from candidates as x
          left join turn_signals as s on x.is_message and s.conversation_id = x.conversation_id and s.seq = x.seq
    ),
    -- The signals reorder the messages among themselves: the n-th message by boosted score
    -- takes the score of the n-th message by fused score, so documents and summaries keep
    -- their places (a long conversation never buries a document that answers better).
    message_places as (
        select b.score, pg_catalog.row_number() over (order by b.score desc, b.chunk_id) as place
          from boosted as b where b.is_message
    ),
    message_order as (
        select b.chunk_id, pg_catalog.row_number() over (order by b.boosted desc, b.chunk_id) as place
          from boosted as b where b.is_message
    ),
    signalled as (
        select
            b.chunk_id, b.sim, b.vrank, b.trank, b.doc
            , memex._decayed(coalesce(p.score, b.score), b.at, _search.recency) as score
          from boosted as b
          left join message_order as o on o.chunk_id = b.chunk_id
          left join message_places as p on p.place = o.place
    ),
    capped as (
        select f.*, pg_catalog.row_number() over (partition by f.doc order by f.score desc, f.chunk_id) as nth
          from signalled as f
    ),
    kept as (
        select c.* from capped as c
         where _search.max_per_document is null or c.nth <= _search.max_per_document
         order by c.score desc, c.chunk_id
         limit pool
    )
    select
        pg_catalog.array_agg(x.chunk_id order by x.score desc, x.chunk_id)
        , pg_catalog.array_agg(x.score order by x.score desc, x.chunk_id)
        , pg_catalog.array_agg(x.sim order by x.score desc, x.chunk_id)
        , pg_catalog.array_agg(x.vrank order by x.score desc, x.chunk_id)
        , pg_catalog.array_agg(x.trank order by x.score desc, x.chunk_id)
        , pg_catalog.array_agg(x.doc order by x.score desc, x.chunk_id)
      into pool_ids, pool_scores, pool_similarities, pool_vector_ranks, pool_text_ranks, pool_sources
      from kept as x;

    if pool_ids is not null and _search.rerank is not null then
        -- The caller's reranker sees the pool (chunk id, content, score, similarity, source) and
        -- returns its own scores; candidates it does not return are dropped.
        select pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(
                   'chunk_id', x.chunk_id, 'content', c.content, 'score', x.score, 'similarity', x.sim
                   , 'source_kind', c.source_kind, 'source_id', c.source_id) order by x.o)
          into reranker_input
          from unnest(pool_ids, pool_scores, pool_similarities) with ordinality as x (chunk_id, score, sim, o)
          join memex.chunks as c on c.tenant_id = tenant and c.id = x.chunk_id;
        execute pg_catalog.format($sql$
            select
                pg_catalog.array_agg(x.chunk_id order by r.score desc nulls last, x.chunk_id)
                , pg_catalog.array_agg(r.score order by r.score desc nulls last, x.chunk_id)
                , pg_catalog.array_agg(x.sim order by r.score desc nulls last, x.chunk_id)
                , pg_catalog.array_agg(x.vrank order by r.score desc nulls last, x.chunk_id)
                , pg_catalog.array_agg(x.trank order by r.score desc nulls last, x.chunk_id)
                , pg_catalog.array_agg(x.doc order by r.score desc nulls last, x.chunk_id)
              from unnest($3, $4, $5, $6, $7) as x (chunk_id, sim, vrank, trank, doc)
              join (select distinct on (y.chunk_id) y.chunk_id, y.score from %s($1, $2) as y (chunk_id, score)
                     order by y.chunk_id, y.score desc) as r on r.chunk_id = x.chunk_id
            $sql$, _search.rerank::regproc)
        into pool_ids, pool_scores, pool_similarities, pool_vector_ranks, pool_text_ranks, pool_sources
        using _search.query, reranker_input, pool_ids, pool_similarities, pool_vector_ranks, pool_text_ranks, pool_sources;
    end if;

    if pool_ids is not null and _search.diversity is not null then
        select
            pg_catalog.array_agg(pool_ids[m.pos] order by m.o), pg_catalog.array_agg(pool_scores[m.pos] order by m.o)
            , pg_catalog.array_agg(pool_similarities[m.pos] order by m.o), pg_catalog.array_agg(pool_vector_ranks[m.pos] order by m.o)
            , pg_catalog.array_agg(pool_text_ranks[m.pos] order by m.o)
          into pool_ids, pool_scores, pool_similarities, pool_vector_ranks, pool_text_ranks
          from memex._mmr(pool_ids, pool_scores, pool_sources, sp.id, want, _search.diversity) with ordinality as m (pos, o);
    end if;

    -- Chunks without a vector yet (pending embedding) are found by the text leg only: say so,
    -- for the final rows (hybrid), or when a vector search comes back short (docs/search.md).
    if _search.mode = 'hybrid' and pool_ids is not null then
        unembedded := (select pg_catalog.count(*) from unnest(pool_similarities[1:want]) as x (sim) where x.sim is null);
        if unembedded > 0 then
            raise notice 'memex.rag_search: % of % results without a vector in space % yet (pending embedding): ranked by their text alone'
                , unembedded, least(pg_catalog.cardinality(pool_ids), want), sp.name
                using hint = 'embed pending chunks: CALL memex.embed_pending() (memex embed), a running memex worker, or SET memex.embed_on_write = on for new writes';
        end if;
    elsif _search.mode = 'vector' and coalesce(pg_catalog.cardinality(pool_ids), 0) < want
          and exists (select 1 from memex._pending_chunks(sp.id, n => 1)) then
        raise notice 'memex.rag_search: this tenant has chunks with no vector in space % yet: a vector search cannot find them', sp.name
            using hint = 'embed pending chunks: CALL memex.embed_pending() (memex embed), a running memex worker, or SET memex.embed_on_write = on for new writes';
    end if;

    -- The final rows, in order, with their sources' details (joined for these k rows only).
    return query
        select
            c.id, c.source_kind, c.source_id, c.content, x.score, x.sim, x.vrank, x.trank
            , pg_catalog.jsonb_strip_nulls(pg_catalog.jsonb_build_object(
                'ord', c.ord, 'language', c.language::text, 'domain', c.domain
                , 'uri', d.uri, 'title', coalesce(d.title, v.title), 'conversation', v.slug
                , 'level', u.level, 'index', u.index, 'seq', m.seq, 'role', m.role::text, 'name', m.name, 'ts', m.ts
                , 'date', v.created_date
                , 'source_metadata', coalesce(d.metadata, v.metadata)))
          from unnest(pool_ids, pool_scores, pool_similarities, pool_vector_ranks, pool_text_ranks)
               with ordinality as x (chunk_id, score, sim, vrank, trank, o)
          join memex.chunks as c on c.tenant_id = tenant and c.id = x.chunk_id
          left join memex.documents as d on d.tenant_id = c.tenant_id and d.id = c.document_id
          left join memex.conversations as v on v.tenant_id = c.tenant_id and v.id = c.conversation_id
          left join memex.summaries as u on u.tenant_id = c.tenant_id and u.id = c.summary_id
          left join memex.messages as m on m.tenant_id = c.tenant_id and m.id = c.message_id
         where x.o <= want
         order by x.o;
end
$$;

comment on function memex._search(
    text, __vector_schema__.vector, integer, text, jsonb, text, double precision, integer, double precision
    , double precision, double precision, text, integer, regprocedure, integer, double precision, double precision
    , double precision, interval
) is 'Internal: the implementation of both memex.rag_search overloads.';

-- The public rag_search overloads: memex._search above is their one implementation.

-- memex.rag_search(query, ...): hybrid (fusion of vector and BM25 text search), vector or text
-- search over the current tenant's chunks, in the active text space unless a space is named.
-- domain (docs/embedding.md, "Domains"): 'text' or 'code' searches that domain's chunks, 'code'
-- in the active code space (or, with none, in the text space, which embeds every chunk, with a
-- NOTICE); null or 'all' searches everything, and when a code space is active fuses the text
-- space's search with the code space's over the code chunks (reciprocal ranks, rrf_k).
create or replace function memex.rag_search(
    query text, k integer default 8, mode text default 'hybrid', filters jsonb default '{}'
    , space text default null, min_similarity double precision default null, rrf_k integer default 60
    , vector_weight double precision default 1.0, text_weight double precision default 1.0
    , diversity double precision default null, fusion text default 'convex'
    , max_per_document integer default null, rerank regprocedure default null
    , rerank_depth integer default 50, bm25_k1 double precision default null
    , bm25_b double precision default null, domain text default null
    , conversation_weight double precision default 1.0, recency interval default null
)
returns setof memex.search_result
language plpgsql
stable
parallel unsafe
security invoker
set search_path = pg_catalog, pg_temp
as $$
declare
    wanted text := coalesce(rag_search.domain, 'all');
    f jsonb := rag_search.filters;
    code_space text;
begin
    if wanted not in ('text', 'code', 'all') then
        raise exception 'unknown domain %', pg_catalog.quote_literal(wanted)
            using errcode = '22023', hint = 'text, code or all (null: all)';
    end if;
    -- A typo in the filters fails here, one function deep: psql prints one CONTEXT line per
    -- function an error passes through (_search checks them again, in its own right).
    perform memex._search_filters(f);
    if wanted <> 'all' then
        if pg_catalog.jsonb_typeof(f) = 'object' then
            f := f || pg_catalog.jsonb_build_object('domain', wanted);
        end if;
    end if;
    -- A named space or a text-only search needs no choice of space.
    if rag_search.space is null and rag_search.mode is distinct from 'text' and wanted <> 'text' then
        select s.name into code_space from memex.spaces as s where s.domain = 'code' and s.status = 'active';
        if code_space is null and wanted = 'code' then
            raise notice 'no active space for domain code: its chunks are searched in the active text space'
                using hint = 'create and activate a space with domain => ''code'' for a code model';
        end if;
    end if;
    if code_space is null or wanted = 'code' then
        return query select * from memex._search(
            query => rag_search.query, query_embedding => null, k => rag_search.k, mode => rag_search.mode
            , filters => f, space => coalesce(rag_search.space, code_space), min_similarity => rag_search.min_similarity
            , rrf_k => rag_search.rrf_k, vector_weight => rag_search.vector_weight
            , text_weight => rag_search.text_weight, diversity => rag_search.diversity, fusion => rag_search.fusion
            , max_per_document => rag_search.max_per_document, rerank => rag_search.rerank
            , rerank_depth => rag_search.rerank_depth, bm25_k1 => rag_search.bm25_k1, bm25_b => rag_search.bm25_b
            , conversation_weight => rag_search.conversation_weight, recency => rag_search.recency
        );
        return;
    end if;
    -- All domains with a code space active: both searches, fused by their ranks.
    return query
        with text_space_hits as (
            select r.*, r.o::integer as rank from memex._search(
                query => rag_search.query, query_embedding => null, k => rag_search.k, mode => rag_search.mode
                , filters => f, space => null, min_similarity => rag_search.min_similarity
                , rrf_k => rag_search.rrf_k, vector_weight => rag_search.vector_weight
                , text_weight => rag_search.text_weight, diversity => rag_search.diversity, fusion => rag_search.fusion
                , max_per_document => rag_search.max_per_document, rerank => rag_search.rerank
                , rerank_depth => rag_search.rerank_depth, bm25_k1 => rag_search.bm25_k1, bm25_b => rag_search.bm25_b
                , conversation_weight => rag_search.conversation_weight, recency => rag_search.recency
            ) with ordinality as r (chunk_id, source_kind, source_id, content, score, similarity, vector_rank, text_rank, metadata, o)
        ),
        code_space_hits as (
            select r.*, r.o::integer as rank from memex._search(
                query => rag_search.query, query_embedding => null, k => rag_search.k, mode => rag_search.mode
                , filters => coalesce(f, '{}') || '{"domain": "code"}', space => code_space
                , min_similarity => rag_search.min_similarity
                , rrf_k => rag_search.rrf_k, vector_weight => rag_search.vector_weight
                , text_weight => rag_search.text_weight, diversity => rag_search.diversity, fusion => rag_search.fusion
                , max_per_document => rag_search.max_per_document, rerank => rag_search.rerank
                , rerank_depth => rag_search.rerank_depth, bm25_k1 => rag_search.bm25_k1, bm25_b => rag_search.bm25_b
                , conversation_weight => rag_search.conversation_weight, recency => rag_search.recency
            ) with ordinality as r (chunk_id, source_kind, source_id, content, score, similarity, vector_rank, text_rank, metadata, o)
        ),
        fused as (
            select
                coalesce(t.chunk_id, c.chunk_id) as chunk_id
                , coalesce(1.0 / (rag_search.rrf_k + t.rank), 0) + coalesce(1.0 / (rag_search.rrf_k + c.rank), 0) as fused_score
                , least(t.rank, c.rank) as best_rank
                , t.rank as text_space_rank, c.rank as code_space_rank
            from text_space_hits as t full join code_space_hits as c on c.chunk_id = t.chunk_id
        )
        select
            x.chunk_id, coalesce(t.source_kind, c.source_kind), coalesce(t.source_id, c.source_id)
            , coalesce(t.content, c.content), x.fused_score::double precision
            , coalesce(c.similarity, t.similarity), coalesce(c.vector_rank, t.vector_rank)
            , coalesce(t.text_rank, c.text_rank)
            , coalesce(t.metadata, c.metadata) || pg_catalog.jsonb_strip_nulls(pg_catalog.jsonb_build_object(
                'text_space_rank', x.text_space_rank, 'code_space_rank', x.code_space_rank))
          from fused as x
          left join text_space_hits as t on t.chunk_id = x.chunk_id
          left join code_space_hits as c on c.chunk_id = x.chunk_id
         order by x.fused_score desc, x.best_rank, x.chunk_id
         limit rag_search.k;
end
$$;

comment on function memex.rag_search(
    text, integer, text, jsonb, text, double precision, integer, double precision, double precision
    , double precision, text, integer, regprocedure, integer, double precision, double precision, text
    , double precision, interval
) is 'Searches the current tenant''s chunks: hybrid (vector + BM25, fused), vector or text, in one domain or all; see docs/search.md.';

-- memex.rag_search(query_embedding, ...): the same with a precomputed query vector (mode vector).
create or replace function memex.rag_search(
    query_embedding __vector_schema__.vector, k integer default 8, mode text default 'vector'
    , filters jsonb default '{}', space text default null, min_similarity double precision default null
    , rrf_k integer default 60, vector_weight double precision default 1.0
    , text_weight double precision default 1.0, diversity double precision default null
    , fusion text default 'convex', max_per_document integer default null
)
returns setof memex.search_result
language sql
stable
parallel unsafe
security invoker
set search_path = pg_catalog, pg_temp
as $$
    select * from memex._search(
        query => null, query_embedding => query_embedding, k => k, mode => mode, filters => filters
        , space => space, min_similarity => min_similarity, rrf_k => rrf_k, vector_weight => vector_weight
        , text_weight => text_weight, diversity => diversity, fusion => fusion
        , max_per_document => max_per_document, rerank => null, rerank_depth => 50, bm25_k1 => null, bm25_b => null
        , conversation_weight => 1.0, recency => null
    )
$$;

comment on function memex.rag_search(
    __vector_schema__.vector, integer, text, jsonb, text, double precision, integer, double precision
    , double precision, double precision, text, integer
) is 'Vector search with a precomputed query embedding (its dimensions must be the space''s).';
