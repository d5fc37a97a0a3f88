"""memex_db.bm25 without a database: query syntax, decoding blocks, scoring, ranking."""

from __future__ import annotations

import math
import struct

import numpy as np
import pytest

from memex_db import bm25
from memex_db.errors import InvalidParameter


def block(lexeme: str, block_id: int, docs: list[tuple[int, int, int]], df: int | None = None):
    """A memex.text_postings row: postings (text version, tf, length) as big-endian arrays."""
    return {
        "lexeme": lexeme, "block": block_id, "postings": len(docs),
        "df": len(docs) if df is None else df, "tokens": 0,
        "docids": b"".join(struct.pack(">q", d) for d, _, _ in docs),
        "tfs": b"".join(struct.pack(">h", tf) for _, tf, _ in docs),
        "lengths": b"".join(struct.pack(">h", n) for _, _, n in docs),
    }  # fmt: skip


def totals(block_id: int, chunks: int, tokens: int):
    return {"lexeme": "", "block": block_id, "postings": 0, "df": chunks, "tokens": tokens,
            "docids": b"", "tfs": b"", "lengths": b""}  # fmt: skip


def test_query_syntax_is_websearchs() -> None:
    parsed = bm25.parse_query('how do I "rotate keys" -aws or -"cloud kms" gcp')
    assert parsed.words == "how do I rotate keys gcp"
    assert parsed.phrases == ("rotate keys",)
    assert parsed.excluded == ("aws", "cloud kms")
    assert bm25.parse_query('an "unclosed phrase').phrases == ("unclosed phrase",)
    assert bm25.parse_query("well-known - dash").words == "well-known dash"


def test_a_long_query_is_a_passage_without_operators() -> None:
    passage = ('Consequences: -glaciers will melt, "sea levels" rise ' * 8).strip()
    parsed = bm25.parse_query(passage)
    assert parsed == bm25.TextQuery(passage, (), ())


def test_parameters_are_checked() -> None:
    assert bm25.Params.checked(None, None) == bm25.Params(bm25.DEFAULT_K1, bm25.DEFAULT_B)
    with pytest.raises(InvalidParameter, match="bm25_k1"):
        bm25.Params.checked(-0.1, None)
    with pytest.raises(InvalidParameter, match="bm25_b"):
        bm25.Params.checked(None, 1.5)
    with pytest.raises(InvalidParameter, match="bm25_b"):
        bm25.Params.checked(None, float("nan"))


def test_blocks_of_a_lexeme_add_up_and_scores_follow_the_formula() -> None:
    # chunks 1..4, lengths 4, 2, 1, 0; "b" in 1 (tf 2) and 2; a deletion left df(b) at 2.
    index = bm25.decode([
        block("b", 1, [(1, 2, 4)]), block("b", 5, [(2, 1, 2), (9, 1, 3)]),
        block("b", 6, [], df=-1), block("c", 2, [(1, 1, 4), (2, 1, 2)]),
        totals(3, 3, 6), totals(7, 1, 1),
    ])  # fmt: skip
    assert index.chunks == 4 and index.avgdl == pytest.approx(7 / 4)
    assert index.postings["b"].df == 2 and list(index.postings["b"].docids) == [1, 2, 9]
    params = bm25.Params(k1=0.9, b=0.4)
    docids, scores = bm25.score({"b": 1, "c": 2}, index, params)
    assert list(docids) == [1, 2, 9]

    def term(tf: int, length: int, df: int, qtf: int) -> float:
        idf = math.log(1 + (4 - df + 0.5) / (df + 0.5))
        return qtf * idf * tf / (tf + 0.9 * (1 - 0.4 + 0.4 * length / (7 / 4)))

    assert scores[0] == pytest.approx(term(2, 4, 2, 1) + term(1, 4, 2, 2), abs=1e-12)
    assert scores[1] == pytest.approx(term(1, 2, 2, 1) + term(1, 2, 2, 2), abs=1e-12)
    assert list(bm25.lookup_many(docids, scores, np.array([2, 5]))) == [scores[1], 0.0]


def test_unknown_words_and_an_empty_index_score_nothing() -> None:
    docids, scores = bm25.score({"x": 1}, bm25.decode([totals(1, 3, 9)]), bm25.Params())
    assert len(docids) == 0 and len(scores) == 0
    assert len(bm25.score({"x": 1}, bm25.decode([]), bm25.Params())[0]) == 0


def test_ranking_is_by_score_then_version_and_keeps_ties_at_the_cut() -> None:
    docids = np.array([10, 11, 12, 13])
    scores = np.array([0.5, 2.0, 0.5, 1.0])
    assert bm25.ranked(docids, scores, 4) == [1, 3, 0, 2]
    assert bm25.ranked(docids, scores, 3) == [1, 3, 0, 2], "the tie at the cut is kept"
    assert bm25.ranked(docids, scores, 1) == [1]
