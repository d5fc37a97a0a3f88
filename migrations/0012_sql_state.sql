-- What `memex install` last applied from sql/ (docs/install.md, "Installs on a live database"):
-- each rendered file's digest, and the fingerprint of memex's definitions right after. An
-- install that finds the definitions as it left them re-applies only the files that changed,
-- so an install with nothing to do takes no lock on tenant tables.
create table memex.sql_state (
    file text primary key
    , digest text not null
    , applied_at timestamptz not null default now()
);

comment on table memex.sql_state is 'Internal: the digest of each sql/ file as memex install last applied it.';

create table memex.install_fingerprint (
    singleton boolean primary key default true check (singleton)
    , fingerprint text not null
    , recorded_at timestamptz not null default now()
);

comment on table memex.install_fingerprint is
'Internal: the fingerprint of memex''s definitions after the last install (drift check).';
