-- Privileges, re-applied on every install. Functions are created executable by PUBLIC: take
-- that away everywhere, then grant the public API to the memex roles only.
revoke all on schema memex from public;
grant usage on schema memex to memex_admin, memex_app;

revoke all on all functions in schema memex from public;
revoke all on all procedures in schema memex from public;

grant execute on function memex.version() to memex_admin, memex_app;
grant execute on function memex.status() to memex_admin, memex_app;
grant execute on function memex.python_check() to memex_admin, memex_app;
grant execute on function memex.embed(text, text) to memex_admin, memex_app;
grant execute on function memex._python_init() to memex_admin, memex_app;
grant execute on function memex._backend_status() to memex_admin, memex_app;

revoke all on all tables in schema memex from public;
grant select on memex.installs to memex_admin;
