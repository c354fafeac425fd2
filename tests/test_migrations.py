"""`python -m db.migrate` against real databases: creation, tutorial-era upgrade, idempotence, concurrency."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import create_engine, inspect, text

from config import Settings
from db import revision
from db.engine import create_db_engine, is_mysql_family
from db.migrate import head_revision, upgrade
from tests.servers import ROOT, MySQLDatabase, make_tutorial_era


def _migrate(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "db.migrate"], cwd=ROOT, env={**os.environ, **env},
                          capture_output=True, text=True, timeout=120, check=False)


@pytest.mark.system
def test_creates_the_schema_in_a_new_sqlite_file_and_is_idempotent(tmp_path: Path) -> None:
    env = {"MYSQL_HOST": "", "DATABASE_URL": "", "DRYBEANS_SQLITE_PATH": str(tmp_path / "new.sqlite3")}
    first = _migrate(env)
    assert first.returncode == 0, first.stderr
    assert f"schema at {head_revision()} (was unversioned)" in first.stdout
    second = _migrate(env)
    assert f"schema at {head_revision()} (was {head_revision()})" in second.stdout
    with sqlite3.connect(tmp_path / "new.sqlite3") as connection:
        columns = [row[1] for row in connection.execute("PRAGMA table_info(drybeans)")]
    assert columns[:3] == ["id", "name", "created_at"] and "shape_factor_4" in columns


def test_the_revision_workers_check_is_alembics_head(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'checked.sqlite3'}")
    assert head_revision() == revision.HEAD
    assert not revision.is_current(engine), "a new database is not current"
    upgrade(engine)
    assert revision.is_current(engine)
    engine.dispose()


@pytest.mark.system
def test_upgrades_a_tutorial_era_mysql_table_with_rows(mysql_db: MySQLDatabase) -> None:
    make_tutorial_era(mysql_db, ["HOROZ", "CALI"])
    result = _migrate(mysql_db.env)
    assert result.returncode == 0, result.stderr
    assert "(was unversioned)" in result.stdout
    assert "password" not in result.stdout.lower()
    engine = mysql_db.engine()
    with engine.connect() as connection:
        rows = connection.execute(text("SELECT id, name FROM drybeans ORDER BY id")).all()
    assert rows == [(1, "HOROZ"), (2, "CALI")]
    names = {c["name"] for c in inspect(engine).get_columns("drybeans")}
    assert {"request_id", "bean_index", "model_tag", "area", "shape_factor_4"} <= names
    assert {u["name"] for u in inspect(engine).get_unique_constraints("drybeans")} == {"uq_drybeans_request_bean"}
    feedback = inspect(engine)
    assert [c["name"] for c in feedback.get_columns("feedback")] == ["id", "record_id", "variety", "reported_at",
                                                                     "request_id", "bean_index"]
    assert [u["column_names"] for u in feedback.get_unique_constraints("feedback")] == [["record_id"]]
    assert [(k["referred_table"], k["referred_columns"]) for k in feedback.get_foreign_keys("feedback")] == [
        ("drybeans", ["id"])]


@pytest.mark.system
@pytest.mark.parametrize("scheme", ["mysql+pymysql", "mariadb+pymysql"])
def test_concurrent_migrations_of_a_new_mysql_database_serialise(mysql_db: MySQLDatabase, scheme: str) -> None:
    """The migration lock holds on either name of a MySQL-family URL (issue #19, case 11)."""
    with mysql_db.engine().begin() as connection:
        for table in ("feedback", "drybeans", "model_roles", "shadow_predictions", "alembic_version"):
            connection.execute(text(f"DROP TABLE IF EXISTS {table}"))  # feedback first: its foreign key names drybeans
    env = {**os.environ, "DATABASE_URL": mysql_db.url.set(drivername=scheme).render_as_string(False)}
    runs = [subprocess.Popen([sys.executable, "-m", "db.migrate"], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True) for _ in range(3)]
    outcomes = [run.communicate(timeout=120) for run in runs]
    assert [run.returncode for run in runs] == [0, 0, 0], outcomes
    assert sum("(was unversioned)" in out for out, _ in outcomes) == 1


@pytest.mark.database
@pytest.mark.parametrize("scheme", ["mysql+pymysql", "mariadb+pymysql"])
def test_every_mysql_family_url_gets_utc_sessions_and_timeouts(mysql_db: MySQLDatabase, scheme: str) -> None:
    settings = Settings(DATABASE_URL=mysql_db.url.set(drivername=scheme).render_as_string(False),
                        db_timeout_seconds=3)
    engine = create_db_engine(settings)
    with engine.connect() as connection:
        zone, limit = connection.execute(text("SELECT @@session.time_zone, @@session.max_statement_time")).one()
    engine.dispose()
    assert (zone, float(limit)) == ("+00:00", 3.0)
    assert engine.dialect.name == scheme.split("+")[0] and is_mysql_family(engine.dialect)
