-- A message's chunks are embedded with their context (its neighbour turn): the context is kept
-- beside the content, which stays as written (what search returns and cites). A chunk's
-- content_hash covers what is embedded, so a changed context makes it pending again.
set local search_path = pg_catalog, pg_temp;

alter table memex.chunks add column context text;

comment on column memex.chunks.context is
'What is embedded after the content (a message: the turn before it); null for none. docs/data-model.md.';
