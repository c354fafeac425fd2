"""The schema revision this code expects, and whether a database is at it: one query, without loading Alembic.

Every worker checks at start-up; only a database behind it pays for Alembic (`db.migrate`), which took ~0.4 s of
each start (its import, and the migration lock the workers queued on) even when there was nothing to do.
"""

from __future__ import annotations

from sqlalchemy import Engine, text

HEAD = "0005"  # the newest file in migrations/versions; tests/test_migrations.py holds it to Alembic's own head


def is_current(engine: Engine) -> bool:
    """Whether the database's schema is at HEAD. Raises SQLAlchemy's errors when the database does not answer."""
    with engine.connect() as connection:
        if not connection.dialect.has_table(connection, "alembic_version"):
            return False
        return bool(connection.scalar(text("SELECT version_num FROM alembic_version")) == HEAD)
