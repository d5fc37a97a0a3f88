"""Okapi BM25 over memex's text index, vectorised with numpy (no database access here).

The variant is Lucene's (since Lucene 8, also bm25s's default `method="lucene"`):

    idf(t)      = ln(1 + (N - df(t) + 0.5) / (df(t) + 0.5))
    score(d, q) = sum over the query's terms t of
                  qtf(t) * idf(t) * tf(t, d) / (tf(t, d) + k1 * (1 - b + b * len(d) / avgdl))

N is the tenant's chunk count in the language, df(t) how many of them hold t, len(d) the number
of lexeme occurrences of chunk d and avgdl their mean; qtf(t) counts t in the query (a word
repeated in a long query weighs more, as in Lucene's and Anserini's bag-of-words queries). This
idf is never negative, unlike Robertson's original, so a word in most chunks still counts a
little instead of pushing its chunks down.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from memex_db.errors import InvalidParameter

DEFAULT_K1 = 0.9
DEFAULT_B = 0.4
MAX_K1 = 10.0

# websearch_to_tsquery's syntax: "a phrase", -word, -"a phrase"; `or` is an operator there and
# means nothing here (every word is OR-ed anyway).
_TOKEN = re.compile(r'(-?)"([^"]*)(?:"|$)|(\S+)')
# A longer query is a passage (more like this), not something typed in a search box: its quotes
# and dashes are text ("-glaciers" in a bulleted list is no exclusion).
MAX_OPERATOR_WORDS = 32


@dataclass(frozen=True)
class Params:
    k1: float = DEFAULT_K1
    b: float = DEFAULT_B

    @staticmethod
    def checked(k1: float | None, b: float | None) -> Params:
        k1 = DEFAULT_K1 if k1 is None else float(k1)
        b = DEFAULT_B if b is None else float(b)
        if not (0.0 <= k1 <= MAX_K1) or math.isnan(k1):
            raise InvalidParameter(f"bm25_k1 must be between 0 and {MAX_K1:g}, not {k1:g}")
        if not (0.0 <= b <= 1.0) or math.isnan(b):
            raise InvalidParameter(f"bm25_b must be between 0 and 1, not {b:g}")
        return Params(k1, b)


@dataclass(frozen=True)
class TextQuery:
    """A query split the way websearch_to_tsquery reads it: the words that score (everything
    but exclusions, phrase words included), phrases that must appear, and words or phrases that
    must not."""

    words: str
    phrases: tuple[str, ...]
    excluded: tuple[str, ...]


def parse_query(query: str) -> TextQuery:
    if len(query.split()) > MAX_OPERATOR_WORDS:
        return TextQuery(query, (), ())
    words: list[str] = []
    phrases: list[str] = []
    excluded: list[str] = []
    for match in _TOKEN.finditer(query):
        negated, quoted, bare = match.group(1), match.group(2), match.group(3)
        if quoted is not None:
            if not quoted.strip():
                continue
            if negated:
                excluded.append(quoted)
            else:
                phrases.append(quoted)
                words.append(quoted)
        elif bare.lower() == "or" or bare == "-":
            continue
        elif bare.startswith("-") and len(bare) > 1:
            excluded.append(bare[1:])
        else:
            words.append(bare)
    return TextQuery(" ".join(words), tuple(phrases), tuple(excluded))


@dataclass
class Postings:
    """One lexeme's postings (text versions, term frequencies, chunk lengths) and its df."""

    docids: np.ndarray[Any, Any]
    tfs: np.ndarray[Any, Any]
    lengths: np.ndarray[Any, Any]
    df: int


@dataclass
class Index:
    """What the blocks of a query's lexemes say: postings per lexeme, and the totals."""

    postings: dict[str, Postings]
    chunks: int
    tokens: int

    @property
    def avgdl(self) -> float:
        return self.tokens / self.chunks if self.chunks > 0 else 0.0


def _concat(parts: list[bytes], dtype: str) -> np.ndarray[Any, Any]:
    data = parts[0] if len(parts) == 1 else b"".join(parts)
    return np.frombuffer(data, dtype=dtype)


def decode(blocks: Iterable[Mapping[str, Any]]) -> Index:
    """Blocks (rows of memex.text_postings, any order) as one Index. Statistics are summed over
    every block of a lexeme; arrays are concatenated in block order."""
    grouped: dict[str, list[Mapping[str, Any]]] = {}
    for row in sorted(blocks, key=lambda r: (r["lexeme"], r["block"])):
        grouped.setdefault(row["lexeme"], []).append(row)
    totals = grouped.pop("", [])
    postings = {}
    for lexeme, rows in grouped.items():
        parts = [r for r in rows if r["postings"]]
        df = sum(int(r["df"]) for r in rows)
        if not parts:
            postings[lexeme] = Postings(np.empty(0), np.empty(0), np.empty(0), df=df)
            continue
        postings[lexeme] = Postings(
            docids=_concat([bytes(r["docids"]) for r in parts], ">i8"),
            tfs=_concat([bytes(r["tfs"]) for r in parts], ">i2"),
            lengths=_concat([bytes(r["lengths"]) for r in parts], ">i2"),
            df=df,
        )
    return Index(
        postings,
        chunks=sum(int(r["df"]) for r in totals),
        tokens=sum(int(r["tokens"]) for r in totals),
    )


def idf(chunks: int, df: int) -> float:
    return math.log(1.0 + (chunks - df + 0.5) / (df + 0.5))


def score(
    terms: Mapping[str, int], index: Index, params: Params
) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    """(text versions, scores) of every chunk version holding at least one of the terms, sorted
    by text version. All terms' postings are scored in one pass, then summed per version in
    lexeme order (a stable sort keeps it), so a chunk's score is the same float whatever the
    block layout. (MaxScore pruning was measured slower at 100k chunks: docs/search.md.)"""
    present = [
        (lexeme, found)
        for lexeme in sorted(terms)
        if (found := index.postings.get(lexeme)) is not None
        and found.df > 0 and len(found.docids)
    ]  # fmt: skip
    avgdl = index.avgdl
    if not present or avgdl <= 0:
        return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float64)
    ids = np.concatenate([p.docids for _l, p in present]).astype(np.int64)
    tfs = np.concatenate([p.tfs for _l, p in present]).astype(np.float64)
    lengths = np.concatenate([p.lengths for _l, p in present]).astype(np.float64)
    weights = np.repeat(
        [terms[lexeme] * idf(index.chunks, p.df) for lexeme, p in present],
        [len(p.docids) for _l, p in present],
    )
    norm = params.k1 * (1.0 - params.b + params.b * lengths / avgdl)
    contributions = weights * tfs / (tfs + norm)
    order = np.argsort(ids, kind="stable")
    ids = ids[order]
    first = np.empty(len(ids), dtype=bool)
    first[0] = True
    np.not_equal(ids[1:], ids[:-1], out=first[1:])
    starts = np.flatnonzero(first)
    return ids[starts], np.add.reduceat(contributions[order], starts)


def ranked(docids: np.ndarray[Any, Any], scores: np.ndarray[Any, Any], limit: int) -> Sequence[int]:
    """Positions of the best `limit` scores (ties: every tied score at the cut is kept), in
    order of score descending, then text version ascending (deterministic)."""
    count = len(scores)
    if count > limit:
        kth = np.partition(scores, count - limit)[count - limit]
        chosen = np.nonzero(scores >= kth)[0]
    else:
        chosen = np.arange(count)
    order = np.lexsort((docids[chosen], -scores[chosen]))
    return [int(i) for i in chosen[order]]


def lookup_many(
    docids: np.ndarray[Any, Any], scores: np.ndarray[Any, Any], wanted: np.ndarray[Any, Any]
) -> np.ndarray[Any, Any]:
    """The scores of the wanted text versions (0 for one holding none of the terms)."""
    if not len(docids):
        return np.zeros(len(wanted), dtype=np.float64)
    at = np.minimum(np.searchsorted(docids, wanted), len(docids) - 1)
    return np.where(docids[at] == wanted, scores[at], 0.0)
