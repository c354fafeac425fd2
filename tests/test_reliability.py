"""Nothing lost: a database outage under load, SIGTERM with requests in flight, a worker killed with SIGKILL.

Each test counts what the service answered as stored (committed or spooled) and finds exactly that in MySQL.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text

from db.spool import Spool
from schemas import EXAMPLE_ROW
from tests.servers import MYSQL_ADMIN_URL, MySQLDatabase, Server, bentoml_serve, worker_pids
from tests.tcp_proxy import TcpProxy, tcp_proxy


@dataclass
class Load:
    """Clients sending one-bean stored predictions until stopped; what each answer said."""

    server: Server
    clients: int = 8
    stored: dict[str, str] = field(default_factory=dict)  # request id -> committed | spooled
    failures: list[str] = field(default_factory=list)  # answers that were not 200
    unanswered: int = 0  # connections cut before an answer (not a promise, so not counted)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)

    def __enter__(self) -> Load:
        self._threads = [threading.Thread(target=self._client) for _ in range(self.clients)]
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(60)

    def _client(self) -> None:
        with httpx.Client(base_url=self.server.url, timeout=30) as http:
            while not self._stop.is_set():
                try:
                    response = http.post("/predict", json={"data": [EXAMPLE_ROW]})
                except httpx.TransportError:
                    self.unanswered += 1
                    continue
                if response.status_code != 200:
                    self.failures.append(f"{response.status_code} {response.text[:200]}")
                    continue
                self.stored[response.headers["X-Request-ID"]] = response.headers["X-Prediction-Store"]


def _rows_by_request(db: MySQLDatabase) -> dict[str, int]:
    with db.engine().connect() as connection:
        return dict(connection.execute(text("SELECT request_id, COUNT(*) FROM drybeans "
                                            "WHERE request_id IS NOT NULL GROUP BY request_id")).all())


def _wait_until_drained(server: Server, timeout: float = 60) -> dict[str, object]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        report = httpx.get(f"{server.url}/readyz", timeout=10).json()
        if report.get("ready") and report.get("spool_depth") == 0:
            return report
        time.sleep(0.5)
    raise TimeoutError(f"spool not drained within {timeout} s: {report}")


def _wait_for_workers(server: Server, done: Callable[[list[int]], bool], timeout: float = 30) -> list[int]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if done(pids := worker_pids(server.process)):
            return pids
        time.sleep(0.2)
    raise TimeoutError(f"workers are {worker_pids(server.process)} after {timeout} s")


def _assert_exactly_once(db: MySQLDatabase, stored: dict[str, str]) -> None:
    rows = _rows_by_request(db)
    missing = [request_id for request_id in stored if request_id not in rows]
    assert not missing, f"{len(missing)} predictions answered as stored are not in the database"
    assert all(rows[request_id] == 1 for request_id in stored), "a prediction was stored twice"


@pytest.fixture
def proxied(mysql_db: MySQLDatabase) -> Iterator[tuple[TcpProxy, dict[str, str]]]:
    """A proxy in front of the test MySQL server, and the service's settings pointing through it."""
    with tcp_proxy(MYSQL_ADMIN_URL.host or "127.0.0.1", MYSQL_ADMIN_URL.port or 3306) as proxy:
        yield proxy, {**mysql_db.env, "MYSQL_HOST": "127.0.0.1", "MYSQL_PORT": str(proxy.port)}


def test_a_ten_second_database_outage_under_load_loses_nothing(trained_model_home: Path, mysql_db: MySQLDatabase,
                                                               proxied: tuple[TcpProxy, dict[str, str]],
                                                               tmp_path: Path) -> None:
    proxy, env = proxied
    with bentoml_serve(env, tmp_path) as server:
        with Load(server) as load:
            time.sleep(2)
            proxy.cut()
            time.sleep(10)
            outage = httpx.get(f"{server.url}/readyz").json()
            proxy.restore()
            time.sleep(3)
        _wait_until_drained(server)
    assert outage["database"] == "down" and outage["spool_depth"] > 0
    assert load.failures == []
    statuses = list(load.stored.values())
    assert statuses.count("spooled") > 50 and statuses.count("committed") > 50, statuses.count("spooled")
    _assert_exactly_once(mysql_db, load.stored)


def test_sigterm_finishes_requests_in_flight_and_a_kept_spool_is_replayed_at_next_start(
        trained_model_home: Path, mysql_db: MySQLDatabase, proxied: tuple[TcpProxy, dict[str, str]],
        tmp_path: Path) -> None:
    proxy, env = proxied
    spool_dir = tmp_path / "spool"
    env = {**env, "DRYBEANS_SPOOL_DIR": str(spool_dir)}
    body = json.dumps({"data": [EXAMPLE_ROW] * 10_000})
    with bentoml_serve(env, tmp_path) as server:
        proxy.cut()
        port = int(server.url.rsplit(":", 1)[1])
        in_flight = [http.client.HTTPConnection("127.0.0.1", port, timeout=60) for _ in range(6)]
        for connection in in_flight:  # each request is sent whole before the signal: accepted, in flight
            connection.request("POST", "/predict", body, {"Content-Type": "application/json"})
        time.sleep(0.5)
        server.process.send_signal(signal.SIGTERM)
        answers = [connection.getresponse() for connection in in_flight]
        assert [answer.status for answer in answers] == [200] * 6
        request_ids = [answer.getheader("X-Request-ID") for answer in answers]
        assert {answer.getheader("X-Prediction-Store") for answer in answers} == {"spooled"}
        assert server.process.wait(60) == 0
    assert Spool(spool_dir).depth() == 60_000, "the spool is kept on disk across the stop"

    proxy.restore()
    with bentoml_serve(env, tmp_path) as server:
        _wait_until_drained(server)
    rows = _rows_by_request(mysql_db)
    assert [rows.get(request_id) for request_id in request_ids] == [10_000] * 6
    assert not list(spool_dir.glob("*.jsonl"))


def test_a_worker_killed_mid_load_is_restarted_and_nothing_answered_is_lost(trained_model_home: Path,
                                                                           mysql_db: MySQLDatabase,
                                                                           tmp_path: Path) -> None:
    with bentoml_serve(mysql_db.env, tmp_path) as server:
        workers = worker_pids(server.process)
        assert len(workers) == 2
        with Load(server) as load:
            time.sleep(2)
            os.kill(workers[0], signal.SIGKILL)
            restarted = _wait_for_workers(server, lambda pids: len(pids) == 2 and workers[0] not in pids)
            time.sleep(3)  # load on the restarted worker too
        assert workers[1] in restarted
        assert httpx.get(f"{server.url}/readyz").json()["ready"] is True
        after = httpx.post(f"{server.url}/predict", json={"data": [EXAMPLE_ROW]})
        assert after.status_code == 200
    assert load.failures == []
    assert len(load.stored) > 100
    _assert_exactly_once(mysql_db, load.stored)
