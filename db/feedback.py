"""Ground truth: reported true varieties, written once per record, and the counts live quality is made of.

The caller owns the transaction (`with connection.begin()`), as in db/store.py.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, Table, func, insert, select, tuple_
from sqlalchemy.exc import IntegrityError

from db.models import FEATURE_COLUMNS, Feedback, Prediction
from db.refusals import is_duplicate

FEEDBACK: Table = Feedback.__table__  # type: ignore[assignment]
FeedbackKey = int | tuple[str, int]  # a record id, or the (request_id, bean_index) the client named it by


@dataclass(frozen=True, slots=True)
class FeedbackRecord:
    """One report of a bean's true variety, naming its prediction by record id or by (request_id, bean_index)."""

    variety: str
    reported_at: datetime  # naive UTC
    record_id: int | None = None
    request_id: str | None = None
    bean_index: int | None = None

    def __post_init__(self) -> None:
        if (self.record_id is None) == (self.request_id is None or self.bean_index is None):
            raise ValueError("a feedback record names its prediction by record_id or by (request_id, bean_index)")

    @property
    def key(self) -> FeedbackKey:
        """The idempotency key: how the client named the record (the table keeps one fact per record id)."""
        if self.record_id is not None:
            return self.record_id
        return self.request_id, self.bean_index  # type: ignore[return-value]  # both set: checked at creation


@dataclass(frozen=True)
class Conflict:
    """A record reported with a variety other than the one already stored (or given twice in one report)."""

    record_id: int
    stored: str
    reported: str


class UnknownRecords(LookupError):
    """Feedback names predictions that are not recorded."""

    def __init__(self, keys: list[FeedbackKey]) -> None:
        super().__init__(keys)
        self.keys = keys


class ConflictingFeedback(ValueError):
    """Feedback contradicts what is already reported; nothing of the report was written."""

    def __init__(self, conflicts: list[Conflict]) -> None:
        super().__init__(conflicts)
        self.conflicts = conflicts


class ReportRaced(Exception):
    """Concurrent reports of the same records kept committing first; nothing of this report was written."""


@dataclass(frozen=True)
class FeedbackReceipt:
    """What became of a report: facts new to the database, and facts it already held."""

    recorded: int
    already_known: int


def resolve(connection: Connection, records: Sequence[FeedbackRecord]) -> dict[FeedbackKey, int]:
    """Record ids of the records' predictions; keys of unrecorded predictions are left out."""
    ids = {record.record_id for record in records if record.record_id is not None}
    pairs = {(record.request_id, record.bean_index) for record in records if record.record_id is None}
    found: dict[FeedbackKey, int] = {}
    if ids:
        found |= {id_: id_ for id_ in connection.scalars(select(Prediction.id).where(Prediction.id.in_(ids)))}
    if pairs:
        rows = connection.execute(select(Prediction.request_id, Prediction.bean_index, Prediction.id)
                                  .where(tuple_(Prediction.request_id, Prediction.bean_index).in_(pairs)))
        found |= {(request_id, index): id_ for request_id, index, id_ in rows
                  if request_id is not None and index is not None}
    return found


@dataclass(frozen=True)
class FeedbackInsert:
    """What an insert did: rows written, and the records whose prediction is not recorded (not written)."""

    inserted: int
    unknown: list[FeedbackRecord]


def insert_feedback(connection: Connection, records: Sequence[FeedbackRecord], *,
                    skip_existing: bool = False) -> FeedbackInsert:
    """Insert records in one multi-row statement, each under the id of the prediction it names.

    `skip_existing` makes the write idempotent (a replay after an outage): a record already reported keeps its
    first variety. Only a duplicate is left out: any other refusal fails the statement, as does a duplicate
    committed meanwhile by another worker (the writer inserts again). Without it, a second report of a record
    raises IntegrityError.
    """
    ids = resolve(connection, records)
    rows = [{"record_id": ids[record.key], "variety": record.variety, "reported_at": record.reported_at,
             "request_id": record.request_id, "bean_index": record.bean_index}
            for record in records if record.key in ids]
    unknown = [record for record in records if record.key not in ids]
    if not rows:
        return FeedbackInsert(0, unknown)
    if skip_existing:  # left out before (the service's user may not UPDATE): only duplicates are skipped
        known = _stored_varieties(connection, {row["record_id"] for row in rows})  # type: ignore[misc]
        rows = [row for row in rows if row["record_id"] not in known]
    if rows:
        connection.execute(insert(FEEDBACK), rows)
    return FeedbackInsert(len(rows), unknown)


def report_feedback(connection: Connection, records: Sequence[FeedbackRecord]) -> FeedbackReceipt | None:
    """Store a report all or nothing: the same fact twice is one fact, a contradiction or an unknown record none.

    Raises UnknownRecords (naming each) or ConflictingFeedback (naming each record), having written nothing.
    Returns None when a concurrent report of the same records committed first: roll back and call again in a
    new transaction, which sees it.
    """
    ids = resolve(connection, records)
    unknown = list(dict.fromkeys(record.key for record in records if record.key not in ids))
    if unknown:
        raise UnknownRecords(unknown)
    first: dict[int, FeedbackRecord] = {}
    conflicts = []
    for record in records:
        kept = first.setdefault(ids[record.key], record)
        if kept.variety != record.variety:
            conflicts.append(Conflict(ids[record.key], kept.variety, record.variety))
    stored = _stored_varieties(connection, set(first))
    conflicts += [Conflict(id_, stored[id_], record.variety) for id_, record in first.items()
                  if id_ in stored and stored[id_] != record.variety]
    if conflicts:
        raise ConflictingFeedback(conflicts)
    new = [record for id_, record in first.items() if id_ not in stored]
    if new:
        try:
            insert_feedback(connection, new)
        except IntegrityError as error:  # another worker reported the same record meanwhile: start over
            if is_duplicate(error):
                return None
            raise
    return FeedbackReceipt(recorded=len(new), already_known=len(stored))


def _stored_varieties(connection: Connection, record_ids: set[int]) -> dict[int, str]:
    if not record_ids:
        return {}
    rows = connection.execute(select(Feedback.record_id, Feedback.variety).where(Feedback.record_id.in_(record_ids)))
    return {record_id: variety for record_id, variety in rows}


def confusion_counts(connection: Connection, *, model_tag: str, since: datetime | None = None,
                     newest: int | None = None) -> dict[tuple[str, str], int]:
    """How many reported beans of each (true variety, predicted variety) the model classified.

    `since` keeps predictions made from then on (naive UTC); `newest` keeps only the newest reports by id, so
    that the cost is bounded whatever the table's size.
    """
    reports = select(Feedback.record_id, Feedback.variety)
    if newest is not None:
        reports = reports.order_by(Feedback.id.desc()).limit(newest)
    subquery = reports.subquery()
    query = (select(subquery.c.variety, Prediction.name, func.count())
             .join(Prediction, Prediction.id == subquery.c.record_id)
             .where(Prediction.model_tag == model_tag)
             .group_by(subquery.c.variety, Prediction.name))
    if since is not None:
        query = query.where(Prediction.created_at >= since)
    return {(true, predicted): count for true, predicted, count in connection.execute(query)}


def reported_features(connection: Connection, *, model_tag: str, newest: int,
                      since: datetime | None = None) -> list[tuple[str, tuple[float, ...]]]:
    """The true variety and features of the model's reported beans, of the newest `newest` reports by id (bounded,
    as `confusion_counts`), predicted since `since` (naive UTC); beans recorded without features are left out."""
    reports = select(Feedback.record_id, Feedback.variety).order_by(Feedback.id.desc()).limit(newest).subquery()
    features = [getattr(Prediction, column) for column in FEATURE_COLUMNS.values()]
    query = (select(reports.c.variety, *features)
             .join(Prediction, Prediction.id == reports.c.record_id)
             .where(Prediction.model_tag == model_tag))
    if since is not None:
        query = query.where(Prediction.created_at >= since)
    return [(variety, tuple(values)) for variety, *values in connection.execute(query) if None not in values]
