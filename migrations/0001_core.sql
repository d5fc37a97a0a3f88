-- memex core: the install log. The schema, roles and extensions are created by the installer
-- before any migration runs (they must exist for yoyo's own tables).

create table memex.installs (
    id bigint generated always as identity primary key
    , version text not null
    , postgres_version text not null
    , vector_version text
    , installed_by text not null default current_user
    , installed_at timestamptz not null default now()
);

comment on table memex.installs is
'One row per memex install or upgrade that changed the memex, PostgreSQL or pgvector version.';
