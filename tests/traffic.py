"""Traffic for the reliability tests: clients that remember what each answer promised, and the checks of it."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx
from sqlalchemy import text

from api.schemas import EXAMPLE_ROW
from tests.servers import MySQLDatabase, Server, worker_pids


@dataclass
class Load:
    """Clients sending one-bean stored predictions until stopped; what each answer said."""

    server: Server
    clients: int = 8
    timeout: float = 30
    stored: dict[str, str] = field(default_factory=dict)  # request id -> committed | spooled
    failures: list[str] = field(default_factory=list)  # answers that were not 200
    latencies: list[float] = field(default_factory=list)  # seconds, of every answer
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
        with httpx.Client(base_url=self.server.url, timeout=self.timeout) as http:
            while not self._stop.is_set():
                started = time.monotonic()
                try:
                    response = http.post("/predict", json={"data": [EXAMPLE_ROW]})
                except httpx.TransportError:
                    self.unanswered += 1
                    continue
                self.latencies.append(time.monotonic() - started)
                if response.status_code != 200:
                    self.failures.append(f"{response.status_code} {response.text[:200]}")
                    continue
                self.stored[response.headers["X-Request-ID"]] = response.headers["X-Prediction-Store"]


def rows_by_request(db: MySQLDatabase) -> dict[str, int]:
    with db.engine().connect() as connection:
        return dict(connection.execute(text("SELECT request_id, COUNT(*) FROM drybeans "
                                            "WHERE request_id IS NOT NULL GROUP BY request_id")).all())


def wait_until_drained(server: Server, timeout: float = 60) -> dict[str, object]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        report = httpx.get(f"{server.url}/readyz", timeout=10).json()
        if report.get("database") == "up" and report.get("spool_depth") == 0:
            return report
        time.sleep(0.5)
    raise TimeoutError(f"spool not drained within {timeout} s: {report}")


def wait_for_workers(server: Server, done: Callable[[list[int]], bool], timeout: float = 30) -> list[int]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if done(pids := worker_pids(server.process)):
            return pids
        time.sleep(0.2)
    raise TimeoutError(f"workers are {worker_pids(server.process)} after {timeout} s")


def assert_exactly_once(db: MySQLDatabase, stored: dict[str, str]) -> None:
    rows = rows_by_request(db)
    missing = [request_id for request_id in stored if request_id not in rows]
    assert not missing, f"{len(missing)} predictions answered as stored are not in the database"
    assert all(rows[request_id] == 1 for request_id in stored), "a prediction was stored twice"
