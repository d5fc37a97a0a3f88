"""Progress bars on stderr, where a person watches: off when stderr is not a terminal (a log,
a pipe, CI) and with --quiet."""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import Any, TypeVar

from tqdm import tqdm

T = TypeVar("T")
# Set once by the CLI from --quiet; a library caller leaves it and gets bars on a terminal only.
quiet = False


def progress(iterable: Iterable[T] | None = None, **options: Any) -> tqdm[T]:
    """A tqdm bar on stderr; tqdm's `disable=None` turns it off on a non-terminal."""
    bar: tqdm[T] = tqdm(iterable, file=sys.stderr, dynamic_ncols=True,  # type: ignore[assignment]
                        disable=True if quiet else None, **options)  # fmt: skip
    return bar
