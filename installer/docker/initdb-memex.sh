#!/usr/bin/env bash
# First start of the container (docker-entrypoint-initdb.d): install memex into POSTGRES_DB, then
# create the login role applications connect as (MEMEX_APP_USER, member of memex_app only: no
# superuser, no BYPASSRLS, owns nothing). The superuser stays for DBAs on the socket and on
# loopback; applications never need it. Idempotent: re-running changes the password only.
set -euo pipefail
conninfo="host=${PGHOST:-/var/run/postgresql} port=${PGPORT:-5432} user=${POSTGRES_USER:-postgres} dbname=${POSTGRES_DB:-postgres}"
memex install --dsn "$conninfo"
if [ -z "${MEMEX_APP_PASSWORD:-}" ]; then
    echo "initdb-memex: MEMEX_APP_PASSWORD is not set: no application login role created" >&2
    exit 0
fi
psql -v ON_ERROR_STOP=1 --no-psqlrc --quiet "$conninfo" \
    -v app_user="${MEMEX_APP_USER:-memex_api}" -v app_password="$MEMEX_APP_PASSWORD" <<'SQL'
select format('create role %I login inherit', :'app_user')
 where not exists (select from pg_roles where rolname = :'app_user') \gexec
select format('alter role %I login inherit nosuperuser nocreatedb nocreaterole nobypassrls password %L',
              :'app_user', :'app_password') \gexec
select format('grant memex_app to %I', :'app_user') \gexec
select format('grant connect on database %I to %I', current_database(), :'app_user') \gexec
SQL
echo "initdb-memex: applications connect as ${MEMEX_APP_USER:-memex_api} (member of memex_app)"
