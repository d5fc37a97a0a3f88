-- What text a source is chunked and indexed as: the text-search configuration of its language,
-- and a document's title as the heading of its first chunk.

-- memex._language_codes(): ISO 639-1 codes and the text-search configuration PostgreSQL 15
-- ships for each (the one list: memex ingest --language and metadata.language both read it).
create or replace function memex._language_codes()
returns table (code text, config text)
language sql
immutable
parallel safe
security invoker
set search_path = pg_catalog, pg_temp
as $$
    select x.code, x.config from (values
        ('ar', 'arabic'), ('ca', 'catalan'), ('da', 'danish'), ('de', 'german'), ('el', 'greek')
        , ('en', 'english'), ('es', 'spanish'), ('eu', 'basque'), ('fi', 'finnish'), ('fr', 'french')
        , ('ga', 'irish'), ('hi', 'hindi'), ('hu', 'hungarian'), ('hy', 'armenian'), ('id', 'indonesian')
        , ('it', 'italian'), ('lt', 'lithuanian'), ('nb', 'norwegian'), ('ne', 'nepali'), ('nl', 'dutch')
        , ('nn', 'norwegian'), ('no', 'norwegian'), ('pt', 'portuguese'), ('ro', 'romanian'), ('ru', 'russian')
        , ('sr', 'serbian'), ('sv', 'swedish'), ('ta', 'tamil'), ('tr', 'turkish'), ('yi', 'yiddish')
    ) as x (code, config)
$$;

comment on function memex._language_codes() is
'Internal: ISO 639-1 codes and their PostgreSQL text-search configurations.';

-- memex._ts_config(metadata): the name of the text-search configuration for a source's language
-- (a pg_catalog one; a name, not a regconfig: chunks.language is text, see migration 0013):
-- metadata.language is a configuration's name (french), an ISO 639-1 code (fr) or a BCP 47 tag
-- (fr-CA: its language); absent or null: english. Anything else is refused (22023, with the
-- list): indexed as English, a language memex does not know would be searched wrongly, silently.
create or replace function memex._ts_config(metadata jsonb)
returns text
language plpgsql
stable
parallel safe
security invoker
set search_path = pg_catalog, pg_temp
as $$
declare
    given text := metadata ->> 'language';
    wanted text := pg_catalog.lower(pg_catalog.btrim(given));
    config text;
begin
    if given is null then
        return 'english';
    end if;
    if wanted ~ '^[a-z]{2}([-_][a-z0-9]+)*$' then
        wanted := pg_catalog.left(wanted, 2);
    end if;
    select c.cfgname::text into config
      from pg_catalog.pg_ts_config as c
     where c.cfgnamespace = 'pg_catalog'::regnamespace
       and c.cfgname = coalesce((select i.config from memex._language_codes() as i where i.code = wanted), wanted);
    if config is null then
        raise exception 'unknown language %', pg_catalog.quote_literal(given)
            using errcode = '22023'
            , hint = 'an ISO 639-1 code or a PostgreSQL text-search configuration: ' || (
                select pg_catalog.string_agg(i.code || ' (' || i.config || ')', ', ' order by i.code)
                  from memex._language_codes() as i
                 where exists (select from pg_catalog.pg_ts_config as c
                                where c.cfgnamespace = 'pg_catalog'::regnamespace and c.cfgname = i.config)
            ) || '; ''simple'' (no stemming) for any other language';
    end if;
    return config;
end
$$;

comment on function memex._ts_config(jsonb) is
'Internal: text-search configuration from metadata.language (a configuration''s name, an ISO 639-1 code or a BCP 47 tag); english when absent; 22023 when unknown.';

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
    if uri ~* '@code_file_pattern@' then  -- memex/code_files.py, rendered at install
        return 'code';
    end if;
    return null;
end
$$;

comment on function memex._document_domain(text, jsonb) is
'Internal: a document''s chunk domain from metadata.domain or a source-code uri extension; null when decided per chunk.';
