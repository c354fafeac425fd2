"""Feedback takes the durable path of predictions (issue #13), against a real `bentoml serve` and MariaDB behind
a TCP proxy that cuts the database on demand: reports made while it is down are spooled (202), replayed once it
is back, after the predictions they may name, and counted by /v1/quality exactly once."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import text

from schemas import EXAMPLE_BEAN
from tests.servers import MYSQL_ADMIN_URL, MySQLDatabase, bentoml_serve
from tests.tcp_proxy import tcp_proxy
from tests.traffic import wait_until_drained

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
            [{"record_id": UNKNOWN_RECORD, "variety": "SEKER"}],  # dropped at replay, with a warning
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
