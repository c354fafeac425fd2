"""Nothing lost: a database outage under load, SIGTERM with requests in flight, a worker killed with SIGKILL.

Each test counts what the service answered as stored (committed or spooled) and finds exactly that in MySQL.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import time
from pathlib import Path

import httpx
import pytest

from api.schemas import EXAMPLE_ROW
from db.spool import Spool
from tests.servers import MySQLDatabase, bentoml_serve, worker_pids
from tests.tcp_proxy import TcpProxy
from tests.traffic import Load, assert_exactly_once, rows_by_request, wait_for_workers, wait_until_drained

pytestmark = pytest.mark.system


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
        wait_until_drained(server)
    assert outage["database"] == "down" and outage["spool_depth"] > 0
    assert load.failures == []
    statuses = list(load.stored.values())
    assert statuses.count("spooled") > 50 and statuses.count("committed") > 50, statuses.count("spooled")
    assert_exactly_once(mysql_db, load.stored)


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
        wait_until_drained(server)
    rows = rows_by_request(mysql_db)
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
            restarted = wait_for_workers(server, lambda pids: len(pids) == 2 and workers[0] not in pids)
            time.sleep(3)  # load on the restarted worker too
        assert workers[1] in restarted
        assert httpx.get(f"{server.url}/readyz").json()["ready"] is True
        after = httpx.post(f"{server.url}/predict", json={"data": [EXAMPLE_ROW]})
        assert after.status_code == 200
    assert load.failures == []
    assert len(load.stored) > 100
    assert_exactly_once(mysql_db, load.stored)
