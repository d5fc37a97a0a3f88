-- Token-aware chunking and payload validation, in the backend's Python (memex_db.chunking,
-- memex_db.payloads). The tokenizer loads alone: no model, no torch.

-- memex.chunk_text(input, max_tokens, overlap, space): split a text into token-bounded chunks.
create or replace function memex.chunk_text(
    input text, max_tokens integer default null, overlap integer default null, space text default null
)
returns table (ord integer, content text, token_count integer)
language plpython3u
stable
parallel unsafe
security invoker
set search_path = pg_catalog, pg_temp
as $py$
if input is not None and len(input) > 50000000:
    plpy.error("memex.chunk_text: the input has %d characters; the limit is 50,000,000" % len(input),
               sqlstate="54000")
@memex_db api:chunk_text(input, max_tokens, overlap, space)@
$py$;

comment on function memex.chunk_text(text, integer, integer, text) is
'Splits text into chunks of at most max_tokens tokens (default 200, at most the model''s maximum sequence length) of the space''s tokenizer, overlapping by overlap tokens (default 32), never cutting a word.';

-- memex._chunk_source(input, domain): a source's chunks with their domain (memex_db.domains):
-- with a domain every chunk has it; without, fenced blocks are code chunks of their own and
-- prose chunks that are mostly code lines are code. Chunked with the active text space's
-- tokenizer, at chunk_text's defaults.
create or replace function memex._chunk_source(input text, domain text default null)
returns table (ord integer, content text, token_count integer, domain text)
language plpython3u
stable
parallel unsafe
security invoker
set search_path = pg_catalog, pg_temp
as $py$
if input is not None and len(input) > 50000000:
    plpy.error("memex._chunk_source: the input has %d characters; the limit is 50,000,000" % len(input),
               sqlstate="54000")
@memex_db api:chunk_source(input, domain)@
$py$;

comment on function memex._chunk_source(text, text) is
'Internal: a source''s chunks (as chunk_text cuts them) with their domain, text or code.';

-- memex.count_tokens(input, space): tokens of a text for the space's model (as chunk_text counts).
create or replace function memex.count_tokens(input text, space text default null)
returns integer
language plpython3u
stable
parallel unsafe
security invoker
set search_path = pg_catalog, pg_temp
as $py$
if input is not None and len(input) > 50000000:  # the ingest limit is 100 MB files: 50M characters of text
    plpy.error("memex.count_tokens: the input has %d characters; the limit is 50,000,000" % len(input),
               sqlstate="54000")
@memex_db api:count_tokens(input, space)@
$py$;

comment on function memex.count_tokens(text, text) is
'Tokens of a text for the space''s model (null: the active text space), special tokens excluded.';

-- memex._check_messages(messages, last_seq): the validated, normalised message array (sorted by
-- seq; a message without seq gets the next one after last_seq), or {"error", "hint"} for the
-- caller to raise (memex_db/payloads.py).
create or replace function memex._check_messages(messages jsonb, last_seq integer)
returns jsonb
language plpython3u
immutable
parallel unsafe
security invoker
set search_path = pg_catalog, pg_temp
as $py$
@memex_db payloads:checked_messages(messages, last_seq)@
$py$;

comment on function memex._check_messages(jsonb, integer) is
'Internal: validates an upsert_messages payload whole and numbers the messages to append; {"error", "hint"} when it is malformed.';

-- memex._check_artefact(artefact, conversation_slug): the validated, normalised artefact v2, or
-- {"error", "hint"} for the caller to raise.
create or replace function memex._check_artefact(artefact jsonb, conversation_slug text)
returns jsonb
language plpython3u
immutable
parallel unsafe
security invoker
set search_path = pg_catalog, pg_temp
as $py$
@memex_db payloads:checked_artefact(artefact, conversation_slug)@
$py$;

comment on function memex._check_artefact(jsonb, text) is
'Internal: validates an artefact v2 document whole; {"error", "hint"} naming the field when it is malformed.';
