"""The spool's line format: one JSON record per line, checked when read back.

A line that is not a whole, well-formed record (torn by a crash, or written by another version with another
feature count) raises InvalidRecord naming what is wrong, so that it can be set aside instead of failing a replay.
"""

from __future__ import annotations

import json
import math
from datetime import datetime
from typing import Any, NamedTuple

from db.feedback import FeedbackRecord
from db.models import FEATURE_COLUMNS
from db.store import Flags, PredictionRecord

MAX_REQUEST_ID = 32  # the columns' lengths (db/models.py)
MAX_NAME = 255
MAX_MODEL_TAG = 128
MAX_VARIETY = 32
MAX_INT = 2**31 - 1


class InvalidRecord(ValueError):
    """A spool line that is not a record this version can store; the message says why."""


class HeldFeedback(NamedTuple):
    """A spooled report whose prediction was not recorded yet, and since when (naive UTC) it has waited."""

    record: FeedbackRecord
    since: datetime


def encode_prediction(record: PredictionRecord) -> str:
    """One spool line (no newline); the flags, when assessed, as a seventh field."""
    fields = [record.request_id, record.bean_index, record.name, record.model_tag, record.created_at.isoformat(),
              record.features]
    return json.dumps(fields if record.flags is None else [*fields, record.flags], separators=(",", ":"))


def decode_prediction(line: str) -> PredictionRecord:
    """The record of a spool line (6 fields, or 7 with the flags); InvalidRecord when it is not one."""
    fields = _json(line)
    if not isinstance(fields, list) or len(fields) not in (6, 7):
        raise InvalidRecord("not a prediction: a JSON array of 6 or 7 fields was expected")
    request_id, index, name, model_tag, created_at, features = fields[:6]
    flags = _flags(fields[6]) if len(fields) == 7 else None
    if not isinstance(features, list) or len(features) != len(FEATURE_COLUMNS):
        count = len(features) if isinstance(features, list) else "no"
        raise InvalidRecord(f"{count} features; a bean has {len(FEATURE_COLUMNS)}")
    if not all(_is_number(value) and math.isfinite(value) for value in features):
        raise InvalidRecord("a feature is not a finite number")
    # Typed as the writer formats them into SQL: an int, strings the driver escapes, finite floats.
    return PredictionRecord(_text(request_id, "request_id", MAX_REQUEST_ID), _int(index, "bean_index"),
                            _text(name, "name", MAX_NAME), _text(model_tag, "model_tag", MAX_MODEL_TAG),
                            _time(created_at, "created_at"), tuple(float(value) for value in features), flags)


def _flags(value: Any) -> Flags:
    if (not isinstance(value, list) or len(value) != 3 or not isinstance(value[0], bool)
            or not isinstance(value[2], bool) or not (value[1] is None or isinstance(value[1], bool))):
        raise InvalidRecord("flags are not [consistent, in_distribution or null, needs_review] booleans")
    return value[0], value[1], value[2]


def encode_feedback(record: FeedbackRecord) -> str:
    """One spool line (no newline)."""
    return json.dumps(_feedback_fields(record), separators=(",", ":"))


def decode_feedback(line: str) -> FeedbackRecord:
    """The record of a spool line; InvalidRecord when it is not one."""
    return _feedback(_json(line))


def encode_held(held: HeldFeedback) -> str:
    """A waiting report's line: the report's fields and `since`."""
    return json.dumps({**_feedback_fields(held.record), "since": held.since.isoformat()}, separators=(",", ":"))


def decode_held(line: str) -> HeldFeedback:
    """A waiting report; InvalidRecord when the line is not one."""
    fields = _json(line)
    return HeldFeedback(_feedback(fields), _time(fields.get("since"), "since"))


def _feedback_fields(record: FeedbackRecord) -> dict[str, Any]:
    return {"variety": record.variety, "reported_at": record.reported_at.isoformat(), "record_id": record.record_id,
            "request_id": record.request_id, "bean_index": record.bean_index}


def _feedback(fields: Any) -> FeedbackRecord:
    if not isinstance(fields, dict):
        raise InvalidRecord("not a feedback record: a JSON object was expected")
    record_id, request_id, index = fields.get("record_id"), fields.get("request_id"), fields.get("bean_index")
    try:
        return FeedbackRecord(_text(fields.get("variety"), "variety", MAX_VARIETY),
                              _time(fields.get("reported_at"), "reported_at"),
                              record_id=None if record_id is None else _int(record_id, "record_id"),
                              request_id=None if request_id is None else _text(request_id, "request_id",
                                                                              MAX_REQUEST_ID),
                              bean_index=None if index is None else _int(index, "bean_index"))
    except InvalidRecord:
        raise
    except ValueError as error:
        raise InvalidRecord(str(error)) from None


def _json(line: str) -> Any:
    try:
        return json.loads(line)
    except ValueError:
        raise InvalidRecord("not a whole JSON record (a write cut short?)") from None


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _text(value: object, name: str, limit: int) -> str:
    if not isinstance(value, str) or not 0 < len(value) <= limit:
        raise InvalidRecord(f"{name} is not a string of 1 to {limit} characters")
    return value


def _int(value: object, name: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= MAX_INT:
        raise InvalidRecord(f"{name} is not an integer from 0 to {MAX_INT}")
    return value


def _time(value: object, name: str) -> datetime:
    try:
        return datetime.fromisoformat(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise InvalidRecord(f"{name} is not an ISO 8601 time") from None
