# Shared settings for the setup scripts (sourced, not executed).
# One place for paths and versions so make setup and Dockerfile.postgres cannot drift.
set -euo pipefail

PG_MAJOR="${PG_MAJOR:-15}"
PG_CONFIG="${PG_CONFIG:-/usr/lib/postgresql/${PG_MAJOR}/bin/pg_config}"
# Root of everything memex installs outside the repository (readable by postgres).
MEMEX_HOME="${MEMEX_HOME:-/var/lib/memex}"
# Debian's python3 is the interpreter plpython3u embeds: the server venv must use it.
SERVER_PYTHON="${SERVER_PYTHON:-/usr/bin/python3}"
SETUP_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

log() { printf '[memex setup] %s\n' "$*" >&2; }

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}
