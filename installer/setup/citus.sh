#!/usr/bin/env bash
# Citus built from a source directory (make citus CITUS_SRC=dir; tested with v13.2.2), for the
# tests of memex's Citus mode (docs/scale.md says how a user installs Citus from its packages).
# The source directory is left as it is: the build runs in a copy.
source "$(dirname "$0")/common.sh"

src="${1:?usage: citus.sh CITUS_SOURCE_DIR}"
[ -f "$src/configure" ] && [ -f "$src/src/include/pg_version_compat.h" ] \
    || { log "$src is not a Citus source tree (no configure, no src/include/pg_version_compat.h)"; exit 2; }
libdir="$("$PG_CONFIG" --pkglibdir)"
if [ -f "$libdir/citus.so" ] && [ -z "${CITUS_REBUILD:-}" ]; then
    log "citus present for PostgreSQL ${PG_MAJOR} ($libdir/citus.so; CITUS_REBUILD=1 builds it again)"
    exit 0
fi

log "installing Citus's build dependencies from Debian"
as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libcurl4-openssl-dev liblz4-dev \
    libzstd-dev libkrb5-dev libssl-dev libselinux1-dev libxslt1-dev libpam0g-dev libreadline-dev \
    flex >/dev/null
work="${MEMEX_HOME}/build/citus"
rm -rf "$work" && mkdir -p "$work"
cp -a "$src/." "$work/"
# PostgreSQL 15.20's commands/dbcommands.h exports have_createdb_privilege, which Citus 13.2.2
# also defines as a static inline for PostgreSQL < 17: drop that copy and use the server's.
python3 - "$work/src/include/pg_version_compat.h" "$("$PG_CONFIG" --includedir-server)" <<'PY'
import re, sys
path, server = sys.argv[1], sys.argv[2]
exported = "have_createdb_privilege" in open(f"{server}/commands/dbcommands.h").read()
text = open(path).read()
inline = re.compile(r"static inline bool\nhave_createdb_privilege\(void\)\n\{.*?\n\}\n", re.S)
if exported and inline.search(text):
    text = inline.sub('#include "commands/dbcommands.h"\n', text, count=1)
    open(path, "w").write(text)
    print("[memex setup] pg_version_compat.h: have_createdb_privilege taken from the server", file=sys.stderr)
PY
log "building Citus from $src (a few minutes)"
(cd "$work" && ./configure -q --without-libcurl PG_CONFIG="$PG_CONFIG" >/dev/null \
    && make -s -j"$(nproc)" >"$work/build.log" 2>&1 || { tail -20 "$work/build.log" >&2; exit 1; })
as_root make -s -C "$work" install >>"$work/build.log" 2>&1
log "citus installed: $libdir/citus.so"
