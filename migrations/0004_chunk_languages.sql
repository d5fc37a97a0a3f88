-- The distinct text search languages of a tenant's chunks, read by a skip scan of this index on
-- every text and hybrid search (a few index probes instead of a pass over the tenant's chunks).
-- Built without CONCURRENTLY (migrations run in a transaction): on a large memex.chunks this
-- blocks writes to chunks while it builds.
create index chunks_tenant_language on memex.chunks (tenant_id, language);
