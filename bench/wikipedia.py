"""The real-text corpus for latency at scale: 150,000 English Wikipedia paragraphs
(../shared/datasets/wikipedia-en-paragraphs/corpus.jsonl, or $MEMEX_WIKIPEDIA), and
natural-language queries of 5 to 20 words cut from paragraphs that are never loaded (the file's
last 10,000), the same every run (seeded).
"""

from __future__ import annotations

import json
import os
import random
from pathlib import Path
from typing import Any

DEFAULT_PATH = (
    Path(__file__).resolve().parents[2] / "shared/datasets/wikipedia-en-paragraphs/corpus.jsonl"
)
HELD_OUT = 10_000


class Corpus:
    def __init__(self, path: str | None = None, seed: int = 7):
        source = Path(path or os.environ.get("MEMEX_WIKIPEDIA") or DEFAULT_PATH)
        if not source.is_file():
            raise SystemExit(f"{source} is missing: pass --wikipedia PATH or set MEMEX_WIKIPEDIA")
        rows = [json.loads(line) for line in source.read_text(encoding="utf-8").splitlines()]
        self.passages = [(str(r["title"]), str(r["text"])) for r in rows[:-HELD_OUT]]
        self.held_out = [str(r["text"]) for r in rows[-HELD_OUT:]]
        self.seed = seed

    def __len__(self) -> int:
        return len(self.passages)

    def document(self, i: int) -> str:
        return self.passages[i][1]

    def title(self, i: int) -> str:
        return self.passages[i][0]

    def query(self, i: int) -> str:
        """Query i: 5 to 20 consecutive words of a held-out paragraph."""
        rng = random.Random(self.seed * 1_000_003 + i)
        while True:
            words = self.held_out[rng.randrange(len(self.held_out))].split()
            if len(words) >= 5:
                break
        size = rng.randint(5, min(20, len(words)))
        start = rng.randrange(len(words) - size + 1)
        return " ".join(words[start : start + size])


def load(conn: Any, tenant: str, first: int, count: int, corpus: Corpus, prefix: str) -> None:
    """Paragraphs first..first+count-1 as documents of `tenant` (with their article's title),
    5,000 per transaction, with ANALYZE in between (as bench/synthetic.py)."""
    if first + count > len(corpus):
        raise SystemExit(f"the corpus has {len(corpus)} paragraphs to load, not {first + count}")
    for lo in range(first, first + count, 5000):
        hi = min(lo + 5000, first + count)
        with conn.transaction():
            conn.execute("select memex.set_tenant(%s)", (tenant,))
            conn.execute(
                "select count(memex.upsert_document(u, t, h))"
                " from unnest(%s::text[], %s::text[], %s::text[]) as x (u, t, h)",
                (
                    [f"{prefix}/{i}" for i in range(lo, hi)],
                    [corpus.document(i) for i in range(lo, hi)],
                    [corpus.title(i) for i in range(lo, hi)],
                ),
            )
        conn.execute("analyze memex.documents, memex.chunks, memex.text_postings")
