-- memex.embed(input, space): one text to one vector, computed in this backend.
-- STABLE so that `order by e <=> memex.embed('...')` can use an HNSW index (VOLATILE cannot).
-- Not STRICT: a STRICT function would return null for the default space => null; a null input
-- still returns null.
create or replace function memex.embed(input text, space text default null)
returns __vector_schema__.vector
language plpython3u
stable
parallel unsafe
security invoker
set search_path = pg_catalog, pg_temp
as $py$
if input is not None and len(input) > 100000:  # before any import or model: docs/embedding.md, limits
    plpy.error("memex.embed: the input has %d characters; the limit is 100000" % len(input), sqlstate="54000",
               hint="embed chunks (memex.chunk_text gives them), not whole documents")
@memex_db api:embed(input, space)@
$py$;

comment on function memex.embed(text, text) is
'Embeds one text with the model of the given space (null: the default space), in this backend.';

-- memex.embed_batch(inputs, space): many texts in one call, (ord, embedding) in input order
-- (ord from 1); a null input gives a null embedding. Much faster than one embed() per row.
create or replace function memex.embed_batch(inputs text[], space text default null)
returns table (ord integer, embedding __vector_schema__.vector)
language plpython3u
stable
parallel unsafe
security invoker
set search_path = pg_catalog, pg_temp
as $py$
if inputs is not None and (len(inputs) > 4096 or sum(len(t) for t in inputs if t is not None) > 10000000):
    plpy.error("memex.embed_batch: %d texts, %d characters; the limits are 4096 texts and 10,000,000 characters"
               % (len(inputs), sum(len(t) for t in inputs if t is not None)), sqlstate="54000",
               hint="call it in batches (CALL memex.embed_pending does)")
@memex_db api:embed_batch(inputs, space)@
$py$;

comment on function memex.embed_batch(text[], text) is
'Embeds an array of texts with the space''s model (null: the default space); returns (ord, embedding), ord from 1.';

-- memex._release_memory(): gives the heap's free memory back to the system, at the end of a
-- CALL that embedded (embed_batch keeps some between calls: docs/embedding.md, "Memory").
-- Nothing to do in a backend that never loaded memex_db.
create or replace function memex._release_memory()
returns void
language plpython3u
volatile
parallel unsafe
security invoker
set search_path = pg_catalog, pg_temp
as $py$
if "memex_db" in GD:
    GD["memex_db"].entry.call(plpy, GD, "@memex_version@", "api:release_memory")
$py$;

comment on function memex._release_memory() is
'Internal: returns the heap''s free memory to the system (the end of a CALL that embedded).';

-- memex._model_info(model): the provider and native dimensions of a model (loads it once).
create or replace function memex._model_info(model text, out provider text, out dimensions integer)
language plpython3u
stable
parallel unsafe
security invoker
set search_path = pg_catalog, pg_temp
as $py$
@memex_db api:model_info(model)@
$py$;

comment on function memex._model_info(text) is
'Internal: (provider, native dimensions) of a model name or local model directory.';

-- memex._model_hash(model): sha256 of the model's files, part of a space's signature: the same
-- name or path with other weights must be re-embedded (memex.reembed).
create or replace function memex._model_hash(model text)
returns text
language plpython3u
volatile
parallel unsafe
security invoker
set search_path = pg_catalog, pg_temp
as $py$
@memex_db api:model_hash(model)@
$py$;

comment on function memex._model_hash(text) is
'Internal: sha256 over a model''s files (names and bytes), cached per backend by size and mtime.';
