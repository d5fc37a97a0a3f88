-- Every error memex.compose_context gives: its own (the budget) and rag_search's, which it
-- calls with the query, k, mode, filters and space it was given.
select memex.create_tenant('acme') is not null as tenant_created;
set role memex_app;
select memex.set_tenant('acme', false) is not null as tenant_set;
select memex.upsert_document('kb/keys.md', 'Rotate the signing keys every month.') is not null as stored;

select memex.compose_context('keys', 0);
select memex.compose_context('keys', null);
select memex.compose_context('', 500);
select memex.compose_context('keys', 500, k => 0);
select memex.compose_context('keys', 500, mode => 'fuzzy');
select memex.compose_context('keys', 500, filters => '{"colour": 1}');
select memex.compose_context('keys', 500, space => 'nope');

-- a good call, for contrast
select memex.compose_context('signing keys', 200, mode => 'text');
-- no tenant: an empty context, not an error
reset memex.tenant_id;
select memex.compose_context('signing keys', 200, mode => 'text') = '' as empty;
