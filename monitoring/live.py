"""The running service's figures: the database reads and the pure functions, put together.

Each function takes the engine and the serving model's tag and metadata, so that the routes and the background
gauges ask the same questions the same way.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import numpy as np
from sqlalchemy import Engine

import errors
from data.schema import CLASSES, FEATURES
from db import feedback, store
from monitoring.drift import drift_report
from monitoring.quality import quality_report
from monitoring.reference import Reference
from monitoring.schemas import DriftReport, QualityReport


class NoReference(errors.ApiError):
    """The serving model's metadata has no training reference to compare traffic with."""

    status = 503
    code = "no_reference"


def reference_of(tag: str, metadata: Mapping[str, Any]) -> Reference:
    """The training reference stored in the model's metadata by train.py."""
    if "reference" not in metadata:
        raise NoReference(errors.NO_REFERENCE.format(model=tag))
    return Reference.model_validate(metadata["reference"])


def drift(engine: Engine, tag: str, metadata: Mapping[str, Any], *, window: int, threshold: float) -> DriftReport:
    """Drift of the newest `window` records from the training reference."""
    reference = reference_of(tag, metadata)
    with engine.connect() as connection:
        records = store.newest_records(connection, window)
    rows = np.array([features for _name, features in records], dtype=np.float64).reshape(len(records), len(FEATURES))
    return drift_report(reference, FEATURES, rows, [name for name, _features in records], model=tag, window=window,
                        threshold=threshold)


def quality(engine: Engine, tag: str, metadata: Mapping[str, Any], *, model: str, since: datetime | None,
            min_count: int, newest: int | None = None) -> QualityReport:
    """Live quality of `model` on reported beans predicted since `since` (of the newest `newest` reports)."""
    since_utc = since.astimezone(UTC).replace(tzinfo=None) if since and since.tzinfo else since
    with engine.connect() as connection:
        counts = feedback.confusion_counts(connection, model_tag=model, since=since_utc, newest=newest)
    training = metadata.get("metrics") if model == tag else None
    return quality_report(counts, CLASSES, model=model, since=since, min_count=min_count, training=training)
