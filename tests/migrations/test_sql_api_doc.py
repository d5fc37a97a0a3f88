"""docs/sql-api.md is what the installed catalog says: regenerated from a fresh install and
compared, so a changed signature, comment or grant without the regenerated page fails here."""

from __future__ import annotations

from pathlib import Path

from memex.sql_api import render

DOC = Path(__file__).resolve().parents[2] / "docs" / "sql-api.md"


def test_the_sql_api_reference_matches_the_catalog(db: str) -> None:
    assert DOC.read_text() == render(db), (
        "docs/sql-api.md is out of date: run `.venv/bin/python -m memex.sql_api --out "
        "docs/sql-api.md` (against a database with this memex installed) and commit it"
    )
