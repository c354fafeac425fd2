"""What every process that records predictions does first: the schema brought to head when it is behind, and the
writer with its spool. Shared by the service's workers and `score.py --store`."""

from __future__ import annotations

import logging

from sqlalchemy import Engine
from sqlalchemy.exc import OperationalError

from config import Settings
from db import revision
from db.spool import Spool
from db.writer import GroupCommitWriter

logger = logging.getLogger("drybeans")


def migrate_if_behind(engine: Engine, settings: Settings) -> None:
    """Bring the schema to head when the settings ask for it and it is behind; a database that does not answer is
    logged, not raised: the predictions are spooled until it is back."""
    if not settings.migrate_on_startup:
        return
    try:
        if not revision.is_current(engine):
            from db import migrate  # Alembic, only when there is something to migrate

            migrate.upgrade(engine)
    except OperationalError as exc:
        logger.warning("database unreachable at start-up, schema not migrated: %s", type(exc).__name__)


def open_writer(engine: Engine, settings: Settings) -> GroupCommitWriter:
    """The group-commit writer on `engine`, with the spool the settings give."""
    return GroupCommitWriter(engine, Spool(settings.spool_dir, settings.spool_max_bytes),
                             replay_rows_per_second=settings.replay_rows_per_second,
                             feedback_wait_seconds=settings.feedback_wait_seconds)
