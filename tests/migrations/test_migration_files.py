"""Released migration files are frozen by hash; names follow the convention."""

from __future__ import annotations

from memex.migrate import (
    MIGRATION_NAME,
    SQL_NAME,
    file_sha256,
    migration_files,
    released_hashes,
    sql_files,
)
from memex.paths import migrations_dir


def test_migration_names() -> None:
    files = migration_files()
    assert files, "no migrations found"
    for path in files:
        assert MIGRATION_NAME.match(path.name), f"{path.name}: expected NNNN_snake_name.sql"
    numbers = [int(p.name[:4]) for p in files if not p.name.endswith(".rollback.sql")]
    assert len(numbers) == len(set(numbers)), "two migrations share a number"
    # yoyo applies them in name order: the numbers run 1, 2, 3... with no gap, so a migration
    # added on a branch cannot slot in before one that is already released
    assert sorted(numbers) == list(range(1, len(numbers) + 1)), f"numbers with a gap: {numbers}"


def test_rollbacks_pair_with_a_migration() -> None:
    names = {p.name for p in migration_files()}
    for name in names:
        if name.endswith(".rollback.sql"):
            assert name.replace(".rollback.sql", ".sql") in names


def test_sql_dir_names() -> None:
    for path in sql_files():
        assert SQL_NAME.match(path.name), f"{path.name}: expected NNN-topic.sql"


def test_every_migration_is_released_and_frozen() -> None:
    released = released_hashes()
    for path in migration_files():
        assert path.name in released, (
            f"{path.name} is not in migrations/RELEASED: add its sha256 when you release it"
        )
        assert file_sha256(path) == released[path.name], (
            f"{path.name} was edited after release: write a new migration instead"
        )
    for name in released:
        assert (migrations_dir() / name).exists(), f"released migration {name} was deleted"
