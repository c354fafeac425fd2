"""Faults and abuse against real processes: nothing hangs, nothing amplifies, nothing grows without bound.

Each test is one case of the adversarial review (issue #9), against `bentoml serve` and MariaDB, with the
database cut, frozen or locked through a TCP proxy or by a second session.
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text

from api.schemas import EXAMPLE_ROW
from db.spool import Spool
from db.store import PredictionRecord
from tests.servers import MySQLDatabase, Server, bentoml_serve, worker_pids
from tests.support import MAX_ERROR_BODY, MAX_RSS_GROWTH, require, rss
from tests.tcp_proxy import TcpProxy
from tests.traffic import Load, assert_exactly_once, rows_by_request, wait_until_drained

pytestmark = pytest.mark.system


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    """A 256 KiB tmpfs: a disk that really fills up."""
    mount_point = tmp_path / "tiny-disk"
    mount_point.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mount_point)],
                             capture_output=True, check=False).returncode == 0
    require(mounted, "mounting a tmpfs (root)")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


def _stored_one(server: Server, timeout: float = 60) -> httpx.Response:
    return httpx.post(f"{server.url}/predict", json={"data": [EXAMPLE_ROW]}, timeout=timeout)


def test_a_full_spool_is_refused_with_503_and_recovered_from_without_a_restart(
        trained_model_home: Path, mysql_db: MySQLDatabase, proxied: tuple[TcpProxy, dict[str, str]],
        tiny_disk: Path, tmp_path: Path) -> None:
    proxy, env = proxied
    with bentoml_serve({**env, "DRYBEANS_SPOOL_DIR": str(tiny_disk)}, tmp_path) as server:
        workers = worker_pids(server.process)
        proxy.cut()
        promised: dict[str, str] = {}
        refused = None
        for _ in range(5_000):  # ~250 bytes a record: the disk is full after about a thousand
            answer = _stored_one(server, timeout=30)
            if answer.status_code == 503:
                refused = answer
                break
            assert answer.status_code == 200
            promised[answer.headers["X-Request-ID"]] = answer.headers["X-Prediction-Store"]
        assert refused is not None, "the spool never filled"
        assert "spool" in refused.json()["error"] and "store: false" in refused.json()["error"]
        assert_the_route_refuses_alike(server, promised)
        readiness = httpx.get(f"{server.url}/readyz", timeout=5)
        assert readiness.status_code == 503 and readiness.json()["spool"] == "full"
        assert httpx.get(f"{server.url}/livez", timeout=5).status_code == 200

        proxy.restore()
        wait_until_drained(server, timeout=90)
        after = _stored_one(server, timeout=10)
        assert after.status_code == 200 and after.headers["X-Prediction-Store"] == "committed"
        assert httpx.get(f"{server.url}/readyz", timeout=5).json()["spool"] == "ok"
        assert worker_pids(server.process) == workers, "recovered without a restart"
        assert "Exception in thread" not in server.output()
    assert set(promised.values()) == {"spooled"}
    assert_exactly_once(mysql_db, promised)


def assert_the_route_refuses_alike(server: Server, promised: dict[str, str]) -> None:
    """`/predict`'s shortcut refused a request; BentoML's route (an Origin header takes it), asked on the same
    connection (the same worker, whose journal may still have had a few bytes free), refuses it alike."""
    with server.client() as http:
        for _ in range(100):
            answers = [http.post("/predict", json={"data": [EXAMPLE_ROW]}, headers=headers)
                       for headers in ({}, {"Origin": "http://a.test"})]
            for answer in answers:
                if answer.status_code == 200:
                    promised[answer.headers["X-Request-ID"]] = answer.headers["X-Prediction-Store"]
            if [answer.status_code for answer in answers] == [503, 503]:
                shortcut, by_route = ((answer.content, [item for item in answer.headers.multi_items()
                                                        if item[0] != "date"]) for answer in answers)
                assert shortcut == by_route
                return
    raise AssertionError("the spool never refused both ways in a row")


def test_a_frozen_database_is_spooled_around_within_the_request_timeout(
        trained_model_home: Path, mysql_db: MySQLDatabase, proxied: tuple[TcpProxy, dict[str, str]],
        tmp_path: Path) -> None:
    proxy, env = proxied
    with bentoml_serve({**env, "DRYBEANS_DB_TIMEOUT_SECONDS": "2"}, tmp_path) as server:
        with Load(server, clients=8, timeout=60) as load:
            time.sleep(1)
            proxy.freeze()
            time.sleep(12)
            started = time.monotonic()
            readiness = httpx.get(f"{server.url}/readyz", timeout=10)
            probe_seconds = time.monotonic() - started
            during = dict(load.stored)
            proxy.thaw()
            time.sleep(2)
        wait_until_drained(server, timeout=60)
    assert probe_seconds < 3, f"/readyz took {probe_seconds:.1f} s while the database was frozen"
    assert readiness.status_code == 200 and readiness.json()["database"] == "down"
    assert load.failures == [] and load.unanswered == 0
    assert max(load.latencies) < 15, "a request waited on the frozen database beyond its timeouts"
    assert list(during.values()).count("spooled") > 50, "requests were not spooled around the freeze"
    assert_exactly_once(mysql_db, load.stored)


@pytest.mark.parametrize(("path", "body"), [
    ("/v1/classify", b'{"beans": [' + b",".join([b"{}"] * 50_000) + b"]}"),  # 200 KB, 50,000 bad beans
    ("/v1/classify", b'{"beans": [' + b",".join([b"{}"] * 3_000_000) + b"]}"),  # 9 MB, under the body limit
    ("/predict", b'{"data": [' + b",".join([b"[]"] * 3_000_000) + b"]}"),
    ("/predict", json.dumps({"data": json.dumps([[]] * 3_000_000)}).encode()),
], ids=["50k-empty-beans", "3M-empty-beans", "3M-empty-rows", "3M-empty-rows-as-a-string"])
def test_abusive_bodies_get_a_small_answer_and_cost_little_memory(trained_model_home: Path, tmp_path: Path,
                                                                  path: str, body: bytes) -> None:
    with bentoml_serve({"DRYBEANS_SQLITE_PATH": str(tmp_path / "db.sqlite3")}, tmp_path) as server:
        workers = worker_pids(server.process)
        before = rss(workers)
        answer = httpx.post(server.url + path, content=body, headers={"Content-Type": "application/json"},
                            timeout=60)
        growth = rss(workers) - before
        assert 400 <= answer.status_code < 500
        assert len(answer.content) < MAX_ERROR_BODY, f"{len(answer.content)} bytes of error"
        assert answer.json()["error"]
        assert growth < MAX_RSS_GROWTH, f"workers grew by {growth / 2**20:.0f} MiB"
        assert _stored_one(server).status_code == 200, "the service still serves"


def test_unknown_paths_do_not_grow_the_metrics(trained_model_home: Path, tmp_path: Path) -> None:
    with (bentoml_serve({"DRYBEANS_SQLITE_PATH": str(tmp_path / "db.sqlite3")}, tmp_path) as server,
          httpx.Client(base_url=server.url, timeout=10) as http):
        http.get("/no-such-path")
        http.post("/predict", json={"data": [EXAMPLE_ROW], "store": False})
        before = len(http.get("/metrics").content)
        probes = [f"/probe-{uuid.uuid4().hex}" for _ in range(1_000)]
        for probe in probes:
            assert http.get(probe).status_code == 404
        exposition = http.get("/metrics").text
    assert len(exposition) - before < 4_096, f"/metrics grew from {before} to {len(exposition)} bytes"
    assert not any(probe in exposition for probe in probes)
    assert 'endpoint="/{unknown}"' in exposition and 'endpoint="/predict"' in exposition


def test_reads_the_database_cannot_serve_get_a_json_503_and_leave_readiness_alone(
        trained_model_home: Path, mysql_db: MySQLDatabase, tmp_path: Path) -> None:
    env = {**mysql_db.env, "DRYBEANS_DB_TIMEOUT_SECONDS": "2", "DRYBEANS_POOL_SIZE": "2"}
    with bentoml_serve(env, tmp_path) as server:
        assert _stored_one(server).status_code == 200
        with mysql_db.engine().connect() as locker:
            locker.execute(text("LOCK TABLES drybeans WRITE"))  # every read of the table now waits
            with concurrent.futures.ThreadPoolExecutor(24) as pool:
                reads = pool.map(lambda _: httpx.get(f"{server.url}/v1/predictions?offset=1000000", timeout=30),
                                 range(24))
                readiness = httpx.get(f"{server.url}/readyz", timeout=5)
                answers = list(reads)
            locker.execute(text("UNLOCK TABLES"))
        assert readiness.status_code == 200 and readiness.json()["database"] == "up"
        assert {answer.status_code for answer in answers} == {503}
        assert all(answer.headers["content-type"] == "application/json" for answer in answers)
        assert all(answer.json()["code"] == "store_unavailable" for answer in answers)
        assert httpx.get(f"{server.url}/v1/predictions", timeout=10).status_code == 200
        assert "Traceback" not in server.output()


def test_replaying_a_large_spool_leaves_live_requests_their_latency(
        trained_model_home: Path, mysql_db: MySQLDatabase, tmp_path: Path) -> None:
    spool_dir = tmp_path / "spool"
    spooled = Spool(spool_dir)
    request_ids = [uuid.uuid4().hex for _ in range(100)]
    now = datetime.now(UTC).replace(tzinfo=None)
    for request_id in request_ids:  # 100,000 records left by an earlier outage
        spooled.append([PredictionRecord(request_id, index, "SIRA", "m:1", now, tuple(EXAMPLE_ROW))
                        for index in range(1_000)])
    spooled.release()
    with bentoml_serve({**mysql_db.env, "DRYBEANS_SPOOL_DIR": str(spool_dir)}, tmp_path) as server:
        latencies = []
        while Spool(spool_dir).depth() > 0 and len(latencies) < 2_000:
            started = time.monotonic()
            answer = _stored_one(server)
            latencies.append(time.monotonic() - started)
            assert answer.status_code == 200 and answer.headers["X-Prediction-Store"] == "committed"
        wait_until_drained(server, timeout=120)
    assert len(latencies) > 20, "the replay ended before live traffic could be measured"
    assert max(latencies) < 1.0, f"a live request waited {max(latencies):.2f} s behind the replay"
    rows = rows_by_request(mysql_db)
    assert [rows.get(request_id) for request_id in request_ids] == [1_000] * 100


def test_workers_stop_when_their_parent_is_killed(trained_model_home: Path, tmp_path: Path) -> None:
    with bentoml_serve({"DRYBEANS_SQLITE_PATH": str(tmp_path / "db.sqlite3")}, tmp_path) as server:
        workers = worker_pids(server.process)
        port = int(server.url.rsplit(":", 1)[1])
        os.kill(server.process.pid, signal.SIGKILL)
        server.process.wait(10)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and any(_running(pid) for pid in workers):
            time.sleep(0.2)
        assert not any(_running(pid) for pid in workers), "orphaned workers kept running"
        with socket.socket() as probe:
            assert probe.connect_ex(("127.0.0.1", port)) != 0, "the port is still served"


def _running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"

