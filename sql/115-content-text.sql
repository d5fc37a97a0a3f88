-- What text a source is chunked and indexed as: the text-search configuration of its language,
-- and a document's title as the heading of its first chunk.

-- memex._ts_config(metadata): the name of the text-search configuration for a source's language
-- (a pg_catalog one; a name, not a regconfig: chunks.language is text, see migration 0013).
create or replace function memex._ts_config(metadata jsonb)
returns text
language sql
stable
parallel safe
security invoker
set search_path = pg_catalog, pg_temp
as $$
    select coalesce(
        (select c.cfgname::text
           from pg_catalog.pg_ts_config as c
          where c.cfgname = (
                case pg_catalog.lower(metadata ->> 'language')
                    when 'en' then 'english' when 'fr' then 'french' when 'de' then 'german'
                    when 'es' then 'spanish' when 'it' then 'italian' when 'pt' then 'portuguese'
                    when 'nl' then 'dutch' when 'ru' then 'russian' when 'sv' then 'swedish'
                    else pg_catalog.lower(metadata ->> 'language')
                end)
            and c.cfgnamespace = 'pg_catalog'::regnamespace)
        , 'english'
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

-- memex._document_domain(uri, metadata): the domain of all of a document's chunks when the
-- document decides it (docs/embedding.md, "Domains"): metadata.domain ('text' or 'code'; 22023
-- for anything else), else 'code' for a source file by its uri's extension; null: decided per
-- chunk (fenced blocks, mostly-code prose) by memex._chunk_source.
create or replace function memex._document_domain(uri text, metadata jsonb)
returns text
language plpgsql
immutable
parallel safe
security invoker
set search_path = pg_catalog, pg_temp
as $$
begin
    if metadata ? 'domain' then
        if pg_catalog.jsonb_typeof(metadata -> 'domain') <> 'string' or metadata ->> 'domain' not in ('text', 'code') then
            raise exception 'document metadata domain must be "text" or "code", not %', metadata -> 'domain'
                using errcode = '22023', hint = 'leave it out to let memex decide (source files by extension, fenced blocks)';
        end if;
        return metadata ->> 'domain';
    end if;
    if uri ~* '\.(py|pyi|js|jsx|mjs|cjs|ts|tsx|go|rs|java|kt|kts|scala|c|h|cc|cpp|cxx|hpp|hh|cs|rb|php|swift|m|mm|sh|bash|zsh|ps1|sql|r|jl|lua|pl|pm|hs|ex|exs|erl|clj|dart|vue|svelte|css|scss|proto|tf|cmake|gradle|toml|ya?ml|ini|cfg|dockerfile|makefile)$' then
        return 'code';
    end if;
    return null;
end
$$;

comment on function memex._document_domain(text, jsonb) is
'Internal: a document''s chunk domain from metadata.domain or a source-code uri extension; null when decided per chunk.';
