-- Embedding providers: the values memex.spaces.provider may take. A lookup the installer fills
-- from memex_db.providers at every install (one module per provider), where a CHECK needed a
-- migration for each new provider (0009, 0010).
set local search_path = pg_catalog, pg_temp;

create table memex.providers (
    name text primary key
);

insert into memex.providers (name)
values ('sentence-transformers'), ('hash'), ('wordllama'), ('openai');

alter table memex.spaces drop constraint spaces_provider_check;

alter table memex.spaces add constraint spaces_provider_fkey
foreign key (provider) references memex.providers (name);

comment on table memex.providers is
'Embedding providers a space may use (memex_db.providers); filled by the installer.';
