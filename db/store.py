"""Writes and reads of recorded predictions. The caller owns the transaction (`with connection.begin()`)."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from datetime import datetime
from typing import NamedTuple

import numpy as np
import orjson
from sqlalchemy import Connection, Table, func, insert, select
from sqlalchemy.orm import Session

from db.engine import is_mysql_family
from db.models import FEATURE_COLUMNS, Prediction

PREDICTIONS: Table = Prediction.__table__  # type: ignore[assignment]  # Core inserts: no ORM bookkeeping per row
RecordKey = tuple[str, int]  # (request_id, bean_index): the idempotency key of a record
FLAG_COLUMNS = ("consistent", "in_distribution", "needs_review")
ROW_COLUMNS = ("request_id", "bean_index", "name", "model_tag", "created_at", *FEATURE_COLUMNS.values(), *FLAG_COLUMNS)
Flags = tuple[bool, bool | None, bool]  # consistent, in_distribution (None: not assessed), needs_review
NO_FLAGS = (None, None, None)
ROWS_PER_STATEMENT = 2_000  # ~0.5 MB of SQL, well below max_allowed_packet (4 MB where it is smallest)


class PredictionRecord(NamedTuple):
    """What is recorded about one classified bean (a named tuple: a 10,000-bean request makes 10,000 of them, in
    6 ms where a frozen dataclass took 20)."""

    request_id: str
    bean_index: int
    name: str
    model_tag: str
    created_at: datetime  # naive UTC
    features: tuple[float, ...]
    flags: Flags | None = None  # which answers to doubt (trust/); None: not assessed (/predict)

    @property
    def key(self) -> RecordKey:
        """The record's idempotency key."""
        return self.request_id, self.bean_index

    def as_row(self) -> dict[str, object]:
        """Column values for an INSERT."""
        return dict(zip(ROW_COLUMNS, (self.request_id, self.bean_index, self.name, self.model_tag, self.created_at,
                                      *self.features, *(self.flags or NO_FLAGS)), strict=True))


def insert_predictions(connection: Connection, records: Sequence[PredictionRecord], *,
                       skip_existing: bool = False) -> None:
    """Insert records in multi-row statements.

    `skip_existing` makes the write idempotent (a replay after an outage): records whose key is already stored
    are left out (one SELECT first; the service's user may not UPDATE, so no ON DUPLICATE KEY UPDATE). Only those
    are: a row the database refuses for any other reason (a CHECK, a trigger, a value out of range) fails the
    statement, never vanishes as it did under INSERT IGNORE. A duplicate committed meanwhile by another worker
    fails it too (the writer inserts again).
    """
    if skip_existing and records:
        stored = stored_ids(connection, {record.request_id for record in records})
        records = [record for record in records if record.key not in stored]
    if not records:
        return
    if is_mysql_family(connection.dialect) and connection.dialect.driver == "pymysql":
        _insert_as_literals(connection, records)
        return
    connection.execute(insert(PREDICTIONS), [record.as_row() for record in records])


def _insert_as_literals(connection: Connection, records: Sequence[PredictionRecord]) -> None:
    """MySQL and MariaDB through PyMySQL: the statements' text is built here rather than by the driver.

    PyMySQL escapes every one of a 10,000-bean request's 210,000 values in Python, which took longer than the
    server's own work. Here the driver escapes only the few distinct strings (one request id, tag and timestamp
    per request, seven varieties), and orjson writes the features (see `_feature_literals`).
    10,000 rows, in-process against MariaDB: 530-810 ms -> 180-190 ms, of which ~150 ms is the server's.
    """
    escape = functools.cache(connection.connection.driver_connection.escape)  # type: ignore[union-attr]
    # Not injectable: fixed names, strings escaped by the driver, an int (`:d` refuses anything else), floats.
    head = f"INSERT INTO {PREDICTIONS.name} ({', '.join(ROW_COLUMNS)}) VALUES "  # noqa: S608  (fixed names)
    values = [f"({escape(r.request_id)},{r.bean_index:d},{escape(r.name)},{escape(r.model_tag)},"
              f"{escape(r.created_at)},{features},{_flag_literals(r.flags)})"
              for r, features in zip(records, _feature_literals(records), strict=True)]
    for start in range(0, len(values), ROWS_PER_STATEMENT):  # no_parameters: the text goes to the server as it is
        connection.exec_driver_sql(head + ",".join(values[start:start + ROWS_PER_STATEMENT]),
                                   execution_options={"no_parameters": True})


def _feature_literals(records: Sequence[PredictionRecord]) -> list[str]:
    """Each record's features as comma-separated SQL numbers.

    orjson writes the shortest text that reads back as the same double (MySQL and MariaDB read it exactly:
    test_writer.py), four times faster than Python's repr of each of 160,000 floats. The features are finite:
    every entry point refuses anything else.
    """
    matrix = np.array([record.features for record in records], dtype=np.float64)
    return orjson.dumps(matrix, option=orjson.OPT_SERIALIZE_NUMPY).decode()[2:-2].split("],[")


@functools.cache
def _flag_literals(flags: Flags | None) -> str:
    """A record's flags as SQL literals (a handful of distinct combinations: cached)."""
    return ",".join("NULL" if flag is None else str(int(flag)) for flag in (flags or NO_FLAGS))


def stored_ids(connection: Connection, request_ids: set[str]) -> dict[RecordKey, int]:
    """Ids of the stored records of some requests."""
    rows = connection.execute(select(Prediction.request_id, Prediction.bean_index, Prediction.id)
                              .where(Prediction.request_id.in_(request_ids)))
    return {(request_id, index): id_ for request_id, index, id_ in rows if request_id is not None and index is not None}


def recent_predictions(session: Session, *, limit: int, offset: int = 0,
                       name: str | None = None) -> tuple[list[Prediction], int]:
    """The newest predictions first, optionally of one variety, and how many there are in all."""
    query = select(Prediction)
    total = select(func.count()).select_from(Prediction)
    if name is not None:
        query = query.where(Prediction.name == name)
        total = total.where(Prediction.name == name)
    rows = session.scalars(query.order_by(Prediction.id.desc()).limit(limit).offset(offset)).all()
    return list(rows), session.scalar(total) or 0


def counts_by_name(session: Session) -> dict[str, int]:
    """How many predictions of each variety are stored."""
    rows = session.execute(select(Prediction.name, func.count()).group_by(Prediction.name).order_by(Prediction.name))
    return {name: count for name, count in rows}


def newest_records(connection: Connection, limit: int) -> list[tuple[str, tuple[float, ...]]]:
    """The predicted variety and features of the newest `limit` records by id (an index scan, never the table).

    Records without features (tutorial-era rows) count towards `limit` but are left out.
    """
    columns = [getattr(Prediction, column) for column in FEATURE_COLUMNS.values()]
    rows = connection.execute(select(Prediction.name, *columns).order_by(Prediction.id.desc()).limit(limit))
    return [(name, tuple(values)) for name, *values in rows if None not in values]
