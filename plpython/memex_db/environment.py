"""Process-level facts and settings of the backend memex_db runs in."""

from __future__ import annotations

import functools
import os
import time
from typing import Any

# Set before any Hugging Face / tokenizers import: nothing may try the network, print progress
# bars into the server log, or fork tokenizer threads inside a PostgreSQL backend.
OFFLINE_ENVIRONMENT = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "TOKENIZERS_PARALLELISM": "false",
}


def prepare_process() -> None:
    for key, value in OFFLINE_ENVIRONMENT.items():
        os.environ[key] = value


def process_rss_mb() -> float:
    """Resident memory of this process, from /proc (no psutil needed)."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return 0.0


def cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - non-Linux
        return os.cpu_count() or 1


def now() -> float:
    return time.perf_counter()


# glibc's mallopt parameters
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3


@functools.cache
def _glibc() -> Any:
    """This process's glibc, with mallinfo2's result type declared; None when it is not glibc
    (or older than 2.33). ctypes is imported here, not at import: every backend imports this
    module at its start."""
    import ctypes

    class MallInfo2(ctypes.Structure):  # glibc 2.33+: byte counts of the main heap
        _fields_ = [(name, ctypes.c_size_t) for name in (
            "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
            "fordblks", "keepcost")]  # fmt: skip

    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallinfo2.restype = MallInfo2
    except (OSError, AttributeError):
        return None
    return libc


@functools.cache
def keep_batches_mapped(mmap_threshold_mb: int = 32, trim_threshold_mb: int = 64) -> None:
    """Fixes glibc's malloc thresholds for a backend that embeds, once per process. By default
    glibc serves blocks above a threshold that moves with what was freed (128 KB at start)
    with a fresh mmap, and unmaps the top of the heap as soon as twice that threshold is free:
    a backend running one batch after another faulted each batch's working memory in again
    (docs/embedding.md, "Memory"). Blocks up to 32 MB (a batch's tensors) now come from the
    heap and stay there for the next batch; give_memory_back returns them, and glibc itself
    past 64 MB free at the top."""
    libc = _glibc()
    if libc is not None:
        libc.mallopt(_M_MMAP_THRESHOLD, mmap_threshold_mb << 20)
        libc.mallopt(_M_TRIM_THRESHOLD, trim_threshold_mb << 20)


def give_memory_back(keep_free_mb: int = 0) -> None:
    """Returns freed heap memory to the system: glibc keeps what a batch's tensors and texts
    used mapped (docs/embedding.md, "Memory").

    keep_free_mb: trim only when the heap holds more free memory than this. A trim unmaps the
    free pages, so the next batch faults its working memory in again: after every claim of
    short texts that cost embed_pending 0-21% more inference time than the same texts in one
    call (docs/embedding.md, "Memory")."""
    libc = _glibc()
    if libc is None:
        return
    if keep_free_mb > 0 and libc.mallinfo2().fordblks <= keep_free_mb << 20:
        return
    libc.malloc_trim(0)
