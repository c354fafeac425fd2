"""A worker process's life: it ends with its parent, and its garbage collector is paused while it starts and settled
once it has.

`bentoml serve` supervises its workers; if it is killed with SIGKILL, the workers would go on serving the port
with no one to restart them, and a new `bentoml serve` would find the address in use. Linux tells a process
when its parent dies (PR_SET_PDEATHSIG): the worker gets SIGTERM, and shuts down as it would on any stop,
storing or spooling what it holds.
"""

from __future__ import annotations

import ctypes
import gc
import logging
import os
import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager

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


@contextmanager
def collector_paused() -> Iterator[None]:
    """No garbage collection inside, restored after whatever happens: for start-up, whose imports and models make
    hundreds of thousands of objects that stay. The collector looked for cycles among them again and again as they
    piled up: 0.1 s of importing service.py, 0.15 s of a worker's __init__, and a tenth of score.py's model load."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def settle_garbage_collector() -> None:
    """Collect what start-up left once, freeze the rest, and collect the young generation less often; the collector
    is on after, whoever paused it.

    A request allocates thousands of short-lived objects; at the default threshold (700) the collector ran many
    times per request and its older generations walked the hundreds of thousands of objects that BentoML,
    scikit-learn and pandas keep alive. Measured with wrk (one bean, store: true, 32 connections): p99 from
    250-350 ms down to 33-47 ms, and 40-50% more requests per second. The older generations keep their default
    thresholds: raising them too gained nothing measurable and let worker memory grow by up to 100 MiB.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(20_000)
    gc.enable()
