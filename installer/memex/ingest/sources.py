"""Which files an ingest covers, and the uri and folder each one is stored under.

A file's uri is its path relative to the root (`--root`, by default the current directory),
whatever form the argument takes (`book`, `./book/`, `book/ch1.html`, an absolute path): the
same file always gets the same uri, alone or with its directory, so a re-ingest updates
instead of duplicating. Without `--root`, an argument outside the current directory is named
as before: a directory as `<its name>/<relative path>`, a file by its name.

A directory contributes every file below it in sorted order, except hidden files and
directories, files matching an `--exclude` pattern (matched against the path relative to the
root) and files matching the patterns of a `.memexignore` at the top of the directory
(relative to it). Both use gitignore's syntax (pathspec): `print.html` excludes that name at
any depth, `/drafts/` a top-level directory, `*.pdf` every PDF, `!keep.pdf` brings one back.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import pathspec

from memex.errors import MemexError
from memex.ingest.documents import MIME_BY_SUFFIX

SUPPORTED_SUFFIXES = {*MIME_BY_SUFFIX, ".json"}
IGNORE_FILE = ".memexignore"


@dataclass(frozen=True)
class SourceFile:
    path: Path
    uri: str
    folder: str | None
    explicit: bool  # named on the command line (so an unsupported type is an error, not a skip)

    @property
    def supported(self) -> bool:
        return self.path.suffix.lower() in SUPPORTED_SUFFIXES


def _absolute(path: Path) -> Path:
    """An absolute path with `.` and `..` resolved lexically (symlinks are not followed: a
    linked file is named where it is seen)."""
    return Path(os.path.abspath(path))


def _is_hidden(relative: PurePosixPath) -> bool:
    return any(part.startswith(".") for part in relative.parts)


def _spec(patterns: list[str]) -> pathspec.GitIgnoreSpec:
    return pathspec.GitIgnoreSpec.from_lines(patterns)


def _ignore_file(directory: Path) -> pathspec.GitIgnoreSpec | None:
    file = directory / IGNORE_FILE
    if not file.is_file():
        return None
    return _spec(file.read_text(encoding="utf-8").splitlines())


class _Namer:
    """uri and folder of a file, relative to the root."""

    def __init__(self, root: Path | None, uri_prefix: str):
        self.explicit_root = root is not None
        self.root = _absolute(root or Path.cwd())
        self.prefix = uri_prefix

    def relative(self, file: Path, argument: Path) -> PurePosixPath:
        absolute = _absolute(file)
        if absolute.is_relative_to(self.root):
            return PurePosixPath(absolute.relative_to(self.root).as_posix())
        if self.explicit_root:
            raise MemexError(f"{argument} is outside --root {self.root}")
        if argument.is_dir():  # outside the current directory: named by its own tree
            tree = _absolute(argument)
            return PurePosixPath(tree.name or "root") / absolute.relative_to(tree).as_posix()
        return PurePosixPath(absolute.name)

    def source(self, file: Path, relative: PurePosixPath, explicit: bool) -> SourceFile:
        parent = str(relative.parent)
        folder = None if parent == "." else self.prefix + parent
        return SourceFile(file, f"{self.prefix}{relative}", folder, explicit)


def discover(
    arguments: list[str],
    uri_prefix: str = "",
    *,
    root: str | None = None,
    excludes: list[str] | None = None,
) -> list[SourceFile]:
    namer = _Namer(Path(root) if root else None, uri_prefix)
    if root and not namer.root.is_dir():
        raise MemexError(f"--root {root} is not a directory")
    excluded = _spec(list(excludes or []))
    found: dict[Path, SourceFile] = {}
    for argument in arguments:
        path = Path(argument)
        if not path.exists():
            raise MemexError(f"no such file or directory: {argument}")
        if path.is_file():
            relative = namer.relative(path, path)
            if not excluded.match_file(str(relative)):
                found.setdefault(path.resolve(), namer.source(path, relative, True))
            continue
        ignored = _ignore_file(path)
        for file in sorted(p for p in path.rglob("*") if p.is_file()):
            inside = PurePosixPath(file.relative_to(path).as_posix())
            if _is_hidden(inside) or (ignored is not None and ignored.match_file(str(inside))):
                continue
            relative = namer.relative(file, path)
            if excluded.match_file(str(relative)):
                continue
            found.setdefault(file.resolve(), namer.source(file, relative, False))
    return list(found.values())
