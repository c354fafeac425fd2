"""The running service's figures: the database reads and the pure functions, put together.

Each function takes the engine and the serving model (its tag and metadata, or the classifier where beans are
re-scored), so that the routes and the background gauges ask the same questions the same way.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
from sqlalchemy import Engine

from api import errors
from data.schema import CLASSES, FEATURES
from db import feedback, store
from monitoring.drift import drift_report
from monitoring.estimate import PrecisionTable, estimate
from monitoring.quality import coverage_figure, quality_report
from monitoring.reference import Reference
from monitoring.schemas import DriftReport, QualityReport
from trust.assessment import DEFAULT_COVERAGE

if TYPE_CHECKING:
    from model.classifier import Classifier
    from trust.conformal import ConformalSets



def reference_of(tag: str, metadata: Mapping[str, Any]) -> Reference:
    """The training reference stored in the model's metadata by train.py."""
    if "reference" not in metadata:
        raise errors.NoReference(errors.NO_REFERENCE.format(model=tag))
    return Reference.model_validate(metadata["reference"])


def drift(engine: Engine, tag: str, metadata: Mapping[str, Any], *, window: int, threshold: float) -> DriftReport:
    """Drift of the newest `window` records from the training reference."""
    reference = reference_of(tag, metadata)
    with engine.connect() as connection:
        records = store.newest_records(connection, window)
    return drift_report(reference, FEATURES, _rows(records), [name for name, _features in records], model=tag,
                        window=window, threshold=threshold)


def quality(engine: Engine, classifier: Classifier, *, model: str, since: datetime | None, min_count: int,
            window: int, newest: int | None = None) -> QualityReport:
    """Live quality of `model` on reported beans predicted since `since` (of the newest `newest` reports). For the
    serving model, also its prediction sets' coverage on the newest `window` reports, and its estimated figures on
    the newest `window` records, both re-scored from the stored features."""
    since_utc = since.astimezone(UTC).replace(tzinfo=None) if since and since.tzinfo else since
    serving = model == classifier.tag
    conformal = classifier.conformal if serving else None
    with engine.connect() as connection:
        counts = feedback.confusion_counts(connection, model_tag=model, since=since_utc, newest=newest)
        reported = (feedback.reported_features(connection, model_tag=model, since=since_utc, newest=window)
                    if conformal is not None else [])
        recent = store.newest_records(connection, window) if serving else []
    training = _metrics(classifier) if serving else None
    report = quality_report(counts, CLASSES, model=model, since=since, min_count=min_count, training=training)
    if not serving:
        return report
    expected = estimate(_probabilities(classifier, recent), CLASSES, min_count=min_count, training=training,
                        table=precision_table(classifier))
    coverage = None if conformal is None else coverage_figure(
        _covered(classifier, conformal, reported), coverage=DEFAULT_COVERAGE, min_count=min_count, training=training)
    return report.model_copy(update={"window": window, "coverage": coverage, "estimated_accuracy": expected.accuracy,
                                     "estimated_per_class": expected.per_class})


def precision_table(classifier: Classifier) -> PrecisionTable | None:
    """The estimate's precision table from the model's metadata; None for a model saved before train.py fitted it."""
    trust = classifier.metadata.get("trust")
    fitted = trust.get("estimate") if isinstance(trust, Mapping) else None
    return PrecisionTable.from_metadata(fitted) if isinstance(fitted, Mapping) else None


def _metrics(classifier: Classifier) -> Mapping[str, Any] | None:
    """The `metrics` entry of the model's metadata (see evaluation.Metrics)."""
    metrics = classifier.metadata.get("metrics")
    return metrics if isinstance(metrics, Mapping) else None


def _probabilities(classifier: Classifier, records: list[tuple[str, tuple[float, ...]]]) -> npt.NDArray[np.float64]:
    """The serving model's calibrated probabilities (beans x classes) of the records' features."""
    if not records:
        return np.zeros((0, len(CLASSES)))
    _labels, scores = classifier.classify(_rows(records))
    return classifier.probabilities(scores)


def _covered(classifier: Classifier, conformal: ConformalSets,
             reported: list[tuple[str, tuple[float, ...]]]) -> npt.NDArray[np.bool_]:
    """Whether each reported bean's true variety is in the serving model's prediction set at DEFAULT_COVERAGE."""
    truth = np.searchsorted(CLASSES, [variety for variety, _features in reported])
    sets = conformal.sets(_probabilities(classifier, reported), DEFAULT_COVERAGE)
    return np.asarray(sets[np.arange(len(reported)), truth], dtype=np.bool_)


def _rows(records: list[tuple[str, tuple[float, ...]]]) -> npt.NDArray[np.float64]:
    return np.array([features for _name, features in records], dtype=np.float64).reshape(len(records), len(FEATURES))
