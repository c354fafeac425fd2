"""Model evaluation: holdout metrics, cross-validation and a confusion-matrix picture."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display on servers or in CI

import matplotlib.pyplot as plt
import numpy as np
import numpy.typing as npt
from pydantic import BaseModel
from sklearn.base import clone
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_recall_fscore_support
from sklearn.model_selection import StratifiedKFold, cross_val_score
from sklearn.pipeline import Pipeline


class ClassScores(BaseModel):
    """Holdout precision, recall and F1 of one variety."""

    precision: float
    recall: float
    f1: float
    support: int


class Metrics(BaseModel):
    """Everything `train.py` measures about a model."""

    holdout_accuracy: float
    macro_f1: float
    cv_accuracy_mean: float
    cv_accuracy_std: float
    cv_folds: int
    classes: list[str]
    per_class: dict[str, ClassScores]
    confusion_matrix: list[list[int]]  # rows: true class, columns: predicted, in `classes` order


def holdout_metrics(y_true: npt.ArrayLike, y_pred: npt.ArrayLike, classes: list[str],
                    cv_scores: npt.NDArray[np.float64]) -> Metrics:
    """Metrics of predictions on the holdout set, with the cross-validation scores alongside."""
    precision, recall, f1, support = precision_recall_fscore_support(y_true, y_pred, labels=classes,
                                                                     zero_division=0)
    return Metrics(
        holdout_accuracy=float(accuracy_score(y_true, y_pred)),
        macro_f1=float(f1_score(y_true, y_pred, labels=classes, average="macro")),
        cv_accuracy_mean=float(cv_scores.mean()),
        cv_accuracy_std=float(cv_scores.std()),
        cv_folds=len(cv_scores),
        classes=classes,
        per_class={c: ClassScores(precision=p, recall=r, f1=f, support=s)
                   for c, p, r, f, s in zip(classes, precision, recall, f1, support, strict=True)},
        confusion_matrix=confusion_matrix(y_true, y_pred, labels=classes).tolist(),
    )


def cross_validate(pipeline: Pipeline, x: npt.NDArray[np.float64], y: npt.ArrayLike,
                   folds: int = 5) -> npt.NDArray[np.float64]:
    """Accuracy of an unfitted copy of `pipeline` over stratified folds (deterministic: no shuffling)."""
    return cross_val_score(clone(pipeline), x, y, cv=StratifiedKFold(folds), scoring="accuracy", n_jobs=-1)


def plot_confusion_matrix(metrics: Metrics, path: Path) -> Path:
    """Write a confusion matrix with counts and row-normalised shading (recall per class) as a PNG."""
    counts = np.array(metrics.confusion_matrix)
    recall = counts / counts.sum(axis=1, keepdims=True).clip(min=1)
    fig, ax = plt.subplots(figsize=(8, 7), layout="constrained")
    image = ax.imshow(recall, cmap="Blues", vmin=0, vmax=1)
    fig.colorbar(image, ax=ax, label="share of the true class")
    ticks = range(len(metrics.classes))
    ax.set_xticks(ticks, metrics.classes, rotation=45, ha="right")
    ax.set_yticks(ticks, metrics.classes)
    ax.set_xlabel("predicted variety")
    ax.set_ylabel("true variety")
    for (i, j), count in np.ndenumerate(counts):
        ax.text(j, i, str(count), ha="center", va="center",
                color="white" if recall[i, j] > 0.5 else "black", fontsize=9)
    ax.set_title(f"Dry beans, holdout of {counts.sum():,}: accuracy {metrics.holdout_accuracy:.3f}, "
                 f"macro F1 {metrics.macro_f1:.3f}")
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
