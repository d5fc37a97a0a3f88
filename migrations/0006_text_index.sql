-- The BM25 text index (docs/search.md, "Text ranking"): an inverted index kept per tenant and
-- per text-search language, written by the chunks triggers (sql/145-text-index.sql) and read by
-- memex._text_candidates. Everything a BM25 score needs lives here: term postings with their
-- term frequency and chunk length, and the per-tenant statistics (document frequencies, chunk
-- count, total length) as signed deltas carried by the same rows.

-- A chunk's text version: a new number whenever its content or language changes, so that the
-- postings of an older version are recognisably dead (they stay in their blocks, skipped by
-- searches, until memex.optimize_text_index rewrites the blocks without them).
create sequence memex.text_doc_seq as bigint;

alter table memex.chunks add column text_doc bigint;
update memex.chunks set text_doc = nextval('memex.text_doc_seq');
alter table memex.chunks alter column text_doc set default nextval('memex.text_doc_seq');
alter table memex.chunks alter column text_doc set not null;
-- id and language included: the text leg checks its candidates with an index-only scan.
create unique index chunks_text_doc on memex.chunks (tenant_id, text_doc) include (id, language);

-- Writers only ever insert: each statement that writes chunks adds one segment (below) with its
-- postings and signed statistics, so concurrent writers never wait on one another. Segments are
-- compacted, a few dozen at a time, into blocks: one row is a block of postings of one lexeme,
-- or (lexeme '') of the totals, and blocks of a lexeme are merged four of a size at a time. The
-- statistics of (tenant, language, lexeme) are the sums over its blocks and the segments: df =
-- sum(df), chunks = sum(df) of lexeme '', total length = sum(tokens) of lexeme ''.
create table memex.text_postings (
    tenant_id uuid not null references memex.tenants (id) on delete cascade
    , language text not null
    , lexeme text not null
    , block bigint generated always as identity
    , postings integer not null check (postings >= 0)  -- entries in the three arrays
    , df integer not null  -- signed change of the lexeme's document frequency (totals: chunks)
    , tokens bigint not null default 0  -- totals only: signed change of the summed chunk lengths
    , dead integer not null default 0  -- totals only: chunk versions whose postings died
    -- big-endian arrays, one entry per posting: text_doc (int8), term frequency (int2), chunk
    -- length (int2); read as numpy arrays without conversion
    , docids bytea not null
    , tfs bytea not null
    , lengths bytea not null
    , primary key (tenant_id, language, lexeme, block)
);

-- Binary arrays do not compress: store them out of line uncompressed, read without pglz.
alter table memex.text_postings alter column docids set storage external;
alter table memex.text_postings alter column tfs set storage external;
alter table memex.text_postings alter column lengths set storage external;

alter table memex.text_postings enable row level security;
alter table memex.text_postings force row level security;

comment on table memex.text_postings is
'The BM25 inverted index: blocks of postings per (tenant, language, lexeme) and signed statistics; lexeme '''' holds the totals.';

-- A segment: what one statement wrote, not yet compacted into blocks. Entries are (lexeme,
-- text_doc, term frequency, chunk length, delta): delta 1 adds a posting, -1 takes a chunk
-- version out of the lexeme's document frequency (its postings die where they are).
create table memex.text_segments (
    tenant_id uuid not null references memex.tenants (id) on delete cascade
    , language text not null
    , segment bigint generated always as identity
    , entries integer not null check (entries >= 0)
    , chunks integer not null  -- signed change of the chunk count
    , tokens bigint not null  -- signed change of the summed chunk lengths
    , dead integer not null  -- chunk versions taken out
    , lexemes text[] not null
    , docids bigint[] not null
    , tfs smallint[] not null
    , lengths smallint[] not null
    , deltas smallint[] not null
    , primary key (tenant_id, language, segment)
);

alter table memex.text_segments enable row level security;
alter table memex.text_segments force row level security;

comment on table memex.text_segments is
'Recent writes to the BM25 index, one row per statement, until they are compacted into memex.text_postings.';

-- Existing chunks are indexed by sql/146-text-index-upkeep.sql on this install (it rebuilds the index
-- whenever chunks exist and the index is empty), with the same code as every later write.

-- One row type for every search function (rag_search, its internals): declared once.
create type memex.search_result as (
    chunk_id uuid
    , source_kind text
    , source_id uuid
    , content text
    , score double precision
    , similarity double precision
    , vector_rank integer
    , text_rank integer
    , metadata jsonb
);

comment on type memex.search_result is 'A row of memex.rag_search (docs/search.md).';

-- rag_search gains fusion, per-document caps, a rerank hook and BM25 parameters (sql/160, 170):
-- the old signatures go (an overload beside them would make every call ambiguous), and _mmr
-- takes candidates as data instead of a statement to execute.
-- _replace_chunks gains the first chunk's heading (a document's title).
drop function if exists memex._replace_chunks(text, uuid, uuid, text, regconfig);
-- One drain engine (memex._drain_step, sql/140) replaces the claim and batch functions.
drop function if exists memex._claim_pending(integer, integer, uuid);
drop function if exists memex._embed_pending_batch(integer, integer, uuid);
drop function if exists memex._reembed_batch(integer, integer, uuid);

do $$
declare
    vs text := (select e.extnamespace::regnamespace::text from pg_extension as e where e.extname = 'vector');
begin
    execute format(
        'drop function if exists memex.rag_search(text, integer, text, jsonb, text, double precision, integer'
        ', double precision, double precision, double precision)');
    execute format(
        'drop function if exists memex.rag_search(%1$s.vector, integer, text, jsonb, text, double precision'
        ', integer, double precision, double precision, double precision)', vs);
    execute format(
        'drop function if exists memex._search(text, %1$s.vector, integer, text, jsonb, text, double precision'
        ', integer, double precision, double precision, double precision)', vs);
    execute format(
        'drop function if exists memex._mmr(text, %1$s.vector, text, jsonb, uuid, integer, double precision'
        ', integer, double precision, text, double precision, integer, double precision, integer)', vs);
end
$$;
