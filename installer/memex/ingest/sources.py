"""Which files an ingest covers, and the uri and folder each one is stored under.

A directory argument contributes every file below it (hidden files and directories excluded),
in sorted order, under `<directory name>/<relative path>`; a file argument contributes itself
under its own name. The uri stays the same whatever the working directory, so re-ingesting
the same tree updates rather than duplicates.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from memex.errors import MemexError
from memex.ingest.documents import MIME_BY_SUFFIX

SUPPORTED_SUFFIXES = {*MIME_BY_SUFFIX, ".json"}


@dataclass(frozen=True)
class SourceFile:
    path: Path
    uri: str
    folder: str | None
    explicit: bool  # named on the command line (so an unsupported type is an error, not a skip)

    @property
    def supported(self) -> bool:
        return self.path.suffix.lower() in SUPPORTED_SUFFIXES


def _is_hidden(relative: PurePosixPath) -> bool:
    return any(part.startswith(".") for part in relative.parts)


def discover(arguments: list[str], uri_prefix: str = "") -> list[SourceFile]:
    found: dict[Path, SourceFile] = {}
    for argument in arguments:
        path = Path(argument)
        if not path.exists():
            raise MemexError(f"no such file or directory: {argument}")
        if path.is_file():
            found.setdefault(path.resolve(), SourceFile(path, uri_prefix + path.name, None, True))
            continue
        root_name = path.resolve().name or "root"
        for file in sorted(p for p in path.rglob("*") if p.is_file()):
            relative = PurePosixPath(file.relative_to(path).as_posix())
            if _is_hidden(relative):
                continue
            parent = PurePosixPath(root_name) / relative.parent
            found.setdefault(
                file.resolve(),
                SourceFile(
                    file, f"{uri_prefix}{root_name}/{relative}", uri_prefix + str(parent), False
                ),
            )
    return list(found.values())
