"""One engine (and connection pool) per worker process."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL, Dialect
from sqlalchemy.pool import NullPool

from config import Settings

MIGRATION_CONNECT_TIMEOUT_SECONDS = 10
# SQLAlchemy's names for MySQL and MariaDB servers: `mysql+pymysql://` and `mariadb+pymysql://` reach the same
# servers through the same driver, and get the same protections.
MYSQL_FAMILY = frozenset({"mysql", "mariadb"})


def is_mysql_family(dialect: Dialect | URL) -> bool:
    """Whether a dialect (or a URL) speaks to a MySQL or MariaDB server, whichever name the URL gave it."""
    return (dialect.get_backend_name() if isinstance(dialect, URL) else dialect.name) in MYSQL_FAMILY


def create_db_engine(settings: Settings, *, bounded: bool = True, pooled: bool = True) -> Engine:
    """An engine for the configured database: pooled with pre-ping for MySQL, WAL-mode SQLite otherwise.

    `bounded` (serving): every call gives up after `db_timeout_seconds` — connecting, sending, waiting for an
    answer, and on the server each statement — so that a frozen database is an outage the writer spools
    around instead of a hang. Migrations run unbounded: altering a large table may take minutes.
    `pooled=False` opens a connection per use, for a health probe that must not queue behind reads.
    """
    url = settings.sqlalchemy_url
    if url.get_backend_name() == "sqlite":
        return _sqlite_engine(url)
    connect_args: dict[str, Any] = {}
    if is_mysql_family(url):
        # UTC sessions, so TIMESTAMP columns read back as written.
        connect_args = {"init_command": "SET time_zone = '+00:00'",
                        "connect_timeout": MIGRATION_CONNECT_TIMEOUT_SECONDS}
        if bounded:
            timeout = settings.db_timeout_seconds
            connect_args |= {"connect_timeout": timeout, "read_timeout": timeout, "write_timeout": timeout}
    pool_args: dict[str, Any] = (
        {"pool_size": settings.pool_size, "max_overflow": settings.pool_size,
         "pool_timeout": settings.db_timeout_seconds, "pool_recycle": settings.pool_recycle_seconds}
        if pooled else {"poolclass": NullPool})
    engine = create_engine(url, pool_pre_ping=pooled, connect_args=connect_args, **pool_args)
    if bounded and is_mysql_family(url):
        _limit_statement_time(engine, settings.db_timeout_seconds)
    return engine


def _limit_statement_time(engine: Engine, seconds: float) -> None:
    """Have the server abort a statement running longer than the client waits for it.

    Without this, a read the client gave up on (a deep OFFSET on a large table) keeps a server thread busy.
    MariaDB bounds every statement (`max_statement_time`, seconds); MySQL bounds SELECTs
    (`max_execution_time`, milliseconds).
    """

    @event.listens_for(engine, "connect")
    def _set_limit(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        if "MariaDB" in dbapi_connection.get_server_info():
            cursor.execute("SET SESSION max_statement_time = %s", (seconds,))
        else:
            cursor.execute("SET SESSION max_execution_time = %s", (int(seconds * 1000),))
        cursor.close()


def _sqlite_engine(url: URL) -> Engine:
    if url.database not in (None, "", ":memory:"):  # a file: its folder (DRYBEANS_STATE_DIR) made on first use
        Path(str(url.database)).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, connect_args={"timeout": 30})

    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_connection: Any, _record: Any) -> None:
        # WAL lets several worker processes read while one writes.
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    return engine
