"""Stop points for the tests that kill an install: MEMEX_INSTALL_STOP_AT names a point of the
install; reaching it, the process says so on stderr and kills itself with SIGKILL, as a crash
or `kill -9` at that instant would. Unset (always, outside tests), a stop point does nothing.

tests/migrations/test_install.py stops an install at each point and asserts it died there
(exit status -9 and the line below), then that the next install finishes it.
"""

from __future__ import annotations

import os
import signal
import sys

STOP_ENV = "MEMEX_INSTALL_STOP_AT"


def stop_point(name: str) -> None:
    if os.environ.get(STOP_ENV) == name:
        sys.stderr.write(f"memex install: killed at stop point {name!r} ({STOP_ENV})\n")
        sys.stderr.flush()
        os.kill(os.getpid(), signal.SIGKILL)
