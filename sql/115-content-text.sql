-- What text a source is chunked and indexed as: the text-search configuration of its language,
-- and a document's title as the heading of its first chunk.

-- memex._ts_config(metadata): text-search configuration for a source's language.
create or replace function memex._ts_config(metadata jsonb)
returns regconfig
language sql
stable
parallel safe
security invoker
set search_path = pg_catalog, pg_temp
as $$
    select coalesce(
        (select c.oid::regconfig
           from pg_catalog.pg_ts_config as c
          where c.cfgname = (
                case pg_catalog.lower(metadata ->> 'language')
                    when 'en' then 'english' when 'fr' then 'french' when 'de' then 'german'
                    when 'es' then 'spanish' when 'it' then 'italian' when 'pt' then 'portuguese'
                    when 'nl' then 'dutch' when 'ru' then 'russian' when 'sv' then 'swedish'
                    else pg_catalog.lower(metadata ->> 'language')
                end)
            and c.cfgnamespace = 'pg_catalog'::regnamespace)
        , 'pg_catalog.english'::regconfig
    )
$$;

comment on function memex._ts_config(jsonb) is
'Internal: text-search configuration from metadata.language (name or ISO code); english by default.';

-- memex._document_heading(title, content): the heading of a document's first chunk: its title,
-- unless the content already opens with it (a markdown heading, a title line); null when none.
-- A title counts for both search legs: most corpora carry their key words in titles.
create or replace function memex._document_heading(title text, content text)
returns text
language sql
immutable
parallel safe
security invoker
set search_path = pg_catalog, pg_temp
as $$
    select case
        when title is null or pg_catalog.btrim(title) = ''
             or pg_catalog.strpos(
                 pg_catalog.lower(pg_catalog.left(content, pg_catalog.length(title) * 2 + 100))
                 , pg_catalog.lower(pg_catalog.btrim(title))) > 0
            then null
        else pg_catalog.btrim(title)
    end
$$;

comment on function memex._document_heading(text, text) is
'Internal: a document''s title as the heading of its first chunk, unless the content already opens with it.';
