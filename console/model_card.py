"""`GET /v1/model`: what the running model is and how well it did at training, from its model store metadata."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field


class TrainingData(BaseModel):
    """The dataset file the model was trained on (70% of it; the other 30% is the holdout)."""

    file: str
    sha256: str
    rows: int
    class_counts: dict[str, int] | None = Field(None, description="beans of each variety in the file; absent for "
                                                                  "models saved before train.py recorded it")
    feature_ranges: dict[str, tuple[float, float]] | None = Field(None, description="smallest and largest value of "
                                                                                    "each feature in the file")


class ModelCard(BaseModel):
    """The model this worker serves: tag, training date and holdout metrics."""

    tag: str = Field(examples=["drybean_svc:5bc6hnhhtka6sax4"])
    trained_at: datetime = Field(description="when train.py saved the model to the model store")
    classes: list[str]
    holdout_accuracy: float
    macro_f1: float
    cv_accuracy_mean: float
    cv_accuracy_std: float
    per_class_f1: dict[str, float]
    confusion_matrix: list[list[int]] = Field(description="holdout counts; rows: true variety, columns: predicted, "
                                                          "both in `classes` order")
    training_data: TrainingData


def model_card(tag: str, trained_at: datetime, metadata: Mapping[str, Any]) -> ModelCard:
    """The card of a model saved by train.py, from its metadata."""
    metrics = metadata["metrics"]
    return ModelCard(
        tag=tag, trained_at=trained_at, classes=metrics["classes"],
        holdout_accuracy=metrics["holdout_accuracy"], macro_f1=metrics["macro_f1"],
        cv_accuracy_mean=metrics["cv_accuracy_mean"], cv_accuracy_std=metrics["cv_accuracy_std"],
        per_class_f1={name: scores["f1"] for name, scores in metrics["per_class"].items()},
        confusion_matrix=metrics["confusion_matrix"],
        training_data=TrainingData.model_validate(metadata["dataset"]),
    )
