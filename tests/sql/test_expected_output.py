"""Each tests/sql/NAME.sql runs through psql against a fresh clone of the installed template, as
pgvector's test/sql does with pg_regress: statements echoed, errors with their SQLSTATE and
hint, no CONTEXT lines. The output must equal tests/sql/expected/NAME.out. A missing expected
file is written from this run and the test fails: review it, then commit it."""

from __future__ import annotations

import difflib
import subprocess
from pathlib import Path

import pytest

from memex.devcluster import pg_bindir

HERE = Path(__file__).parent
SCRIPTS = sorted(HERE.glob("*.sql"))


def _psql_output(dsn: str, script: Path) -> str:
    with script.open() as source:
        ran = subprocess.run(
            [str(pg_bindir() / "psql"), "-X", "-a", "-q", "--no-psqlrc",
             "-v", "VERBOSITY=verbose", "-v", "SHOW_CONTEXT=never", "-d", dsn],
            stdin=source, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            timeout=300,
        )  # fmt: skip
    # LOCATION names a line of PostgreSQL's C source: not memex's behaviour
    return "".join(
        line for line in ran.stdout.splitlines(keepends=True) if not line.startswith("LOCATION:")
    )


@pytest.mark.parametrize("script", SCRIPTS, ids=[s.stem for s in SCRIPTS])
def test_psql_output_matches_the_expected_file(db: str, script: Path) -> None:
    actual = _psql_output(db, script)
    expected_file = HERE / "expected" / f"{script.stem}.out"
    if not expected_file.exists():
        expected_file.write_text(actual)
        pytest.fail(f"{expected_file} written from this run: review it, then commit it")
    diff = list(difflib.unified_diff(
        expected_file.read_text().splitlines(), actual.splitlines(),
        f"expected/{script.stem}.out", "this run", lineterm="",
    ))  # fmt: skip
    assert not diff, "\n".join(diff)


def test_there_are_scripts_to_run() -> None:
    assert {s.stem for s in SCRIPTS} >= {"rag_search", "compose_context", "upserts"}
