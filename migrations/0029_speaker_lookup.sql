-- The speakers a query names are looked up by its words (memex._content_query): each word a
-- prefix probe of the speakers' lower-case names, instead of a scan of every distinct name (17
-- ms a search for a tenant of 2,000 speakers). text_pattern_ops: prefix LIKE uses the index
-- whatever the database's collation.
drop index if exists memex.messages_speakers;
create index messages_speaker_names on memex.messages (tenant_id, pg_catalog.lower(name) text_pattern_ops)
where name is not null;
