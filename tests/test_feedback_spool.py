"""Feedback takes the durable path of predictions (issue #13), against a real `bentoml serve` and MariaDB behind
a TCP proxy that cuts the database on demand: reports made while it is down are spooled (202), replayed once it
is back, after the predictions they may name, and counted by /v1/quality exactly once."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from api.schemas import EXAMPLE_BEAN
from db.deadletter import NO_PREDICTION, DeadLetters
from tests.servers import MYSQL_ADMIN_URL, MySQLDatabase, bentoml_serve
from tests.tcp_proxy import tcp_proxy
from tests.traffic import wait_until_drained

pytestmark = pytest.mark.system

UNKNOWN_RECORD = 2_000_000_000


def _classify(http: httpx.Client, beans: int) -> dict[str, Any]:
    response = http.post("/v1/classify", json={"beans": [EXAMPLE_BEAN] * beans})
    assert response.status_code == 200, response.text
    return dict(response.json())


def _feedback(db: MySQLDatabase) -> list[tuple[int, str]]:
    with db.engine().connect() as connection:
        return [(record_id, variety) for record_id, variety in connection.execute(
            text("SELECT record_id, variety FROM feedback ORDER BY record_id"))]


def _record_id(db: MySQLDatabase, request_id: str, bean_index: int) -> int:
    with db.engine().connect() as connection:
        return int(connection.scalar(text("SELECT id FROM drybeans WHERE request_id = :r AND bean_index = :i"),
                                     {"r": request_id, "i": bean_index}))


def test_feedback_reported_while_the_database_is_down_is_spooled_then_stored_once(
        trained_model_home: Path, mysql_db: MySQLDatabase, tmp_path: Path) -> None:
    since = datetime.now(UTC).replace(microsecond=0).isoformat()
    with tcp_proxy(MYSQL_ADMIN_URL.host or "127.0.0.1", MYSQL_ADMIN_URL.port or 3306) as proxy, \
            bentoml_serve({**mysql_db.env, "MYSQL_HOST": "127.0.0.1", "MYSQL_PORT": str(proxy.port)},
                          tmp_path) as server, server.client() as http:
        committed = _classify(http, 2)
        assert committed["stored"] == "committed"
        first, second = (p["record_id"] for p in committed["predictions"])

        proxy.cut()
        spooled = _classify(http, 1)  # its prediction is spooled too: reported by (request_id, bean_index)
        assert spooled["stored"] == "spooled"
        answers = [http.post("/v1/feedback", json={"items": items}) for items in (
            [{"record_id": first, "variety": "SIRA"},
             {"request_id": committed["request_id"], "bean_index": 1, "variety": "CALI"}],
            [{"request_id": spooled["request_id"], "bean_index": 0, "variety": "HOROZ"}],
            [{"record_id": first, "variety": "BOMBAY"}],  # a contradiction: the first report stays
            [{"record_id": UNKNOWN_RECORD, "variety": "SEKER"}],  # set aside at replay, with a warning
        )]
        assert [answer.status_code for answer in answers] == [202] * 4, [answer.text for answer in answers]
        assert answers[0].json() == {"stored": "spooled", "recorded": None, "already_known": None}

        proxy.restore()
        wait_until_drained(server, timeout=90)
        again = http.post("/v1/feedback", json={"items": [{"record_id": first, "variety": "SIRA"}]})
        quality = http.get("/v1/quality", params={"since": since}).json()
        log = server.output()

    assert again.status_code == 200
    assert again.json() == {"stored": "committed", "recorded": 0, "already_known": 1}
    late = _record_id(mysql_db, spooled["request_id"], 0)
    assert _feedback(mysql_db) == sorted([(first, "SIRA"), (second, "CALI"), (late, "HOROZ")])
    assert quality["labelled"] == 3 and quality["accuracy"]["count"] == 3
    assert "naming no recorded prediction" in log and str(UNKNOWN_RECORD) in log


def test_feedback_spooled_on_one_pod_waits_for_its_prediction_spooled_on_another(
        trained_model_home: Path, mysql_db: MySQLDatabase, tmp_path: Path) -> None:
    """Issue #19, case 10: pod A replays a report naming a prediction still in pod B's spool; it was dropped
    ("naming no recorded prediction") after a 202. Now it waits (held, `drybeans_feedback_waiting`) until B's
    spool is replayed; a report whose prediction never comes is set aside as a dead letter after the wait."""
    host, port = MYSQL_ADMIN_URL.host or "127.0.0.1", MYSQL_ADMIN_URL.port or 3306
    for pod in ("a", "b"):
        (tmp_path / pod).mkdir()
    with tcp_proxy(host, port) as proxy_a, tcp_proxy(host, port) as proxy_b, \
            bentoml_serve({**mysql_db.env, "MYSQL_HOST": "127.0.0.1", "MYSQL_PORT": str(proxy_a.port),
                           "DRYBEANS_FEEDBACK_WAIT_SECONDS": "20"}, tmp_path / "a") as pod_a, \
            bentoml_serve({**mysql_db.env, "MYSQL_HOST": "127.0.0.1", "MYSQL_PORT": str(proxy_b.port)},
                          tmp_path / "b") as pod_b, pod_a.client() as http_a, pod_b.client() as http_b:
        proxy_b.cut()
        on_b = _classify(http_b, 1)
        assert on_b["stored"] == "spooled"
        proxy_a.cut()
        reports = [http_a.post("/v1/feedback", json={"items": [item]}) for item in (
            {"request_id": on_b["request_id"], "bean_index": 0, "variety": "SEKER"},
            {"request_id": "f" * 32, "bean_index": 0, "variety": "CALI"})]  # a prediction that never comes
        assert [report.status_code for report in reports] == [202, 202]
        proxy_a.restore()
        deadline = time.monotonic() + 30
        while _metric(http_a, "drybeans_feedback_waiting") < 2 and time.monotonic() < deadline:
            time.sleep(0.5)
        waiting = _metric(http_a, "drybeans_feedback_waiting")
        proxy_b.restore()
        wait_until_drained(pod_b, timeout=60)
        late = _record_id(mysql_db, on_b["request_id"], 0)
        deadline = time.monotonic() + 30
        while (late, "SEKER") not in _feedback(mysql_db) and time.monotonic() < deadline:
            time.sleep(0.5)
        stored = _feedback(mysql_db)
        wait_until_drained(pod_a, timeout=60)  # the other report waits out its 20 s, then is set aside
        dead_letters = _metric(http_a, "drybeans_dead_letters")
        log = pod_a.output()
    assert waiting == 2
    assert (late, "SEKER") in stored
    assert dead_letters == 1 and "f" * 32 in log and "after waiting 20 s" in log
    [letter] = DeadLetters(tmp_path / "a" / "spool" / "deadletter").letters()
    assert '"variety":"CALI"' in letter.line and letter.reason == f"{NO_PREDICTION} after waiting 20 s"


def _metric(http: httpx.Client, name: str) -> float:
    for line in http.get("/metrics").text.splitlines():
        if line.startswith(f"{name} "):
            return float(line.split()[1])
    raise AssertionError(f"{name} not in /metrics")
