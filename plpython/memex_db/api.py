"""What the SQL functions do, one Python function each (called through entry.call)."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from typing import Any

from memex_db import __version__, chunking, models, payloads, probe, settings
from memex_db.environment import process_rss_mb
from memex_db.errors import InvalidParameter
from memex_db.plpy_types import GD, Plpy


def _model_for_space(space: str | None) -> str:
    # Spaces (memex.spaces) arrive with the embedding engine; until then only the default.
    if space is not None:
        raise InvalidParameter(
            f"unknown embedding space {space!r}", hint="leave space null for the default space"
        )
    return models.DEFAULT_MODEL


def embed(plpy: Plpy, gd: GD, text: str | None, space: str | None) -> list[float] | None:
    if text is None:
        return None
    conf = settings.read(plpy)
    loaded = models.load(
        gd, _model_for_space(space), conf.threads, conf.memory_budget_mb, conf.runtime
    )
    return loaded.encoder.encode([text], conf.batch_size)[0]


def chunk_text(
    plpy: Plpy,
    gd: GD,
    text: str | None,
    max_tokens: int | None,
    overlap: int | None,
    space: str | None,
) -> Iterator[tuple[int, str, int]]:
    if text is None:
        return iter(())
    tokenizer, cap = chunking.load_tokenizer(gd, _model_for_space(space))
    return chunking.chunk(tokenizer, cap, text, max_tokens, overlap)


def check_messages(plpy: Plpy, gd: GD, messages: str) -> str:
    return json.dumps(payloads.check_messages(messages))


def check_artefact(plpy: Plpy, gd: GD, artefact: str, conversation_slug: str | None) -> str:
    return json.dumps(payloads.check_artefact(artefact, conversation_slug))


def python_check(plpy: Plpy, gd: GD) -> list[tuple[str, bool, str]]:
    home = gd.get("memex_paths", {}).get("home") or os.environ.get("MEMEX_HOME", "/var/lib/memex")
    pins = probe.pinned_requirements()
    checks = probe.run(home, __version__, pins, deep=True)
    try:
        path = models.bundled_model_path()
        checks.append({"name": "bundled model", "ok": True, "detail": path})
    except Exception as exc:
        checks.append({"name": "bundled model", "ok": False, "detail": str(exc)})
    return [(c["name"], bool(c["ok"]), str(c["detail"])) for c in checks]


def status(plpy: Plpy, gd: GD) -> str:
    loaded: dict[str, models.LoadedModel] = gd.get("memex_models", {})
    report: dict[str, Any] = {
        "memex_db_version": __version__,
        "python": sys.version.split()[0],
        "backend_pid": os.getpid(),
        "backend_rss_mb": round(process_rss_mb(), 1),
        "paths": gd.get("memex_paths", {}),
        "loaded_models": [m.describe() for m in loaded.values()],
    }
    return json.dumps(report)
