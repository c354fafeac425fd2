"""The model as the service uses it: feature order and labels from its metadata; labels, scores, calibrated
probabilities and exact explanations per bean."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import sklearn
from sklearn.pipeline import Pipeline

from data.schema import FEATURES
from model.calibration import TemperatureScaling
from model.compiled_svc import SklearnPredictor, SVCPredictor, make_predictor
from model.explanations import Explanations, PairwiseExplainer
from trust.conformal import ConformalSets
from trust.ood import OutOfDistribution

PROBE_ROWS = 2_000


class ModelMismatch(RuntimeError):
    """The stored model does not fit this service's inputs; retrain it with this version of train.py."""


class NoExplanations(ValueError):
    """The model cannot explain its labels: explanations need a linear SVC."""


@dataclass(frozen=True)
class Classifier:
    """A fitted pipeline with the metadata it was saved with, answered by the fastest exact predictor.

    A linear SVC is compiled (model/compiled_svc.py) and explains its labels; any other kernel (RBF) answers
    through scikit-learn, with the same calibration, and has no explainer.
    """

    predictor: SVCPredictor
    tag: str
    classes: tuple[str, ...]
    calibrator: TemperatureScaling
    explainer: PairwiseExplainer | None
    metadata: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)  # JSON, as train.py saved it
    ood: OutOfDistribution | None = field(default=None, repr=False, compare=False)  # None: saved before train.py
    conformal: ConformalSets | None = field(default=None, repr=False, compare=False)  # fitted them

    @classmethod
    def from_metadata(cls, pipeline: Pipeline, tag: str, metadata: Mapping[str, object]) -> Classifier:
        """Check the model's metadata against the service's features and the pipeline's own classes."""
        features, classes = _names(metadata.get("features")), _names(metadata.get("classes"))
        if metadata.get("sklearn_version") != sklearn.__version__:
            raise ModelMismatch(f"model {tag} was trained with scikit-learn {metadata.get('sklearn_version')}, "
                                f"this service runs {sklearn.__version__}: retrain it, or serve with that version")
        if features != FEATURES:
            raise ModelMismatch(f"model {tag} expects features {features}, the service sends {FEATURES}")
        if classes != tuple(pipeline.classes_):
            raise ModelMismatch(f"model {tag}: metadata classes {classes} differ from the pipeline's "
                                f"{tuple(pipeline.classes_)}")
        svc = pipeline.steps[-1][1] if isinstance(pipeline, Pipeline) else pipeline
        if getattr(svc, "decision_function_shape", None) != "ovr":
            raise ModelMismatch(f"model {tag}: its last step {type(svc).__name__} gives no one-vs-rest scores "
                                "(an SVC with decision_function_shape='ovr'): retrain it with this version of train.py")
        linear = getattr(svc, "kernel", None) == "linear"
        trust = metadata.get("trust")  # absent from models saved before train.py fitted it: no sets, no scores
        try:
            calibrator = TemperatureScaling.from_metadata(metadata)
            explainer = PairwiseExplainer.from_pipeline(pipeline) if linear else None
            ood = OutOfDistribution.from_metadata(trust["ood"]) if isinstance(trust, Mapping) else None
            conformal = ConformalSets.from_metadata(trust["conformal"]) if isinstance(trust, Mapping) else None
        except (ValueError, KeyError) as exc:
            raise ModelMismatch(f"model {tag}: {exc}: retrain it with this version of train.py") from None
        # A linear SVC: compiled inference when it agrees with scikit-learn on the probe, scikit-learn otherwise.
        predictor = make_predictor(pipeline, probe_rows(pipeline)) if linear else SklearnPredictor(pipeline)
        return cls(predictor, tag, classes, calibrator, explainer, metadata, ood, conformal)

    @property
    def version(self) -> str:
        """The version part of the tag, as the operator API names models."""
        return self.tag.partition(":")[2]

    @functools.cached_property
    def _class_array(self) -> npt.NDArray[np.str_]:
        # One character wider than the longest class: a longer label, cut to this width, still matches no class and
        # sorts where it did.
        return np.array(self.classes, dtype=f"<U{max(map(len, self.classes)) + 1}")

    def class_indices(self, labels: npt.NDArray[np.str_]) -> npt.NDArray[np.intp]:
        """Each label's index into `classes` (sorted, as scikit-learn keeps them)."""
        # The model's labels are Python strings: searched as fixed-width text, 2x faster including the conversion.
        return np.searchsorted(self._class_array, np.asarray(labels, dtype=self._class_array.dtype))

    @property
    def explains(self) -> bool:
        """Whether `explain` can answer: the model is a linear SVC."""
        return self.explainer is not None

    def classify(self, rows: npt.NDArray[np.float64]) -> tuple[npt.NDArray[np.str_], npt.NDArray[np.float64]]:
        """Labels and one-vs-rest scores (rows x classes) of a feature matrix."""
        return self.predictor.predict_with_scores(rows)

    def probabilities(self, scores: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        """Calibrated probabilities (rows x classes) from `classify`'s scores."""
        return self.calibrator.probabilities(scores)

    def explain(self, rows: npt.NDArray[np.float64], labels: npt.NDArray[np.str_],
                scores: npt.NDArray[np.float64]) -> Explanations:
        """Each bean's label against its runner-up, feature by feature (see explanations.py); NoExplanations for
        a non-linear model (check `explains` first)."""
        if self.explainer is None:
            raise NoExplanations(f"model {self.tag} is not a linear SVC")
        return self.explainer.explain(rows, self.class_indices(labels), scores)


def probe_rows(pipeline: Pipeline) -> npt.NDArray[np.float64]:
    """Beans drawn around the training distribution (the scaler's mean and scale), the same every start."""
    scaler = pipeline.named_steps["scaler"]
    noise = np.random.default_rng(0).standard_normal((PROBE_ROWS, len(scaler.mean_)))
    return np.asarray(scaler.mean_ + 1.5 * noise * scaler.scale_, dtype=np.float64)


def _names(value: object) -> tuple[str, ...]:
    return tuple(str(item) for item in value) if isinstance(value, list) else ()
