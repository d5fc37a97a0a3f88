-- A speaker's name was kept in a message's metadata (memex.Client, before messages.name): it
-- moves to the column, where search and compose_context read it. The metadata stays as written.
set local search_path = pg_catalog, pg_temp;

update memex.messages
set name = metadata ->> 'name'
where
    name is null
    and pg_catalog.jsonb_typeof(metadata -> 'name') = 'string'
    and pg_catalog.char_length(metadata ->> 'name') between 1 and 200;
