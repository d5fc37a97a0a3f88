-- Every error memex.rag_search gives, with its SQLSTATE and hint (docs/search.md, "Limits and
-- bad input"). Each is raised before any work: no model call, no row read.
select memex.create_tenant('acme') is not null as tenant_created;
set role memex_app;
select memex.set_tenant('acme', false) is not null as tenant_set;
select memex.upsert_document('kb/keys.md', 'Rotate the signing keys every month.') is not null as stored;

-- the query
select * from memex.rag_search('');
select * from memex.rag_search('   ');
select * from memex.rag_search(repeat('keys ', 20000));
select * from memex.rag_search('x', mode => 'fuzzy');
-- sizes
select * from memex.rag_search('x', k => 0);
select * from memex.rag_search('x', k => 1001);
select * from memex.rag_search('x', k => 101, diversity => 0.5);
select * from memex.rag_search('x', max_per_document => 0);
select * from memex.rag_search('x', rerank_depth => 0);
-- fusion and scoring
select * from memex.rag_search('x', fusion => 'max');
select * from memex.rag_search('x', rrf_k => 0);
select * from memex.rag_search('x', text_weight => -1);
select * from memex.rag_search('x', vector_weight => 0, text_weight => 0);
select * from memex.rag_search('x', diversity => 2);
select * from memex.rag_search('x', bm25_k1 => -1);
select * from memex.rag_search('x', bm25_b => 1.5);
select * from memex.rag_search('x', bm25_b => 'NaN');
-- rerankers
select * from memex.rag_search('x', rerank => 'public.nope(text, jsonb)');
select * from memex.rag_search('x', rerank => 'pg_catalog.lower(text)');
-- filters
select * from memex.rag_search('x', filters => '{"colour": 1}');
select * from memex.rag_search('x', filters => '{"levels": 2}');
select * from memex.rag_search('x', filters => '{"levels": ["a"]}');
select * from memex.rag_search('x', filters => '[]');
-- spaces, domains and query vectors
select * from memex.rag_search('x', space => 'nope');
select * from memex.rag_search('x', domain => 'images');
select * from memex.rag_search('[1,2,3]'::vector);
select * from memex.rag_search('[1,2,3]'::vector, mode => 'hybrid');

-- what a good call returns, for contrast: the document's chunk
select source_kind, content from memex.rag_search('signing keys', k => 1, mode => 'text');
