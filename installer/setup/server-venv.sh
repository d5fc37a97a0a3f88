#!/usr/bin/env bash
# The server-side Python venv that plpython3u imports from, at a versioned location outside the
# repository (key = hash of the requirements + interpreter version), so fresh clones reuse it.
# Usage: server-venv.sh PLPYTHON_SRC_DIR   (the repo's plpython/ directory)
source "$(dirname "$0")/common.sh"

src_dir="$(cd "${1:?usage: server-venv.sh PLPYTHON_SRC_DIR}" && pwd)"
REQUIREMENTS="$src_dir/memex_db/server-requirements.txt"
torch_spec="torch==2.13.0"
key="$( { "$SERVER_PYTHON" --version; echo "$torch_spec"; cat "$REQUIREMENTS"; } \
        | sha256sum | cut -c1-12)"
venv_root="$MEMEX_HOME/server-venv"
venv="$venv_root/$key"

# The machine's pip config points at local indexes that print one warning a package.
pip_quiet() { "$@" 2> >(grep -v "is ignored: it is neither" >&2); }

if [ -f "$venv/.memex-complete" ]; then
    log "server venv present: $venv"
else
    log "building the server venv at $venv (about 1.5 GB, a few minutes; done once per requirements)"
    rm -rf "$venv"
    mkdir -p "$venv_root"
    "$SERVER_PYTHON" -m venv "$venv"
    pip_quiet "$venv/bin/pip" install -q --upgrade pip
    # TORCH_INDEX_URL (optional): a CPU-only wheel index, for hosts without a local CPU wheel.
    pip_quiet "$venv/bin/pip" install -q ${TORCH_INDEX_URL:+--index-url "$TORCH_INDEX_URL"} "$torch_spec"
    pip_quiet "$venv/bin/pip" install -q -r "$REQUIREMENTS"
    touch "$venv/.memex-complete"
fi
ln -sfn "$key" "$venv_root/current.tmp" && mv -T "$venv_root/current.tmp" "$venv_root/current"

# memex_db goes into a per-version lib dir (not into the shared venv): each memex version
# imports exactly its own code, and the SQL wrappers check the version they find.
version="$(sed -n 's/^__version__ = "\(.*\)"/\1/p' "$src_dir/memex_db/__init__.py")"
lib="$MEMEX_HOME/lib/$version"
mkdir -p "$lib"
rm -rf "$lib/memex_db.tmp"
cp -r "$src_dir/memex_db" "$lib/memex_db.tmp"
find "$lib/memex_db.tmp" -name '__pycache__' -prune -exec rm -rf {} +
# Byte-compile now: the postgres user cannot write __pycache__ here, and compiling at import
# time in every new backend would cost cold-start time.
"$venv/bin/python" -m compileall -q "$lib/memex_db.tmp" >/dev/null
rm -rf "$lib/memex_db" && mv "$lib/memex_db.tmp" "$lib/memex_db"
chmod -R a+rX "$MEMEX_HOME"
log "memex_db $version installed in $lib"

# The fast runtime: export the bundled model to ONNX once, beside the venv (skipped when present).
PYTHONPATH="$lib" "$venv/bin/python" -m memex_db.onnx_export --quiet || {
    log "ONNX export failed: the sentence-transformers runtime will be used"; }
chmod -R a+rX "$MEMEX_HOME"
