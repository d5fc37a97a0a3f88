"""`memex image build`: docker build of Dockerfile.postgres; says so when no engine runs."""

from __future__ import annotations

import shutil
import subprocess

from memex.errors import MemexError
from memex.paths import _REPO_ROOT


def build(pg_major: str, tag: str) -> int:
    if shutil.which("docker") is None:
        raise MemexError("the docker client is not installed; install Docker to build the image")
    probe = subprocess.run(["docker", "info"], capture_output=True, text=True)
    if probe.returncode != 0:
        raise MemexError(
            "no Docker engine is reachable (`docker info` failed), so the image cannot be built "
            "here.\nFix: start a Docker daemon (or point DOCKER_HOST at one) and run again; "
            "without Docker, `make setup` + `memex dev up` give the same database locally."
        )
    dockerfile = _REPO_ROOT / "Dockerfile.postgres"
    return subprocess.call(
        ["docker", "build", "-f", str(dockerfile), "--build-arg", f"PG_MAJOR={pg_major}",
         "-t", tag, str(_REPO_ROOT)]
    )  # fmt: skip
