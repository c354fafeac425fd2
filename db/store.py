"""Writes and reads of recorded predictions. The caller owns the transaction (`with connection.begin()`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, Table, func, insert, select
from sqlalchemy.orm import Session

from db.models import FEATURE_COLUMNS, Prediction

PREDICTIONS: Table = Prediction.__table__  # type: ignore[assignment]  # Core inserts: no ORM bookkeeping per row
RecordKey = tuple[str, int]  # (request_id, bean_index): the idempotency key of a record


@dataclass(frozen=True, slots=True)
class PredictionRecord:
    """What is recorded about one classified bean."""

    request_id: str
    bean_index: int
    name: str
    model_tag: str
    created_at: datetime  # naive UTC
    features: tuple[float, ...]

    @property
    def key(self) -> RecordKey:
        """The record's idempotency key."""
        return self.request_id, self.bean_index

    def as_row(self) -> dict[str, object]:
        """Column values for an INSERT."""
        return {
            "request_id": self.request_id, "bean_index": self.bean_index, "name": self.name,
            "model_tag": self.model_tag, "created_at": self.created_at,
            **dict(zip(FEATURE_COLUMNS.values(), self.features, strict=True)),
        }


def insert_predictions(connection: Connection, records: Sequence[PredictionRecord], *,
                       skip_existing: bool = False) -> None:
    """Insert records in one multi-row statement.

    `skip_existing` makes the write idempotent (a replay after an outage): records whose key is already
    stored are left as they are.
    """
    statement = insert(PREDICTIONS)
    if skip_existing:
        statement = statement.prefix_with("IGNORE", dialect="mysql").prefix_with("OR IGNORE", dialect="sqlite")
    connection.execute(statement, [record.as_row() for record in records])


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
