-- chunks.language becomes text (a pg_catalog text-search configuration's name): pg_upgrade and
-- managed services' major-version prechecks refuse user tables with reg* columns (their oids
-- are not kept across versions), so a regconfig column blocked every 15 -> 16/17 upgrade.
-- The stored tsvector is computed through memex._tsvector, an immutable wrapper: a generated
-- column needs an immutable expression and text::regconfig is only stable (a configuration
-- could be renamed). memex only ever writes names of pg_catalog's built-in configurations.
-- Rewrites memex.chunks (and rebuilds its indexes) in this transaction.
set local search_path = pg_catalog, pg_temp;

create function memex._tsvector(config text, body text)
returns tsvector
language sql
immutable
strict
parallel safe
security invoker
set search_path = pg_catalog, pg_temp
as $$ select pg_catalog.to_tsvector(config::pg_catalog.regconfig, body) $$;

comment on function memex._tsvector(text, text) is
'Internal: to_tsvector under a configuration named by text (immutable: the stored tsvector of memex.chunks).';

-- The text index's version trigger fires on UPDATE OF language (a column a type change cannot
-- alter under it): dropped here, created again by sql/145-text-index.sql right after.
drop trigger if exists text_version on memex.chunks;
drop index memex.chunks_tsv;
alter table memex.chunks drop column tsv;
-- Under this search_path a pg_catalog configuration prints unqualified: 'english'.
alter table memex.chunks alter column language drop default;
alter table memex.chunks alter column language type text using language::text;
alter table memex.chunks alter column language set default 'english';
alter table memex.chunks add column tsv tsvector generated always as (memex._tsvector(language, content)) stored;
create index chunks_tsv on memex.chunks using gin (tsv);

-- Signatures that change: the configuration is passed and returned as text.
drop function if exists memex._ts_config(jsonb);
drop function if exists memex._replace_chunks(text, uuid, uuid, text, regconfig, text, text);
