#!/usr/bin/env bash
# int8 runtime vs fp32 retrieval quality with `memex eval` on a development dataset (DATASET:
# nfcorpus, the default, or arguana), in a scratch database memex_int8 of the dev cluster
# (NFCorpus: about 40 minutes of a slow day of this host, two embeddings of 8,347 chunks).
set -euxo pipefail
DATASET="${DATASET:-nfcorpus}"
cd "$(dirname "$0")/.."
S='postgresql://postgres@%2Fvar%2Flib%2Fmemex%2Fclusters%2Fpg15-dev%2Frun:5439/memex_int8'
P='postgresql://postgres@%2Fvar%2Flib%2Fmemex%2Fclusters%2Fpg15-dev%2Frun:5439/postgres'
psql "$P" -c 'drop database if exists memex_int8' -c 'create database memex_int8'
.venv/bin/memex install --dsn "$S"
date
.venv/bin/memex eval ../shared/datasets/$DATASET --dsn "$S" --keep --compare vector
date
psql "$S" -c "select memex.create_space('mini-int8', 'all-MiniLM-L6-v2', options => '{\"runtime\": \"onnx-int8\"}')"
time psql "$S" -c "call memex.embed_pending('mini-int8')"
date
.venv/bin/memex eval ../shared/datasets/$DATASET --dsn "$S" --keep --json "${JSON:-/tmp/int8_$DATASET.json}" --compare vector vector,space=mini-int8 hybrid hybrid,space=mini-int8
date
