#!/usr/bin/env bash
# PostgreSQL server + headers + plpython3 (and pgbouncer, for tests) from Debian. Skips apt entirely when present.
source "$(dirname "$0")/common.sh"

# pgbouncer: the test suite runs tenants through a real transaction-mode pooler (tests/db/test_pooler.py).
packages=("postgresql-${PG_MAJOR}" "postgresql-server-dev-${PG_MAJOR}" "postgresql-plpython3-${PG_MAJOR}" python3-venv pgbouncer)
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
    log "system packages present: ${packages[*]}"
    exit 0
fi
log "installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
as_root apt-get update -qq
as_root apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
