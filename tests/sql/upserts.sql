-- Every error the upserts give (docs/data-model.md): a payload is checked whole before any
-- row is written, and a refused call changes nothing (the counts at the end).
select memex.create_tenant('acme') is not null as tenant_created;
set role memex_app;

-- no tenant set: every write is refused
select memex.upsert_document('kb/a.md', 'text');
select memex.set_tenant('acme', false) is not null as tenant_set;

-- documents
select memex.upsert_document('', 'text');
select memex.upsert_document('kb/a.md', null);
select memex.upsert_document('kb/a.md', 'text', metadata => '[1]');
select memex.upsert_document('kb/a.md', 'text', title => repeat('t', 1001));
select memex.upsert_document('kb/a.md', 'text', metadata => '{"language": "klingon"}');
select memex.upsert_document('kb/a.md', 'text', metadata => '{"domain": "images"}');

-- conversations
select memex.upsert_conversation('');
select memex.upsert_conversation('c1', title => repeat('t', 1001));
select memex.upsert_conversation('c1', metadata => '"x"');
select memex.upsert_conversation('c1', 'Storms') is not null as conversation_created;

-- messages
select memex.upsert_messages('nope', '[{"role": "user", "content": "hi"}]');
select memex.upsert_messages('c1', '[{"role": "robot", "content": "hi"}]');
select memex.upsert_messages('c1', '[{"role": "user"}]');
select memex.upsert_messages('c1', '[{"role": "user", "content": "hi", "ts": "yesterday"}]');
select memex.upsert_messages('c1', '[{"seq": 1, "role": "user", "content": "a"}, {"seq": 1, "role": "user", "content": "b"}]');
select memex.upsert_messages('c1', '{"role": "user", "content": "hi"}');
select memex.upsert_messages('c1', '[{"role": "user", "content": "hi"}]', replace => null);
select memex.upsert_messages('c1', '[{"role": "user", "content": "hi"}');

-- summaries (artefact v2)
select memex.upsert_summaries('c1', '{"version": 1}');
select memex.upsert_summaries('c1', '[1, 2]');
select memex.upsert_summaries('c1', '{"version": 2, "level": 1, "date": "2025-06-25"}');

-- nothing was written by the refused calls: one conversation, no message, no document
select
    (select count(*) from memex.documents) as documents
    , (select count(*) from memex.conversations) as conversations
    , (select count(*) from memex.messages) as messages
    , (select count(*) from memex.summaries) as summaries;
