"""The model as the service uses it: feature order and labels from its metadata, labels plus scores per bean."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from sklearn.pipeline import Pipeline

from data.schema import FEATURES


class ModelMismatch(RuntimeError):
    """The stored model does not fit this service's inputs; retrain it with this version of train.py."""


@dataclass(frozen=True)
class Classifier:
    """A fitted pipeline with the metadata it was saved with."""

    pipeline: Pipeline
    tag: str
    classes: tuple[str, ...]

    @classmethod
    def from_metadata(cls, pipeline: Pipeline, tag: str, metadata: dict[str, object]) -> Classifier:
        """Check the model's metadata against the service's features and the pipeline's own classes."""
        features, classes = _names(metadata.get("features")), _names(metadata.get("classes"))
        if features != FEATURES:
            raise ModelMismatch(f"model {tag} expects features {features}, the service sends {FEATURES}")
        if classes != tuple(pipeline.classes_):
            raise ModelMismatch(f"model {tag}: metadata classes {classes} differ from the pipeline's "
                                f"{tuple(pipeline.classes_)}")
        return cls(pipeline, tag, classes)

    def classify(self, rows: npt.NDArray[np.float64]) -> tuple[npt.NDArray[np.str_], npt.NDArray[np.float64]]:
        """Labels and one-vs-rest scores (rows x classes) of a feature matrix."""
        return self.pipeline.predict(rows), self.pipeline.decision_function(rows)


def _names(value: object) -> tuple[str, ...]:
    return tuple(str(item) for item in value) if isinstance(value, list) else ()
