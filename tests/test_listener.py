"""Connections spread over the workers: each takes a listening socket of its own (serving/listener.py, issue #11)."""

from __future__ import annotations

import os
import socket
import time
from contextlib import ExitStack
from pathlib import Path

import psutil
import pytest

from serving.listener import inherited_listener_fd, take_own_listener
from tests.servers import bentoml_serve, worker_pids

pytestmark = pytest.mark.system

CONNECTIONS = 32
LEAST_PER_WORKER = 4  # of 32, split by the kernel's hash: fewer than 4 on one side happens once in ~400,000 runs


def test_the_worker_finds_the_descriptor_bentoml_serve_passed() -> None:
    assert inherited_listener_fd(["-m", "_bentoml_impl.worker.service", "--fd", "7", "--worker-id", "1"]) == 7
    assert inherited_listener_fd(["-m", "_bentoml_impl.worker.service"]) is None
    assert inherited_listener_fd(["--fd"]) is None


def test_processes_that_take_their_own_sockets_share_the_connections_and_lose_none() -> None:
    shared = socket.create_server(("127.0.0.1", 0))
    address = shared.getsockname()
    children = []
    for _ in range(2):  # each process, like a `bentoml serve` worker, inherits the shared socket's descriptor
        read_end, write_end = os.pipe()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child process
            os.close(read_end)
            take_own_listener(shared.fileno())
            os.write(write_end, b"listening")
            accepted = 0
            listener = socket.socket(fileno=shared.fileno())
            listener.settimeout(3)
            try:
                while True:
                    listener.accept()[0].close()
                    accepted += 1
            except TimeoutError:
                os.write(write_end, accepted.to_bytes(4, "big"))
            os._exit(0)
        os.close(write_end)
        assert os.read(read_end, 9) == b"listening"
        children.append((pid, read_end))
    clients = [socket.create_connection(address, timeout=5) for _ in range(200)]

    accepted = []
    for pid, read_end in children:
        accepted.append(int.from_bytes(os.read(read_end, 4), "big"))
        os.waitpid(pid, 0)
    for client in clients:
        client.close()
    shared.close()
    assert sum(accepted) == 200, "every connection was accepted: none waits on the shared socket"
    assert min(accepted) >= 50, f"the kernel spreads connections over both processes: {accepted}"


def test_keep_alive_connections_spread_over_both_workers(trained_model_home: Path, tmp_path: Path) -> None:
    env = {"DRYBEANS_SQLITE_PATH": str(tmp_path / "db.sqlite3")}
    with bentoml_serve(env, tmp_path) as server, ExitStack() as stack:
        port = int(server.url.rsplit(":", 1)[1])
        time.sleep(2)  # the second worker may still be starting when the first answers /readyz
        clients = [stack.enter_context(socket.create_connection(("127.0.0.1", port), timeout=10))
                   for _ in range(CONNECTIONS)]
        for client in clients:  # every connection is served: none waits on a socket nobody accepts from
            client.sendall(b"GET /livez HTTP/1.1\r\nHost: drybeans\r\n\r\n")
            assert client.recv(4096).startswith(b"HTTP/1.1 200")
        held = {pid: sum(1 for connection in psutil.Process(pid).connections("tcp")
                         if connection.laddr.port == port and connection.status == psutil.CONN_ESTABLISHED)
                for pid in worker_pids(server.process)}
    assert sum(held.values()) == CONNECTIONS
    assert len(held) == 2 and min(held.values()) >= LEAST_PER_WORKER, f"connections per worker: {held}"
