"""A synthetic corpus with topical structure, the same every run (seeded).

Real corpora cluster by subject; uniformly random or near-identical texts do not, and HNSW
recall measured on them says nothing about real use. Here every document is drawn mostly from
the words of one of `topics` subjects (a Zipf-like pick, so some words dominate), plus some words
from anywhere; a query is a few words of one subject. The vocabulary is bench/words.txt (English
and French words from memex's own docs and samples, frozen so that figures stay comparable).
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

VOCABULARY = Path(__file__).with_name("words.txt").read_text().split()


class Corpus:
    def __init__(self, topics: int = 200, topic_words: int = 30, seed: int = 7):
        self._rng = random.Random(seed)
        self.topics = [self._rng.sample(VOCABULARY, topic_words) for _ in range(topics)]

    def _words(self, rng: random.Random, topic: list[str], count: int, on_topic: float) -> str:
        words = []
        for _ in range(count):
            if rng.random() < on_topic:  # Zipf-like: the topic's first words come up most
                words.append(topic[min(len(topic) - 1, int(rng.paretovariate(1.2)) - 1)])
            else:
                words.append(rng.choice(VOCABULARY))
        return " ".join(words)

    def document(self, i: int) -> str:
        """Document i: 20-60 words, 70% from its topic. Deterministic in i."""
        rng = random.Random(i)
        topic = self.topics[i % len(self.topics)]
        return self._words(rng, topic, rng.randint(20, 60), 0.7)

    def query(self, i: int) -> str:
        """Query i: 4-8 words, 80% from one topic; not a copy of any document."""
        rng = random.Random(-1 - i)
        topic = self.topics[rng.randrange(len(self.topics))]
        return self._words(rng, topic, rng.randint(4, 8), 0.8)


def load(conn: Any, tenant: str, first: int, count: int, corpus: Corpus, prefix: str) -> None:
    """Documents first..first+count-1 of `corpus` as one-chunk documents of `tenant`, 5,000 per
    transaction, with ANALYZE in between: plans cached by upsert_document while the tables
    were small would otherwise stay sequential scans for the whole load (quadratic)."""
    for lo in range(first, first + count, 5000):
        hi = min(lo + 5000, first + count)
        with conn.transaction():
            conn.execute("select memex.set_tenant(%s)", (tenant,))
            conn.execute(
                "select count(memex.upsert_document(u, t))"
                " from unnest(%s::text[], %s::text[]) as x (u, t)",
                (
                    [f"{prefix}/{i}" for i in range(lo, hi)],
                    [corpus.document(i) for i in range(lo, hi)],
                ),
            )
        conn.execute("analyze memex.documents, memex.chunks")
