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
import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import pathspec

from memex.errors import MemexError
from memex.ingest.documents import MIME_BY_SUFFIX

SUPPORTED_SUFFIXES = {*MIME_BY_SUFFIX, ".json"}
IGNORE_FILE = ".memexignore"
MAX_PATTERNS = 200
MAX_PATTERN_CHARS = 256
MAX_PATTERN_STARS = 3


@dataclass(frozen=True)
class SourceFile:
    path: Path
    uri: str
    folder: str | None
    explicit: bool  # named on the command line (so an unsupported type is an error, not a skip)
    link_out: Path | None = None  # a symbolic link to a file outside the tree: where it points

    @property
    def supported(self) -> bool:
        return self.path.suffix.lower() in SUPPORTED_SUFFIXES


def _absolute(path: Path) -> Path:
    """An absolute path with `.` and `..` resolved lexically (symlinks are not followed: a
    linked file is named where it is seen)."""
    return Path(os.path.abspath(path))


def _is_hidden(relative: PurePosixPath) -> bool:
    return any(part.startswith(".") for part in relative.parts)


def _spec(patterns: list[str], where: str = "--exclude") -> pathspec.GitIgnoreSpec:
    """gitignore patterns, bounded: pathspec matches with regular expressions, and each `*`
    multiplies the backtracking on a long name (`*a*a*a*a*a*a*b` ran over 60 s on one
    200-character name); three stay in the milliseconds."""
    lines = [p for p in patterns if p.strip() and not p.lstrip().startswith("#")]
    if len(lines) > MAX_PATTERNS:
        raise MemexError(f"{where}: {len(lines)} patterns; at most {MAX_PATTERNS}")
    for pattern in lines:
        stars = len(re.findall(r"(?<!\*)\*(?!\*)", pattern))
        if len(pattern) > MAX_PATTERN_CHARS or stars > MAX_PATTERN_STARS:
            raise MemexError(
                f"{where}: pattern {pattern[:80]!r} is too complex ({len(pattern)} characters, "
                f"{stars} '*'); at most {MAX_PATTERN_CHARS} characters and {MAX_PATTERN_STARS} "
                "'*' a pattern ('**' not counted)"
            )
    return pathspec.GitIgnoreSpec.from_lines(lines)


def _ignore_file(directory: Path) -> pathspec.GitIgnoreSpec | None:
    file = directory / IGNORE_FILE
    if not file.is_file():
        return None
    return _spec(file.read_text(encoding="utf-8").splitlines(), str(file))


def _uri_text(uri: str) -> str:
    """A path's control characters (a newline in a file name) percent-encoded: a uri is printed
    in citations and on terminals."""
    return "".join(f"%{ord(c):02X}" if unicodedata.category(c) == "Cc" else c for c in uri)


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

    def source(
        self, file: Path, relative: PurePosixPath, explicit: bool, link_out: Path | None = None
    ) -> SourceFile:
        parent = str(relative.parent)
        folder = None if parent == "." else _uri_text(self.prefix + parent)
        return SourceFile(file, _uri_text(f"{self.prefix}{relative}"), folder, explicit, link_out)


def discover(
    arguments: list[str],
    uri_prefix: str = "",
    *,
    root: str | None = None,
    excludes: list[str] | None = None,
    follow_links: bool = False,
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
        tree = path.resolve()
        for file in sorted(p for p in path.rglob("*") if p.is_file()):
            inside = PurePosixPath(file.relative_to(path).as_posix())
            if _is_hidden(inside) or (ignored is not None and ignored.match_file(str(inside))):
                continue
            relative = namer.relative(file, path)
            if excluded.match_file(str(relative)):
                continue
            target = file.resolve()
            # a link inside the tree to a file outside it (`notes.md -> /etc/...`) is not read
            outside = None if follow_links or target.is_relative_to(tree) else target
            found.setdefault(target, namer.source(file, relative, False, outside))
    return list(found.values())
