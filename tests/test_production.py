"""What a production deployment relies on, against real `bentoml serve` processes and MariaDB (issue #10):
access control, metrics on their own port, the spool drained at shutdown, and a spool that outlives its server.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from api import errors
from api.schemas import EXAMPLE_ROW
from db.spool import Spool
from serving.headers import SECURITY_HEADERS
from tests.servers import BENTOML, ROOT, MySQLDatabase, bentoml_serve, free_port, worker_pids
from tests.tcp_proxy import TcpProxy
from tests.traffic import Load, assert_exactly_once, rows_by_request, wait_until_drained

pytestmark = pytest.mark.system


def test_recorded_data_needs_the_token_and_the_token_is_never_shown(trained_model_home: Path,
                                                                   mysql_db: MySQLDatabase,
                                                                   tmp_path: Path) -> None:
    token = secrets.token_urlsafe(24)
    with bentoml_serve({**mysql_db.env, "DRYBEANS_API_TOKEN": token}, tmp_path) as server, \
            httpx.Client(base_url=server.url, timeout=30) as http:
        assert http.post("/predict", json={"data": [EXAMPLE_ROW]}).status_code == 200, "predictions stay open"
        answers = {
            "none": http.get("/v1/predictions"),
            "wrong": http.get("/v1/predictions", headers={"Authorization": "Bearer not-the-token"}),
            "right": http.get("/v1/predictions", headers={"Authorization": f"Bearer {token}"}),
        }
        metrics = http.get("/metrics")
        metrics_with_token = http.get("/metrics", headers={"Authorization": f"Bearer {token}"})
        log = server.output()
    assert answers["none"].status_code == 401 and answers["none"].headers["www-authenticate"].startswith("Bearer")
    assert answers["none"].json()["code"] == "unauthorized"
    assert answers["wrong"].status_code == 403 and answers["wrong"].json()["code"] == "forbidden"
    assert answers["right"].status_code == 200 and answers["right"].json()["total"] == 1
    assert metrics.status_code == 401 and metrics_with_token.status_code == 200
    assert all(token not in answer.text for answer in answers.values())
    assert token not in log


def test_predictions_can_require_the_token_too(trained_model_home: Path, tmp_path: Path) -> None:
    token = secrets.token_urlsafe(24)
    env = {"DRYBEANS_SQLITE_PATH": str(tmp_path / "db.sqlite3"), "DRYBEANS_API_TOKEN": token,
           "DRYBEANS_PROTECT_PREDICT": "true"}
    with bentoml_serve(env, tmp_path) as server, httpx.Client(base_url=server.url, timeout=30) as http:
        assert http.post("/predict", json={"data": [EXAMPLE_ROW]}).status_code == 401
        assert http.post("/v1/classify", json={"beans": []}).status_code == 401
        authorised = http.post("/predict", json={"data": [EXAMPLE_ROW]}, headers={"Authorization": f"Bearer {token}"})
        assert authorised.json() == {"predictions": '["DERMASON"]'}
        assert http.get("/readyz").status_code == 200 and http.get("/livez").status_code == 200, "probes stay open"


def test_metrics_on_their_own_port_are_not_on_the_api_port(trained_model_home: Path, tmp_path: Path) -> None:
    port = free_port()
    env = {"DRYBEANS_SQLITE_PATH": str(tmp_path / "db.sqlite3"), "DRYBEANS_METRICS_PORT": str(port)}
    with bentoml_serve(env, tmp_path) as server:
        assert httpx.post(f"{server.url}/predict", json={"data": [EXAMPLE_ROW]}).status_code == 200
        on_api_port = httpx.get(f"{server.url}/metrics")
        scrapes = [httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10) for _ in range(4)]
    assert on_api_port.status_code == 404 and str(port) in on_api_port.json()["error"]
    assert {scrape.status_code for scrape in scrapes} == {200}
    assert all('bentoml_service_request_total{endpoint="/predict"' in scrape.text for scrape in scrapes)
    assert all("drybeans_spool_depth 0" in scrape.text for scrape in scrapes)
    for answer in (on_api_port, *scrapes):  # the metrics port's answers carry the security headers too
        assert {name: answer.headers.get(name) for name in SECURITY_HEADERS} == SECURITY_HEADERS


@pytest.mark.parametrize("token", [None, ""], ids=["unset", "empty"])
def test_a_service_that_requires_a_token_refuses_to_start_without_one(trained_model_home: Path, tmp_path: Path,
                                                                      token: str | None) -> None:
    port = free_port()
    env = {key: value for key, value in os.environ.items() if key != "DRYBEANS_API_TOKEN"}
    env |= {"DRYBEANS_REQUIRE_TOKEN": "true", "DRYBEANS_SQLITE_PATH": str(tmp_path / "db.sqlite3"),
            "DRYBEANS_SPOOL_DIR": str(tmp_path / "spool")}
    if token is not None:
        env["DRYBEANS_API_TOKEN"] = token
    result = subprocess.run([str(BENTOML), "serve", "--port", str(port), "--host", "127.0.0.1"], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode != 0
    assert errors.ACCESS_NOT_CONFIGURED in result.stderr + result.stdout
    assert not (tmp_path / "db.sqlite3").exists(), "nothing was served or stored"


def test_a_service_that_requires_a_token_starts_with_one(trained_model_home: Path, tmp_path: Path) -> None:
    token = secrets.token_urlsafe(24)
    env = {"DRYBEANS_REQUIRE_TOKEN": "true", "DRYBEANS_API_TOKEN": token,
           "DRYBEANS_SQLITE_PATH": str(tmp_path / "db.sqlite3")}
    with bentoml_serve(env, tmp_path) as server, httpx.Client(base_url=server.url, timeout=30) as http:
        assert http.get("/v1/predictions").status_code == 401
        assert http.get("/v1/predictions", headers={"Authorization": f"Bearer {token}"}).status_code == 200


def test_sigterm_drains_the_spool_into_the_database_before_the_server_exits(
        trained_model_home: Path, mysql_db: MySQLDatabase, proxied: tuple[TcpProxy, dict[str, str]],
        tmp_path: Path) -> None:
    proxy, env = proxied
    spool_dir = tmp_path / "spool"
    with bentoml_serve({**env, "DRYBEANS_SPOOL_DIR": str(spool_dir)}, tmp_path) as server:
        proxy.cut()
        answers = [httpx.post(f"{server.url}/predict", json={"data": [EXAMPLE_ROW] * 100}, timeout=30)
                   for _ in range(20)]
        assert {answer.headers["X-Prediction-Store"] for answer in answers} == {"spooled"}
        assert Spool(spool_dir).depth() == 2_000
        proxy.restore()  # the database is back, but the writers wait out their back-off before replaying
        server.process.send_signal(signal.SIGTERM)
        assert server.process.wait(60) == 0
    assert Spool(spool_dir).depth() == 0, "the spool was drained at shutdown"
    rows = rows_by_request(mysql_db)
    assert [rows.get(answer.headers["X-Request-ID"]) for answer in answers] == [100] * 20


def test_a_spool_outlives_its_server_and_a_new_one_stores_it_exactly_once(
        trained_model_home: Path, mysql_db: MySQLDatabase, proxied: tuple[TcpProxy, dict[str, str]],
        tmp_path: Path) -> None:
    """The container is deleted abruptly (SIGKILL to every process) while the database is down; its volume is
    kept; a new server on that volume, with the database up, stores every answered record once."""
    proxy, env = proxied
    volume = {**env, "DRYBEANS_SPOOL_DIR": str(tmp_path / "volume" / "spool")}
    with bentoml_serve(volume, tmp_path) as server:
        proxy.cut()
        with Load(server, clients=8) as load:
            time.sleep(5)
            for pid in [server.process.pid, *worker_pids(server.process)]:
                os.kill(pid, signal.SIGKILL)
        server.process.wait(10)
    assert list(load.stored.values()).count("spooled") > 50
    proxy.restore()
    with bentoml_serve(volume, tmp_path) as server:
        wait_until_drained(server, timeout=60)
    assert_exactly_once(mysql_db, load.stored)
