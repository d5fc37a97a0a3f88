#!/usr/bin/env bash
# A venv beside memex's own, for a real server the tests start (infinity-emb) or a stack a bench
# compares against (LangChain): at $MEMEX_HOME/aux-venv/NAME-KEY (key = hash of the
# requirements + interpreter), built once, reused by fresh clones; prints its path.
# Usage: aux-venv.sh NAME REQUIREMENTS_FILE
source "$(dirname "$0")/common.sh"

name="${1:?usage: aux-venv.sh NAME REQUIREMENTS_FILE}"
requirements="$(cd "$(dirname "${2:?usage}")" && pwd)/$(basename "$2")"
torch_spec="torch==2.13.0"
key="$( { "$SERVER_PYTHON" --version; echo "$torch_spec"; cat "$requirements"; } | sha256sum | cut -c1-12)"
venv="$MEMEX_HOME/aux-venv/$name-$key"
pip_quiet() { "$@" 2> >(grep -v "is ignored: it is neither" >&2); }

if [ ! -f "$venv/.memex-complete" ]; then
    log "building the $name venv at $venv (done once per requirements)"
    rm -rf "$venv"
    mkdir -p "$(dirname "$venv")"
    "$SERVER_PYTHON" -m venv "$venv"
    pip_quiet "$venv/bin/pip" install -q --upgrade pip
    # torch first and alone: any other spec pulls GBs of CUDA wheels.
    pip_quiet "$venv/bin/pip" install -q ${TORCH_INDEX_URL:+--index-url "$TORCH_INDEX_URL"} "$torch_spec"
    pip_quiet "$venv/bin/pip" install -q -r "$requirements"
    touch "$venv/.memex-complete"
fi
ln -sfn "$name-$key" "$MEMEX_HOME/aux-venv/$name.tmp" && mv -T "$MEMEX_HOME/aux-venv/$name.tmp" "$MEMEX_HOME/aux-venv/$name"
echo "$venv"
