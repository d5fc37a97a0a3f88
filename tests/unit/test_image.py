"""The image cannot be built here: keep its steps shared with make setup, and test that."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_dockerfile_builds_the_server_venv_with_the_setup_script() -> None:
    dockerfile = (ROOT / "Dockerfile.postgres").read_text()
    assert "ARG PG_MAJOR=17" in dockerfile
    assert "FROM postgres:${PG_MAJOR}-bookworm" in dockerfile
    assert "installer/setup/server-venv.sh" in dockerfile
    assert "docker-entrypoint-initdb.d" in dockerfile
    makefile = (ROOT / "Makefile").read_text()
    assert "server-venv.sh plpython" in makefile


def test_compose_has_a_volume_a_healthcheck_and_adminer() -> None:
    compose = (ROOT / "docker-compose.yml").read_text()
    for needle in ("Dockerfile.postgres", "healthcheck", "pg_isready", "adminer", "volumes:"):
        assert needle in compose


def test_compose_publishes_on_loopback_only_and_commits_no_password() -> None:
    """The server runs plpython3u: nothing on 0.0.0.0, passwords from a git-ignored .env."""
    import yaml

    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    for name, service in compose["services"].items():
        for port in service.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), (name, port)
    env = compose["services"]["db"]["environment"]
    for key in ("POSTGRES_PASSWORD", "MEMEX_APP_PASSWORD"):
        assert env[key].startswith(f"${{{key}:?"), key  # required, from the environment / .env
    assert ".env" in (ROOT / ".gitignore").read_text().splitlines()
    example = (ROOT / ".env.example").read_text()
    assert "POSTGRES_PASSWORD=\n" in example and "MEMEX_APP_PASSWORD=\n" in example


@pytest.mark.skipif(shutil.which("docker") is None, reason="no docker client")
def test_image_build_says_clearly_when_no_engine_runs() -> None:
    if subprocess.run(["docker", "info"], capture_output=True).returncode == 0:
        pytest.skip("a Docker engine is reachable here")
    result = subprocess.run(
        [str(ROOT / ".venv/bin/memex"), "image", "build"], capture_output=True, text=True
    )
    assert result.returncode == 1
    assert "no Docker engine is reachable" in result.stderr
