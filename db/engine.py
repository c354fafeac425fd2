"""One engine (and connection pool) per worker process."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL

from config import Settings

CONNECT_TIMEOUT_SECONDS = 5


def create_db_engine(settings: Settings) -> Engine:
    """An engine for the configured database: pooled with pre-ping for MySQL, WAL-mode SQLite otherwise."""
    url = settings.sqlalchemy_url
    if url.get_backend_name() == "sqlite":
        return _sqlite_engine(url)
    connect_args: dict[str, Any] = {}
    if url.get_backend_name() == "mysql":
        # UTC sessions, so TIMESTAMP columns read back as written; fail fast when the server is away.
        connect_args = {"connect_timeout": CONNECT_TIMEOUT_SECONDS, "init_command": "SET time_zone = '+00:00'"}
    return create_engine(
        url,
        pool_pre_ping=True,
        pool_recycle=settings.pool_recycle_seconds,
        pool_size=settings.pool_size,
        max_overflow=settings.pool_size,
        pool_timeout=CONNECT_TIMEOUT_SECONDS,
        connect_args=connect_args,
    )


def _sqlite_engine(url: URL) -> Engine:
    engine = create_engine(url, connect_args={"timeout": 30})

    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_connection: Any, _record: Any) -> None:
        # WAL lets several worker processes read while one writes.
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    return engine
