"""A worker process's life: it ends with its parent.

`bentoml serve` supervises its workers; if it is killed with SIGKILL, the workers would go on serving the port
with no one to restart them, and a new `bentoml serve` would find the address in use. Linux tells a process
when its parent dies (PR_SET_PDEATHSIG): the worker gets SIGTERM, and shuts down as it would on any stop,
storing or spooling what it holds.
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import sys

logger = logging.getLogger(__name__)
PR_SET_PDEATHSIG = 1


def exit_with_parent() -> None:
    """Ask the kernel for SIGTERM when this process's parent dies (Linux); elsewhere, do nothing."""
    if not sys.platform.startswith("linux"):
        return
    parent = os.getppid()
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0) != 0:
        logger.warning("could not ask to stop with the parent process: errno %d", ctypes.get_errno())
        return
    if os.getppid() != parent:  # the parent died before the request took effect
        os.kill(os.getpid(), signal.SIGTERM)
