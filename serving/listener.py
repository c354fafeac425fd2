"""Each worker accepts its own share of connections: a listening socket of its own, bound with SO_REUSEPORT.

`bentoml serve` binds one listening socket and hands the same one to every worker (`--fd N`). Whichever worker
wakes first accepts every connection waiting (uvloop accepts until the queue is empty), so one worker often held
all of a client's keep-alive connections while the other idled: the smaller worker's share of the CPU was 0.03-0.49
from run to run. BentoML has no setting for this (bentoml/BentoML#5426).

With SO_REUSEPORT, Linux spreads new connections over the sockets bound to a port by a hash of their addresses.
So, at start-up and before uvicorn starts accepting, each worker binds a socket of its own to the shared one's
address and puts it in place of the shared one's descriptor, then shuts the shared one, which takes it out of the
kernel's group (it stays open in BentoML's arbiter, where nobody accepts from it). A restarted worker does the same.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import sys

logger = logging.getLogger(__name__)

DEFAULT_BACKLOG = 2048  # bentoml serve's


def inherited_listener_fd(argv: list[str]) -> int | None:
    """The descriptor of the listening socket `bentoml serve` gave this worker (`--fd N`), if it was given one."""
    return _int_option(argv, "--fd")


def take_own_listener(fd: int, backlog: int = DEFAULT_BACKLOG) -> tuple[str, int]:
    """Replace the shared listening socket at `fd` by one of this process's own on the same address; that address."""
    with socket.socket(fileno=os.dup(fd)) as shared, socket.socket(shared.family, socket.SOCK_STREAM) as own:
        # Every socket bound to the port must allow reuse, the shared one included, or the bind below fails.
        shared.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        own.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        own.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        own.bind(shared.getsockname())
        own.listen(backlog)
        os.dup2(own.fileno(), fd)  # `fd` now refers to our socket too, and keeps it open after `own` closes
        # Leave the kernel's group: connections hashed to the shared socket would wait for an accept that never comes.
        with contextlib.suppress(OSError):  # already shut by an earlier worker
            shared.shutdown(socket.SHUT_RDWR)
        host, port = own.getsockname()[:2]
        return host, port


def listen_on_own_socket() -> None:
    """In a `bentoml serve` worker on Linux, take a listener of its own; elsewhere, leave things as they are."""
    fd = inherited_listener_fd(sys.argv)
    if fd is None or not hasattr(socket, "SO_REUSEPORT") or not sys.platform.startswith("linux"):
        return
    try:
        host, port = take_own_listener(fd, _int_option(sys.argv, "--backlog") or DEFAULT_BACKLOG)
    except OSError as exc:
        logger.warning("kept the shared listening socket, connections may favour one worker: %s", exc)
        return
    logger.info("worker %d accepts on its own socket for %s:%d (SO_REUSEPORT)", os.getpid(), host, port)


def _int_option(argv: list[str], name: str) -> int | None:
    with contextlib.suppress(ValueError, IndexError):
        return int(argv[argv.index(name) + 1])
    return None
