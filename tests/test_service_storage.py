"""Where predictions go: the embedded SQLite default, a database that is down, a tutorial-era MySQL table."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text

from api.schemas import EXAMPLE_BEAN, EXAMPLE_ROW
from db import migrate
from tests.servers import MySQLDatabase, bentoml_serve, free_port, make_tutorial_era

pytestmark = pytest.mark.system

NO_MYSQL = {"MYSQL_HOST": "", "DATABASE_URL": ""}


def test_with_no_database_configured_predictions_go_to_an_embedded_sqlite_file(trained_model_home: Path,
                                                                               tmp_path: Path) -> None:
    database = tmp_path / "beans.sqlite3"
    with bentoml_serve({**NO_MYSQL, "DRYBEANS_SQLITE_PATH": str(database)}, tmp_path) as server:
        response = httpx.post(f"{server.url}/predict", json={"data": [EXAMPLE_ROW, EXAMPLE_ROW]})
        assert response.json() == {"predictions": '["DERMASON", "DERMASON"]'}
        assert httpx.get(f"{server.url}/v1/predictions/counts").json() == {"counts": {"DERMASON": 2}, "total": 2}
    with sqlite3.connect(database) as connection:
        assert connection.execute("SELECT name, area FROM drybeans").fetchall() == [("DERMASON", 33958.0)] * 2


def test_a_database_that_does_not_answer_leaves_the_service_ready_to_spool(trained_model_home: Path,
                                                                            tmp_path: Path) -> None:
    nowhere = {"MYSQL_HOST": "127.0.0.1", "MYSQL_PORT": str(free_port()), "MYSQL_USER": "drybeans",
               "MYSQL_DB": "drybeans", "DRYBEANS_MIGRATE_ON_STARTUP": "false",
               "DRYBEANS_SPOOL_DIR": str(tmp_path / "spool")}
    with bentoml_serve(nowhere, tmp_path, expect_ready=False) as server:
        assert httpx.get(f"{server.url}/livez").status_code == 200
        unstored = httpx.post(f"{server.url}/predict", json={"data": [EXAMPLE_ROW], "store": False})
        assert unstored.json() == {"predictions": '["DERMASON"]'}
        assert unstored.headers["X-Prediction-Store"] == "skipped"
        stored = httpx.post(f"{server.url}/predict", json={"data": [EXAMPLE_ROW, EXAMPLE_ROW]})
        assert stored.json() == {"predictions": '["DERMASON", "DERMASON"]'}
        assert stored.headers["X-Prediction-Store"] == "spooled"
        typed = httpx.post(f"{server.url}/v1/classify", json={"beans": [EXAMPLE_BEAN]}).json()
        assert typed["stored"] == "spooled" and typed["predictions"][0]["record_id"] is None
        readiness = httpx.get(f"{server.url}/readyz")
        assert readiness.status_code == 200, "a database outage alone must not take the pod out of service"
        assert readiness.json() == {"ready": True, "model": typed["model"], "database": "down", "spool": "ok",
                                    "spool_depth": 3}
        assert "drybeans_spool_depth 3" in httpx.get(f"{server.url}/metrics").text


@pytest.fixture
def tutorial_era_db(mysql_db: MySQLDatabase) -> MySQLDatabase:
    """The module's database holding the tutorial's table with three of its rows."""
    make_tutorial_era(mysql_db, ["SIRA", "SEKER", "DERMASON"])
    return mysql_db


def test_a_tutorial_era_table_is_upgraded_in_place_keeping_its_rows(trained_model_home: Path,
                                                                    tutorial_era_db: MySQLDatabase,
                                                                    tmp_path: Path) -> None:
    with bentoml_serve(tutorial_era_db.env, tmp_path) as server:
        httpx.post(f"{server.url}/predict", json={"data": [EXAMPLE_ROW]}).raise_for_status()
        page = httpx.get(f"{server.url}/v1/predictions", params={"limit": 10}).json()
    assert [(item["id"], item["name"]) for item in page["items"]] == [
        (4, "DERMASON"), (3, "DERMASON"), (2, "SEKER"), (1, "SIRA")]
    assert page["items"][-1]["features"] is None and page["items"][0]["features"]["Area"] == 33958.0
    with tutorial_era_db.engine().connect() as connection:
        # The tutorial's own query still works.
        assert connection.execute(text("SELECT id, name FROM drybeans ORDER BY id")).all()[:3] == [
            (1, "SIRA"), (2, "SEKER"), (3, "DERMASON")]
        assert connection.scalar(text("SELECT version_num FROM alembic_version")) == migrate.head_revision()
