"""Settings from the environment: the tutorial's variables, DATABASE_URL, the SQLite default, clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from config import Settings, get_settings


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("DATABASE_URL", "MYSQL_HOST", "MYSQL_PORT", "MYSQL_USER", "MYSQL_PASSWORD", "MYSQL_DB",
                 "DRYBEANS_SQLITE_PATH"):
        monkeypatch.delenv(name, raising=False)
    get_settings.cache_clear()


def test_sqlite_by_default() -> None:
    assert Settings().sqlalchemy_url.render_as_string() == "sqlite+pysqlite:///var/drybeans.sqlite3"


def test_the_tutorials_variables_build_a_pymysql_url(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {"MYSQL_HOST": "mysql", "MYSQL_USER": "root", "MYSQL_PASSWORD": "p@ss:/word",
                        "MYSQL_DB": "drybeans_db"}.items():
        monkeypatch.setenv(name, value)
    url = get_settings().sqlalchemy_url
    assert (url.drivername, url.host, url.port, url.database) == ("mysql+pymysql", "mysql", 3306, "drybeans_db")
    assert url.password == "p@ss:/word" and url.query == {"charset": "utf8mb4"}
    assert "p@ss" not in repr(get_settings()) and "p@ss" not in repr(url)


def test_database_url_wins(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("MYSQL_HOST", "ignored")
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path}/x.db")
    assert Settings().sqlalchemy_url.database == f"{tmp_path}/x.db"


def test_empty_variables_count_as_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "")
    monkeypatch.setenv("MYSQL_HOST", "")
    assert Settings().sqlalchemy_url.get_backend_name() == "sqlite"


def test_incomplete_mysql_settings_say_what_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MYSQL_HOST", "db")
    with pytest.raises(ValidationError, match="MYSQL_HOST is set, so MYSQL_USER and MYSQL_DB must be set too"):
        Settings()


def test_a_bad_database_url_is_refused_without_echoing_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "not a url with sekret")
    with pytest.raises(ValidationError) as caught:
        Settings()
    assert "DATABASE_URL is not a SQLAlchemy URL" in str(caught.value)
    assert "sekret" not in str(caught.value)
