"""docs/getting-started.md is a transcript: every `$ memex ...` command in its console blocks is
run again, on a copy of docs/getting-started/, and every output line the page shows must still
appear, in that order (… stands for what changes between runs), with the exit status it shows
(`[exit N]`, else 0)."""

from __future__ import annotations

import re
import shlex
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from memex.cli import main

DOCS = Path(__file__).resolve().parents[2] / "docs"
PAGE = DOCS / "getting-started.md"


@dataclass
class Step:
    command: str
    expected: list[str] = field(default_factory=list)
    exit_code: int = 0


def transcript(text: str) -> list[Step]:
    steps: list[Step] = []
    for block in re.findall(r"```console\n(.*?)```", text, re.DOTALL):
        for line in block.splitlines():
            if line.startswith("$ "):
                steps.append(Step(line[2:]))
            elif (found := re.fullmatch(r"\[exit (\d+)\]", line.strip())) is not None:
                steps[-1].exit_code = int(found[1])
            elif line.strip():
                steps[-1].expected.append(line.rstrip())
    return steps


def _pattern(expected: str) -> re.Pattern[str]:
    return re.compile(".*".join(re.escape(part) for part in expected.split("…")))


def assert_shown_in_order(expected: list[str], printed: list[str], command: str) -> None:
    position = 0
    for line in expected:
        pattern = _pattern(line)
        while position < len(printed) and not pattern.fullmatch(printed[position]):
            position += 1
        assert position < len(printed), (
            f"`{command}` no longer prints {line!r} (after the lines before it);"
            f" it printed:\n" + "\n".join(printed)
        )
        position += 1


def test_the_page_has_a_transcript() -> None:
    steps = transcript(PAGE.read_text())
    assert len(steps) >= 5
    assert any("ingest" in s.command for s in steps) and any(s.exit_code for s in steps)


def test_the_getting_started_transcript_still_holds(
    db: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    shutil.copytree(DOCS / "getting-started", tmp_path / "example")
    monkeypatch.chdir(tmp_path / "example")
    monkeypatch.setenv("MEMEX_DSN", db)
    monkeypatch.setenv("PGTZ", "UTC")  # times print in the session's time zone
    for step in transcript(PAGE.read_text()):
        words = shlex.split(step.command)
        assert words[0] == "memex", step.command
        code = main(words[1:])
        out, err = capsys.readouterr()
        printed = [line.rstrip() for line in (out + err).splitlines()]
        assert code == step.exit_code, (step.command, out, err)
        assert_shown_in_order(step.expected, printed, step.command)
