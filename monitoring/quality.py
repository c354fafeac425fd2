"""Live quality figures from reported true varieties, each beside its training figure and its count."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

import numpy as np
import numpy.typing as npt

from monitoring.schemas import ClassQuality, ConfusionMatrix, Figure, QualityReport

Counts = Mapping[tuple[str, str], int]  # (true variety, predicted variety) -> beans


def ratio(numerator: int, count: int, min_count: int) -> float | None:
    """numerator / count, or None when `count` is below `min_count`."""
    return numerator / count if count >= min_count and count > 0 else None


def f1(precision: float | None, recall: float | None) -> float | None:
    """Harmonic mean of precision and recall; None if either is."""
    if precision is None or recall is None:
        return None
    return 2 * precision * recall / (precision + recall) if precision + recall else 0.0


def quality_report(counts: Counts, classes: tuple[str, ...], *, model: str, since: datetime | None,
                   min_count: int, training: Mapping[str, Any] | None) -> QualityReport:
    """Accuracy, per-class precision/recall/F1 and the confusion matrix of `counts`.

    `training` is the `metrics` entry of the model's metadata (see evaluation.Metrics), None for another model.
    """
    matrix = [[counts.get((true, predicted), 0) for predicted in classes] for true in classes]
    labelled = sum(map(sum, matrix))
    correct = sum(matrix[i][i] for i in range(len(classes)))
    trained = training or {}
    per_class = {}
    for i, name in enumerate(classes):
        predicted, truly = sum(row[i] for row in matrix), sum(matrix[i])
        scores = trained.get("per_class", {}).get(name, {})
        precision, recall = ratio(matrix[i][i], predicted, min_count), ratio(matrix[i][i], truly, min_count)
        per_class[name] = ClassQuality(
            precision=Figure(live=precision, count=predicted, training=scores.get("precision")),
            recall=Figure(live=recall, count=truly, training=scores.get("recall")),
            f1=Figure(live=f1(precision, recall), count=min(predicted, truly), training=scores.get("f1")))
    return QualityReport(
        model=model, since=since, min_count=min_count, labelled=labelled,
        accuracy=Figure(live=ratio(correct, labelled, min_count), count=labelled,
                        training=trained.get("holdout_accuracy")),
        per_class=per_class,
        confusion_matrix=ConfusionMatrix(classes=list(classes), live=matrix,
                                         training=trained.get("confusion_matrix")),
    )


def coverage_figure(covered: npt.NDArray[np.bool_], *, coverage: float, min_count: int,
                    training: Mapping[str, Any] | None) -> Figure:
    """The share of reported beans whose true variety is in their prediction set at `coverage` (`covered`: one
    bool per bean), beside the holdout's share in the `metrics` entry of the model's metadata."""
    holdout = (training or {}).get("conformal", {}).get(f"{coverage:g}", {})
    return Figure(live=ratio(int(covered.sum()), len(covered), min_count), count=len(covered),
                  training=holdout.get("coverage"))
