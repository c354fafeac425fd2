"""Issue #19, cases 7, 8 and 11: a record the database refuses, or a spool line this version cannot store, is set
aside as a dead letter with its reason, and everything else flows on; `mariadb+pymysql://` gets every protection
`mysql+pymysql://` has.

In process first (the writer against MariaDB through both URL schemes), then against a real `bentoml serve` that
connects as a least-privilege user through `mariadb+pymysql://` and a TCP proxy (to cut or freeze the database).
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, create_engine, text

from api.schemas import EXAMPLE_BEAN, EXAMPLE_ROW
from db.base import Base
from db.codec import encode_prediction
from db.deadletter import DeadLetters, replay
from db.migrate import upgrade
from db.spool import Spool
from db.store import PredictionRecord
from db.writer import GroupCommitWriter, WriteResult
from tests.servers import MYSQL_ADMIN_URL, ROOT, MySQLDatabase, Server, bentoml_serve
from tests.tcp_proxy import TcpProxy, tcp_proxy
from tests.traffic import wait_until_drained

MYSQL_SCHEMES = ["mysql+pymysql", "mariadb+pymysql"]
POISON_AREA = 31337.0  # a trigger refuses it
POISON_PERIMETER = 777.7  # a CHECK constraint refuses it
TRIGGER = ("CREATE TRIGGER refuse_poison BEFORE INSERT ON drybeans FOR EACH ROW "
           f"IF NEW.area = {POISON_AREA} THEN SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'poison area'; END IF")
CHECK = f"ALTER TABLE drybeans ADD CONSTRAINT no_poison CHECK (perimeter IS NULL OR perimeter <> {POISON_PERIMETER})"


def _records(request_id: str, n: int = 1, **feature: float) -> list[PredictionRecord]:
    row = dict(zip(("area", "perimeter"), EXAMPLE_ROW[:2], strict=True)) | feature
    features = (row["area"], row["perimeter"], *EXAMPLE_ROW[2:])
    return [PredictionRecord(request_id, i, "DERMASON", "m:1", datetime(2026, 1, 1), features) for i in range(n)]


def _stored(engine: Engine) -> dict[str, int]:
    with engine.connect() as connection:
        return dict(connection.execute(text("SELECT request_id, COUNT(*) FROM drybeans GROUP BY request_id")).all())


@pytest.fixture(params=MYSQL_SCHEMES)
def engine(request: pytest.FixtureRequest, mysql_db: MySQLDatabase) -> Iterator[Engine]:
    engine = create_engine(mysql_db.url.set(drivername=request.param))
    with engine.begin() as connection:
        connection.execute(text("DROP TRIGGER IF EXISTS refuse_poison"))
    Base.metadata.drop_all(engine)
    Base.metadata.create_all(engine)
    yield engine
    engine.dispose()


@pytest.mark.database
def test_a_refused_request_is_set_aside_and_the_rest_of_its_round_committed_at_once(engine: Engine,
                                                                                     tmp_path: Path) -> None:
    with engine.begin() as connection:
        connection.execute(text(TRIGGER))
    spool = Spool(tmp_path / "spool")

    async def scenario() -> tuple[list[WriteResult], list[WriteResult], float]:
        writer = GroupCommitWriter(engine, spool)
        try:
            poison = writer.write(_records("poison", 3, area=POISON_AREA))
            together = await asyncio.gather(*(writer.write(_records(f"innocent{n}", 3), want_ids=True)
                                              for n in range(10)), poison,
                                            *(writer.write(_records(f"after{n}", 2)) for n in range(10)))
            started = time.monotonic()
            later = [await writer.write(_records(f"later{n}")) for n in range(20)]
            return list(together), later, time.monotonic() - started
        finally:
            writer.close()

    together, later, seconds = asyncio.run(scenario())
    assert [result.status for result in together] == ["committed"] * 10 + ["spooled"] + ["committed"] * 10
    assert all(len(result.ids) == 3 for result in together[:10])
    assert {result.status for result in later} == {"committed"} and seconds < 2, "the writer backed off"
    stored = _stored(engine)
    assert "poison" not in stored and len(stored) == 40
    letters = spool.dead_letters.letters()
    assert [(letter.kind, json.loads(letter.line)[0]) for letter in letters] == [("prediction", "poison")] * 3
    assert {letter.reason for letter in letters} == {"(1644) poison area"}
    assert spool.depth() == 0

    with engine.begin() as connection:  # the operator removes the cause, then replays the dead letters
        connection.execute(text("DROP TRIGGER refuse_poison"))
    assert replay(engine, spool.dead_letters) == (3, [])
    assert _stored(engine)["poison"] == 3 and spool.dead_letters.count() == 0


@pytest.mark.database
def test_a_spooled_record_a_check_refuses_is_set_aside_never_dropped(engine: Engine, tmp_path: Path) -> None:
    """INSERT IGNORE turned the CHECK failure into a warning and dropped the row; now it is a dead letter."""
    with engine.begin() as connection:
        connection.execute(text(CHECK))
    spool = Spool(tmp_path / "spool")
    spool.append([*_records("before"), *_records("checked", 2, perimeter=POISON_PERIMETER), *_records("behind")])
    spool.release()  # left by an outage

    async def scenario() -> None:
        writer = GroupCommitWriter(engine, spool)
        writer.close(drain_seconds=10)

    asyncio.run(scenario())
    assert _stored(engine) == {"before": 1, "behind": 1}
    letters = spool.dead_letters.letters()
    assert [json.loads(letter.line)[:2] for letter in letters] == [["checked", 0], ["checked", 1]]
    assert "no_poison" in letters[0].reason and spool.depth() == 0


@pytest.mark.database
def test_a_ragged_spool_line_is_set_aside_without_delaying_anything(engine: Engine, tmp_path: Path) -> None:
    """Case 8: a line with 15 features (another version's) used to fail every replay and stall live writes."""
    directory = tmp_path / "spool"
    directory.mkdir()
    ragged = json.dumps(["ragged", 0, "SIRA", "m:0", "2026-01-01T00:00:00", EXAMPLE_ROW[:15]])
    (directory / "4242-0ld0f11e.jsonl").write_text(
        f"{encode_prediction(_records('old')[0])}\n{ragged}\n{encode_prediction(_records('old2')[0])}\n")
    spool = Spool(directory)

    async def scenario() -> tuple[list[str], float]:
        writer = GroupCommitWriter(engine, spool)
        try:
            await asyncio.sleep(0.5)  # the first replay is due at once
            started = time.monotonic()
            statuses = [(await writer.write(_records(f"live{n}"))).status for n in range(20)]
            return statuses, time.monotonic() - started
        finally:
            writer.close()

    statuses, seconds = asyncio.run(scenario())
    assert set(statuses) == {"committed"} and seconds < 2
    assert {"old", "old2"} <= set(_stored(engine))
    [letter] = spool.dead_letters.letters()
    assert letter.line == ragged and letter.reason == "spool line: 15 features; a bean has 16"


# Against a real `bentoml serve`, as a least-privilege user, through mariadb+pymysql:// and a proxy.

@pytest.fixture(scope="module")
def app_user(mysql_db: MySQLDatabase) -> Iterator[tuple[str, str]]:
    """The service's user: SELECT and INSERT on its two tables, as `python -m db.migrate` grants."""
    engine = mysql_db.engine()
    Base.metadata.drop_all(engine)  # as the tests above left it: the schema without its version
    upgrade(engine)
    engine.dispose()
    name, password = f"drybeans_poison_{secrets.token_hex(4)}", secrets.token_hex(16)
    admin = create_engine(MYSQL_ADMIN_URL)
    with admin.begin() as connection:
        connection.execute(text(f"CREATE USER '{name}'@'%' IDENTIFIED BY '{password}'"))
        for table in ("drybeans", "feedback"):
            connection.execute(text(f"GRANT SELECT, INSERT ON {mysql_db.url.database}.{table} TO '{name}'@'%'"))
    yield name, password
    with admin.begin() as connection:
        connection.execute(text(f"DROP USER IF EXISTS '{name}'@'%'"))
    admin.dispose()


@pytest.fixture(scope="module")
def pod(trained_model_home: Path, mysql_db: MySQLDatabase, app_user: tuple[str, str],
        tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, TcpProxy, dict[str, str]]]:
    logs = tmp_path_factory.mktemp("poison")
    with tcp_proxy(MYSQL_ADMIN_URL.host or "127.0.0.1", MYSQL_ADMIN_URL.port or 3306) as proxy:
        user, password = app_user
        env = {"DATABASE_URL": f"mariadb+pymysql://{user}:{password}@127.0.0.1:{proxy.port}/"
                               f"{mysql_db.url.database}?charset=utf8mb4",
               "DRYBEANS_MIGRATE_ON_STARTUP": "false", "DRYBEANS_DB_TIMEOUT_SECONDS": "2",
               "DRYBEANS_SPOOL_DIR": str(logs / "spool")}
        with bentoml_serve(env, logs) as server:
            yield server, proxy, env


def _admin(mysql_db: MySQLDatabase, *statements: str) -> None:
    with mysql_db.engine().begin() as connection:
        for statement in statements:
            connection.execute(text(statement))


def _classify(server: Server, bean: dict[str, Any] | None = None, beans: int = 1) -> tuple[dict[str, Any], float]:
    started = time.monotonic()
    response = httpx.post(f"{server.url}/v1/classify", json={"beans": [bean or EXAMPLE_BEAN] * beans}, timeout=60)
    assert response.status_code == 200, response.text
    return response.json(), time.monotonic() - started


def _letters(env: dict[str, str]) -> DeadLetters:
    return DeadLetters(Path(env["DRYBEANS_SPOOL_DIR"]) / "deadletter")


def _metric(server: Server, name: str) -> float:
    for line in httpx.get(f"{server.url}/metrics", timeout=10).text.splitlines():
        if line.startswith(f"{name} "):
            return float(line.split()[1])
    raise AssertionError(f"{name} not in /metrics")


def _replay_dead_letters(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "db.deadletter", "replay"], cwd=ROOT, env={**os.environ, **env},
                          capture_output=True, text=True, timeout=60, check=False)


@pytest.mark.system
def test_a_poison_request_is_set_aside_and_every_other_request_committed(
        pod: tuple[Server, TcpProxy, dict[str, str]], mysql_db: MySQLDatabase) -> None:
    server, _proxy, env = pod
    _admin(mysql_db, TRIGGER)
    try:
        with ThreadPoolExecutor(8) as pool:
            poison = pool.submit(_classify, server, {**EXAMPLE_BEAN, "Area": POISON_AREA}, 2)
            innocent = list(pool.map(lambda _: _classify(server), range(40)))
        refused, _ = poison.result()
        afterwards = [_classify(server) for _ in range(10)]
        readiness = httpx.get(f"{server.url}/readyz", timeout=10).json()
        dead_letters = _metric(server, "drybeans_dead_letters")
    finally:
        _admin(mysql_db, "DROP TRIGGER IF EXISTS refuse_poison")
    assert refused["stored"] == "spooled"
    assert [answer["stored"] for answer, _ in innocent + afterwards] == ["committed"] * 50
    assert max(seconds for _, seconds in innocent + afterwards) < 2, "a request waited beyond the database timeout"
    assert readiness["database"] == "up" and readiness["spool_depth"] == 0
    assert dead_letters == 2
    letters = [letter for letter in _letters(env).letters() if json.loads(letter.line)[0] == refused["request_id"]]
    assert [letter.reason for letter in letters] == ["(1644) poison area"] * 2
    # Fixed (the trigger dropped): the operator replays, and the request is stored.
    result = _replay_dead_letters(env)
    assert result.returncode == 0, result.stderr + result.stdout
    assert _stored(mysql_db.engine())[refused["request_id"]] == 2
    assert _metric(server, "drybeans_dead_letters") == 0


@pytest.mark.system
def test_a_record_a_check_refuses_at_replay_is_set_aside_never_dropped(
        pod: tuple[Server, TcpProxy, dict[str, str]], mysql_db: MySQLDatabase) -> None:
    server, proxy, env = pod
    _admin(mysql_db, CHECK)
    try:
        proxy.cut()
        try:
            checked, _ = _classify(server, {**EXAMPLE_BEAN, "Perimeter": POISON_PERIMETER})
            innocent, _ = _classify(server)
        finally:
            proxy.restore()
        wait_until_drained(server, timeout=60)
    finally:
        _admin(mysql_db, "ALTER TABLE drybeans DROP CONSTRAINT no_poison")
    assert checked["stored"] == innocent["stored"] == "spooled"
    stored = _stored(mysql_db.engine())
    assert innocent["request_id"] in stored and checked["request_id"] not in stored
    letters = [letter for letter in _letters(env).letters() if json.loads(letter.line)[0] == checked["request_id"]]
    assert len(letters) == 1 and "no_poison" in letters[0].reason
    assert _replay_dead_letters(env).returncode == 0
    assert _stored(mysql_db.engine())[checked["request_id"]] == 1


@pytest.mark.system
def test_feedback_refused_by_a_revoked_grant_is_set_aside_and_predictions_flow_on(
        pod: tuple[Server, TcpProxy, dict[str, str]], mysql_db: MySQLDatabase, app_user: tuple[str, str]) -> None:
    server, _proxy, env = pod
    grant = f"SELECT, INSERT ON {mysql_db.url.database}.feedback"
    committed, _ = _classify(server)
    _admin(mysql_db, f"REVOKE INSERT ON {mysql_db.url.database}.feedback FROM '{app_user[0]}'@'%'")
    try:
        report = httpx.post(f"{server.url}/v1/feedback", timeout=30, json={"items": [
            {"record_id": committed["predictions"][0]["record_id"], "variety": "SIRA"}]})
        afterwards = [_classify(server) for _ in range(10)]
    finally:
        _admin(mysql_db, f"GRANT {grant} TO '{app_user[0]}'@'%'")
    assert report.status_code == 202 and report.json()["stored"] == "spooled"
    assert [answer["stored"] for answer, _ in afterwards] == ["committed"] * 10
    assert max(seconds for _, seconds in afterwards) < 2
    letters = [letter for letter in _letters(env).letters() if letter.kind == "feedback"]
    assert len(letters) == 1 and "(1142)" in letters[0].reason
    assert _replay_dead_letters(env).returncode == 0
    with mysql_db.engine().connect() as connection:
        assert connection.execute(text("SELECT record_id, variety FROM feedback")).all() == [
            (committed["predictions"][0]["record_id"], "SIRA")]


@pytest.mark.system
def test_a_ragged_spool_line_is_set_aside_and_requests_are_not_delayed(
        pod: tuple[Server, TcpProxy, dict[str, str]], mysql_db: MySQLDatabase) -> None:
    server, _proxy, env = pod
    ragged = json.dumps(["ragged", 0, "SIRA", "m:0", "2026-01-01T00:00:00", EXAMPLE_ROW[:15]])
    whole = encode_prediction(_records("rolled-back")[0])
    (Path(env["DRYBEANS_SPOOL_DIR"]) / "4242-0ld0f11e.jsonl").write_text(f"{ragged}\n{whole}\n")
    answers = [_classify(server) for _ in range(30)]
    wait_until_drained(server, timeout=30)
    assert [answer["stored"] for answer, _ in answers] == ["committed"] * 30
    assert max(seconds for _, seconds in answers) < 1
    assert "rolled-back" in _stored(mysql_db.engine())
    assert [(letter.line, letter.reason) for letter in _letters(env).letters()] == [
        (ragged, "spool line: 15 features; a bean has 16")]


@pytest.mark.system
def test_a_frozen_database_is_spooled_around_on_a_mariadb_url(pod: tuple[Server, TcpProxy, dict[str, str]],
                                                               mysql_db: MySQLDatabase) -> None:
    """Case 11: mariadb+pymysql:// had no client timeouts (a 504 after 60 s) and no UTC session."""
    server, proxy, _env = pod
    proxy.freeze()
    try:
        frozen, seconds = _classify(server)
    finally:
        proxy.thaw()
    wait_until_drained(server, timeout=60)
    assert frozen["stored"] == "spooled" and seconds < 12
    assert frozen["request_id"] in _stored(mysql_db.engine())
