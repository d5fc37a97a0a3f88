-- The wordllama provider: the static embedding model shipped in the wordllama wheel (256
-- dimensions), a second real model beside all-MiniLM-L6-v2 (docs/embedding.md).
alter table memex.spaces drop constraint spaces_provider_check;

alter table memex.spaces add constraint spaces_provider_check
check (provider in ('sentence-transformers', 'hash', 'wordllama'));
