"""Calibrated class probabilities for the SVC: a temperature-scaled softmax over its one-vs-rest scores.

``p = softmax(scores / T)`` with one temperature ``T > 0``, fitted by minimising the log-loss of out-of-fold
scores (scores of beans the fitting model never saw). Dividing by a positive ``T`` and the softmax are both
strictly increasing, so the most probable variety is always the highest-scoring one. The label is libsvm's
vote, which is the highest-scoring variety too, except when several varieties tie on votes: libsvm then takes
the first of them (in class order) while the scores rank them by their pairwise margins, so the label need not
be the most probable variety there (see ``vote_ties``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy.optimize import minimize_scalar

Float64Array = npt.NDArray[np.float64]

METHOD = "temperature-scaled softmax of the one-vs-rest scores"
# ln T is searched in [ln 0.01, ln 100]: scores are votes (0..6) plus less than 1/3, so any useful T is inside.
_LOG_T_BOUNDS = (np.log(0.01), np.log(100.0))


@dataclass(frozen=True)
class TemperatureScaling:
    """Probabilities from one-vs-rest scores: ``softmax(scores / temperature)`` per row."""

    temperature: float

    def __post_init__(self) -> None:
        if not (np.isfinite(self.temperature) and self.temperature > 0):
            raise ValueError(f"temperature must be a positive number, got {self.temperature}")

    @classmethod
    def fit(cls, scores: npt.ArrayLike, y_index: npt.ArrayLike) -> TemperatureScaling:
        """The temperature that minimises the log-loss of `scores` (rows x classes) for true classes `y_index`."""
        scores, y_index = np.asarray(scores, dtype=np.float64), np.asarray(y_index)
        result = minimize_scalar(lambda log_t: log_loss(cls(float(np.exp(log_t))).probabilities(scores), y_index),
                                 bounds=_LOG_T_BOUNDS, method="bounded", options={"xatol": 1e-6})
        return cls(float(np.exp(result.x)))

    @classmethod
    def from_metadata(cls, metadata: Mapping[str, Any]) -> TemperatureScaling:
        """The calibrator saved by `to_metadata`; ValueError when it is missing or unusable."""
        calibration = metadata.get("calibration")
        if not isinstance(calibration, dict) or not isinstance(calibration.get("temperature"), int | float):
            raise ValueError("the model has no calibrator (metadata 'calibration.temperature')")
        return cls(float(calibration["temperature"]))

    def to_metadata(self) -> dict[str, Any]:
        """What the model store keeps (plain JSON)."""
        return {"method": METHOD, "temperature": self.temperature}

    def probabilities(self, scores: npt.ArrayLike) -> Float64Array:
        """Each row's class probabilities (rows x classes, each row sums to 1)."""
        scaled = np.asarray(scores, dtype=np.float64) / self.temperature
        scaled -= scaled.max(axis=1, keepdims=True)  # exp of <= 0 never overflows
        np.exp(scaled, out=scaled)
        scaled /= scaled.sum(axis=1, keepdims=True)
        return scaled


def log_loss(probabilities: Float64Array, y_index: npt.ArrayLike) -> float:
    """Mean negative log-likelihood of the true classes (probabilities clipped at 1e-15, as scikit-learn)."""
    true = probabilities[np.arange(len(probabilities)), np.asarray(y_index)]
    return float(-np.log(np.clip(true, 1e-15, 1.0)).mean())


def brier_score(probabilities: Float64Array, y_index: npt.ArrayLike) -> float:
    """Multi-class Brier score: mean over rows of the squared distance to the one-hot truth (0 best, 2 worst)."""
    truth = np.zeros_like(probabilities)
    truth[np.arange(len(probabilities)), np.asarray(y_index)] = 1.0
    return float(((probabilities - truth) ** 2).sum(axis=1).mean())


def vote_ties(scores: Float64Array) -> npt.NDArray[np.bool_]:
    """Rows where two or more classes share the most pairwise wins (the integer part of scikit-learn's scores).

    The ovr score is votes + a confidence term in (-1/3, 1/3), so a class with more votes always scores higher
    than one with fewer: only on these rows can the highest score differ from libsvm's first-most-voted label.
    """
    votes = np.rint(scores)  # |confidence| < 1/3: rounding recovers the vote count exactly
    return np.asarray((votes == votes.max(axis=1, keepdims=True)).sum(axis=1) > 1)
