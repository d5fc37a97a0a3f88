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
if "memex_db" not in GD:
    plpy.execute("select memex._python_init()")
return GD["memex_db"].entry.call(plpy, GD, "@memex_version@", "embed", input, space)
$py$;

comment on function memex.embed(text, text) is
'Embeds one text with the model of the given space (null: the default space), in this backend.';
