#!/usr/bin/env bash
# First start of the container (docker-entrypoint-initdb.d): install memex into POSTGRES_DB.
set -euo pipefail
memex install --dsn "postgresql://${POSTGRES_USER:-postgres}@%2Fvar%2Frun%2Fpostgresql/${POSTGRES_DB:-postgres}"
