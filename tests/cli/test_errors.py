"""What the CLI says when something is wrong: one message for people, and the exit status that
tells bad input (1) from a failing system (2)."""

from __future__ import annotations

import pytest

from memex.cli import main
from memex.errors import database_error_exit_code


def test_bad_input_is_one_message_without_plpgsql_context(
    db: str, capsys: pytest.CaptureFixture[str]
) -> None:
    main(["ingest", "--dsn", db, "--tenant", "acme", "--create-tenant", "/dev/null"])  # creates it
    capsys.readouterr()
    assert main(["search", "--dsn", db, "--tenant", "acme", "   "]) == 1
    err = capsys.readouterr().err
    assert err == "memex: database error [22023]: the search query is empty\n"


def test_an_unknown_tenant_names_the_nearest_ones(
    db: str, capsys: pytest.CaptureFixture[str]
) -> None:
    main(["ingest", "--dsn", db, "--tenant", "acme-prod", "--create-tenant", "/dev/null"])
    capsys.readouterr()
    assert main(["search", "--dsn", db, "--tenant", "acme-prd", "keys"]) == 1
    err = capsys.readouterr().err
    assert "unknown tenant 'acme-prd': did you mean 'acme-prod'?" in err
    assert "create" not in err, "a typo gets the likely fix only, not the mistyped name created"


@pytest.mark.parametrize(
    ("sqlstate", "code"),
    [("22023", 1), ("P0002", 1), ("54000", 1), ("42883", 1), ("08006", 2), ("53200", 2),
     ("57014", 2), ("XX000", 2), (None, 2)],
)  # fmt: skip
def test_exit_status_tells_bad_input_from_system_failure(sqlstate: str | None, code: int) -> None:
    assert database_error_exit_code(sqlstate) == code
