"""Schema migrations: `python -m db.migrate` brings the configured database to the newest schema.

Run it as its own step (a Compose one-shot service, a Kubernetes Job) with a user allowed to alter the schema;
given DRYBEANS_APP_DB_USER, it then grants that (service) user SELECT and INSERT on the predictions, feedback,
model roles and shadow predictions tables only: rows are added and read, never changed or deleted.
"""

from __future__ import annotations

import fcntl
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, text

from config import get_settings
from db.engine import create_db_engine, is_mysql_family
from db.models import Feedback, Prediction, RoleChange, ShadowPrediction

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
LOCK_NAME = "drybeans_schema_migration"
LOCK_TIMEOUT_SECONDS = 60
MYSQL_USER_NAME = re.compile(r"[A-Za-z0-9_.-]{1,32}")
# The service reads feedback too: to tell a repeated report from a contradicting one, and for live quality.
APP_TABLES = (Prediction.__tablename__, Feedback.__tablename__, RoleChange.__tablename__,
              ShadowPrediction.__tablename__)


def alembic_config(connection: Connection) -> Config:
    """Alembic's configuration for this project, bound to an open connection."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


def head_revision() -> str | None:
    """The newest schema revision."""
    return ScriptDirectory(str(MIGRATIONS)).get_current_head()


def current_revision(engine: Engine) -> str | None:
    """The schema revision the database is at (None for a new or tutorial-era database)."""
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def upgrade(engine: Engine) -> str | None:
    """Bring the schema to head; safe to call from several processes at once. Returns the revision found."""
    with _exclusive(engine):
        before = current_revision(engine)
        with engine.begin() as connection:
            command.upgrade(alembic_config(connection), "head")
    return before


@contextmanager
def _exclusive(engine: Engine) -> Iterator[None]:
    """Hold a lock that serialises migrations across processes sharing the database."""
    if is_mysql_family(engine.dialect):
        with engine.connect() as connection:
            if connection.scalar(text("SELECT GET_LOCK(:name, :timeout)"),
                                 {"name": LOCK_NAME, "timeout": LOCK_TIMEOUT_SECONDS}) != 1:
                raise TimeoutError(f"another process held the migration lock for {LOCK_TIMEOUT_SECONDS} s")
            try:
                yield
            finally:
                connection.execute(text("SELECT RELEASE_LOCK(:name)"), {"name": LOCK_NAME})
    elif engine.dialect.name == "sqlite" and engine.url.database not in (None, "", ":memory:"):
        with open(f"{engine.url.database}.migrate.lock", "w") as lock_file:
            fcntl.flock(lock_file, fcntl.LOCK_EX)
            yield
    else:
        yield


def grant_app_user(engine: Engine, user: str) -> None:
    """Let the service's MySQL user read and insert predictions and feedback, and nothing more."""
    if not MYSQL_USER_NAME.fullmatch(user):
        raise ValueError(f"DRYBEANS_APP_DB_USER {user!r} is not a plain MySQL user name")
    # Identifiers cannot be bound parameters; the name is checked above and the table name is ours.
    with engine.begin() as connection:
        for table in APP_TABLES:
            connection.execute(text(f"GRANT SELECT, INSERT ON {table} TO '{user}'@'%'"))


def main() -> int:
    """Migrate the configured database, then grant the service user its privileges if one is named."""
    settings = get_settings()
    engine = create_db_engine(settings, bounded=False)  # altering a large table may take minutes
    before = upgrade(engine)
    print(f"schema at {current_revision(engine)} (was {before or 'unversioned'}) on {engine.url!r}")
    if settings.app_db_user and is_mysql_family(engine.dialect):
        grant_app_user(engine, settings.app_db_user)
        print(f"granted SELECT, INSERT on {', '.join(APP_TABLES)} to {settings.app_db_user}")
    engine.dispose()
    return 0


if __name__ == "__main__":
    sys.exit(main())
