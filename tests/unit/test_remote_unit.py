"""memex_db.remote without a server: option checks, the rate limit's spacing, the key file."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from memex_db import remote
from memex_db.errors import InvalidParameter


def test_options_are_checked_by_name_and_range() -> None:
    assert remote.check_options({"batch_size": 16, "retries": 0}) == {
        "batch_size": 16,
        "retries": 0,
    }
    for bad in ({"batch_size": 0}, {"concurrency": 65}, {"timeout_s": "30"}, {"retries": True}):
        with pytest.raises(InvalidParameter, match="must be an integer"):
            remote.check_options(bad)
    with pytest.raises(InvalidParameter, match="unknown endpoint options: colour"):
        remote.check_options({"colour": 1})


def test_rate_limit_spaces_request_starts_evenly(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [100.0]
    starts: list[float] = []

    def sleep(seconds: float) -> None:
        now[0] += seconds

    monkeypatch.setattr(remote.time, "sleep", sleep)
    limit = remote.RateLimit(120, clock=lambda: now[0])  # one start every 0.5 s
    for _ in range(3):
        limit.wait()
        starts.append(now[0])
    assert starts == [100.0, 100.5, 101.0]
    now[0] = 200.0  # idle for a while: the next start is not held back
    limit.wait()
    assert now[0] == 200.0
    remote.RateLimit(0).wait()  # no limit


def test_token_budget_sends_at_most_a_minutes_tokens(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [100.0]

    def sleep(seconds: float) -> None:
        now[0] += seconds

    monkeypatch.setattr(remote.time, "sleep", sleep)
    budget = remote.TokenBudget(600, clock=lambda: now[0])  # 10 tokens a second
    budget.take(600)  # a full minute's worth at once: the bucket starts full
    assert now[0] == 100.0
    budget.take(50)  # then 50 more tokens need 5 s of refill
    assert now[0] == pytest.approx(105.0)
    now[0] += 60  # idle: the bucket refills to one minute, no more
    budget.take(600)
    assert now[0] == pytest.approx(165.0)
    budget.take(5000)  # larger than the bucket: waits for a full one and empties it
    assert now[0] == pytest.approx(225.0)
    remote.TokenBudget(0).take(10**9)  # no limit


def test_the_key_file_is_private_and_an_empty_key_removes_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # a backend's working directory is the data directory
    monkeypatch.delenv("MEMEX_ENDPOINT_KEY_MY_EP", raising=False)
    assert remote.store_key("my-ep", "sk-1") is True
    path = tmp_path / remote.KEY_DIR / "my-ep"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert remote.api_key("my-ep") == "sk-1"
    monkeypatch.setenv("MEMEX_ENDPOINT_KEY_MY_EP", "sk-env")  # the environment wins
    assert remote.api_key("my-ep") == "sk-env"
    monkeypatch.delenv("MEMEX_ENDPOINT_KEY_MY_EP")
    assert remote.store_key("my-ep", "") is False
    assert not path.exists() and remote.api_key("my-ep") is None
    assert not any(name.endswith(".tmp") for name in os.listdir(path.parent))


def test_an_endpoint_row_changes_its_cache_key_and_signature() -> None:
    row = {"name": "e", "url": "http://h:1/v1", "model": "m", "options": '{"batch_size": 8}'}
    first = remote.Endpoint.from_row(row)
    moved = remote.Endpoint.from_row({**row, "url": "http://h:2/v1"})
    resized = remote.Endpoint.from_row({**row, "options": {"batch_size": 16}})
    assert first.embeddings_url == "http://h:1/v1/embeddings"
    assert len({first.cache_key(), moved.cache_key(), resized.cache_key()}) == 3
    assert first.signature() == resized.signature() != moved.signature()


def test_messages_show_an_endpoint_url_without_its_secrets() -> None:
    """An endpoint created before create_endpoint refused credentials may still hold some."""
    assert remote.redacted("https://u:pw@h.example/v1/embeddings?api_key=k#x") == (
        "https://h.example/v1/embeddings"
    )
    assert remote.redacted("http://127.0.0.1:7997/v1/embeddings") == (
        "http://127.0.0.1:7997/v1/embeddings"
    )
