-- The speakers of a tenant, read by every search that weighs conversations
-- (memex._content_query, sql/158-search-steps.sql): a loose index scan over this index costs
-- one probe per distinct name instead of a scan of the tenant's messages.
create index messages_speakers on memex.messages (tenant_id, name) where name is not null;
