#!/usr/bin/env bash
# pgvector >= 0.8 built from Debian trixie's *source* package through a private apt
# configuration: the system's apt sources are never changed and no trixie binary is installed.
source "$(dirname "$0")/common.sh"

sharedir="$("$PG_CONFIG" --sharedir)"
installed="$(sed -n "s/^default_version = '\(.*\)'/\1/p" "$sharedir/extension/vector.control" 2>/dev/null || true)"
if [ -n "$installed" ] && [ "$(printf '%s\n0.8.0\n' "$installed" | sort -V | head -1)" = "0.8.0" ]; then
    log "pgvector $installed present for PostgreSQL ${PG_MAJOR}"
    exit 0
fi

work="${MEMEX_HOME}/build/pgvector"
apt_root="$work/apt"
mkdir -p "$apt_root/sources.list.d" "$apt_root/lists/partial" "$apt_root/cache/archives/partial" "$work/src"
cat > "$apt_root/sources.list.d/trixie-src.sources" <<SRC
Types: deb-src
URIs: http://deb.debian.org/debian
Suites: trixie
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
apt_opts=(
    -o "Dir::Etc::SourceList=/dev/null"
    -o "Dir::Etc::SourceParts=$apt_root/sources.list.d"
    -o "Dir::State::Lists=$apt_root/lists"
    -o "Dir::Cache=$apt_root/cache"
    -o "APT::Sandbox::User=root"
)
log "fetching the pgvector source package (private apt configuration)"
apt-get "${apt_opts[@]}" update -qq
(cd "$work/src" && rm -rf pgvector-* && apt-get "${apt_opts[@]}" source --download-only -qq pgvector)
tarball="$(ls "$work/src"/pgvector_*.orig.tar.* | sort -V | tail -1)"
rm -rf "$work/build" && mkdir -p "$work/build"
tar -xf "$tarball" -C "$work/build" --strip-components=1
log "building $(basename "$tarball")"
# OPTFLAGS="" avoids -march=native, which would make the binary unportable.
make -s -C "$work/build" PG_CONFIG="$PG_CONFIG" OPTFLAGS="" >/dev/null
as_root make -s -C "$work/build" PG_CONFIG="$PG_CONFIG" OPTFLAGS="" install >/dev/null
log "pgvector installed: $(sed -n "s/^default_version = '\(.*\)'/\1/p" "$sharedir/extension/vector.control")"
