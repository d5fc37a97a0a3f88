"""`memex demo`: the sample corpus in tenant `demo`, hybrid searches with each leg's rank."""

from __future__ import annotations

import psycopg
import pytest

from memex.cli import main
from memex.paths import samples_dir


def test_demo_searches_the_sample_corpus_and_a_second_run_changes_nothing(
    db: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["demo", "--dsn", db]) == 0
    out = capsys.readouterr().out
    queries = (samples_dir() / "queries.txt").read_text().splitlines()
    assert out.count("query: ") == len(queries)
    assert "vector #" in out and "text #" in out
    assert "Rotating signing keys" in out.split("query: ")[1], "the first query's answer"
    with psycopg.connect(db) as conn:
        before = conn.execute(
            "select count(*), max(xmin::text::bigint) from memex.chunks"
        ).fetchone()
    assert main(["demo", "--dsn", db]) == 0
    with psycopg.connect(db) as conn:
        assert (
            conn.execute("select count(*), max(xmin::text::bigint) from memex.chunks").fetchone()
            == before
        )
    capsys.readouterr()
