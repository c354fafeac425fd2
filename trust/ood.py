"""Out-of-distribution scores: how far a bean lies from the training beans of the variety it was given.

The score is the Mahalanobis distance of the bean's log measurements to the training beans of its predicted variety
(that variety's mean and covariance), and a bean is out of distribution above `threshold`, the 99.9th percentile of
the training beans' own scores. Choices, measured on train.py's split:

* Features: the six measured ones (Area, Perimeter, MajorAxisLength, MinorAxisLength, ConvexArea, Extent). The
  other ten are exact functions of these (trust/consistency.py checks them), so they add no information, only
  near-singular directions: on all 16 standardised features each variety's covariance has a condition number of
  1e7-1.5e8, and the tutorial's own example bean, sent at two decimals (ShapeFactor2 as 0.0), lies at 12 to 850
  with a ridge of 0.1 to 1e-6 against thresholds of 8 to 18; a ridge of 1 lets it in, but still flags 7% of the
  holdout beans rounded to two decimals, and only 0.4% of those with one measurement x1.3. On the six log
  measurements the condition numbers are 2e4-8e4, so no regularisation is needed; the holdout rounded to two
  decimals has 0.15% of its beans out (0.12% unrounded), and 87% of those with one measurement x1.3.
* Logarithms: the measurements are sizes, and a shape scaled by s scales its lengths by s and its areas by s^2, so
  in logs a consistent rescaling is a shift along one direction and an inconsistent one (every feature x1.1) leaves
  the variety's narrow band. A measurement <= 0 is taken as the smallest positive float: far out, yet finite.
* The threshold's class: each training bean's PREDICTED variety (the argmax of its out-of-fold probabilities), as
  served, rather than its true one: a misclassified bean is nearer the variety it is taken for, so true varieties
  would give a higher threshold (11.6 against 10.1) and flag fewer beans than the 0.1% intended.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from data.schema import CLASSES, FEATURES

Float64Array = npt.NDArray[np.float64]
IndexArray = npt.NDArray[np.intp]

METHOD = "Mahalanobis distance of the log measurements to the training beans of the predicted variety"
MEASURED: tuple[str, ...] = ("Area", "Perimeter", "MajorAxisLength", "MinorAxisLength", "ConvexArea", "Extent")
PERCENTILE = 99.9
_COLUMNS = [FEATURES.index(name) for name in MEASURED]
_TINY = float(np.finfo(np.float64).tiny)
_MIN_BEANS = 2 * len(MEASURED)  # per variety, for a covariance worth inverting
_GATHER_BELOW = 512  # beans


@dataclass(frozen=True, eq=False)
class OutOfDistribution:
    """Per variety, the mean log measurements and a whitening matrix (the inverse Cholesky factor of their
    covariance), so that a bean's score is the length of one small matrix-vector product."""

    means: Float64Array  # (varieties, measurements)
    whitening: Float64Array  # (varieties, measurements, measurements): upper triangular; centred rows @ it are white
    threshold: float

    @classmethod
    def fit(cls, x: npt.ArrayLike, true_indices: npt.ArrayLike, predicted_indices: npt.ArrayLike
            ) -> OutOfDistribution:
        """Fit on training rows `x` (beans x 16 raw features): each variety's statistics from its true beans
        (`true_indices` into data.schema.CLASSES), the threshold from each bean's score to its predicted variety."""
        logs = _log_measurements(np.asarray(x, dtype=np.float64))
        true_indices = np.asarray(true_indices)
        means, whitening = [], []
        for index, variety in enumerate(CLASSES):
            beans = logs[true_indices == index]
            if len(beans) < _MIN_BEANS:
                raise ValueError(f"{variety} has {len(beans)} training beans; the out-of-distribution scores need "
                                 f"at least {_MIN_BEANS} of each variety")
            means.append(beans.mean(axis=0))
            whitening.append(np.linalg.inv(np.linalg.cholesky(np.cov(beans, rowvar=False))).T)
        unthresholded = cls(np.array(means), np.array(whitening), threshold=np.inf)
        scores = unthresholded._distances(logs, np.asarray(predicted_indices))
        return cls(unthresholded.means, unthresholded.whitening, float(np.percentile(scores, PERCENTILE)))

    @classmethod
    def from_metadata(cls, metadata: Mapping[str, Any]) -> OutOfDistribution:
        """The scores saved by `to_metadata`; ValueError when they are malformed."""
        shape = (len(CLASSES), len(MEASURED))
        try:
            means = np.array(metadata["means"], dtype=np.float64)
            whitening = np.array(metadata["whitening"], dtype=np.float64)
            threshold = float(metadata["threshold"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"the model's out-of-distribution metadata ('trust.ood') is unusable ({exc!r})") from None
        if means.shape != shape or whitening.shape != (*shape, len(MEASURED)) or list(
                metadata.get("measurements", [])) != list(MEASURED):
            raise ValueError(f"the model's out-of-distribution metadata ('trust.ood') is not for {len(CLASSES)} "
                             f"varieties and the measurements {', '.join(MEASURED)}")
        return cls(means, whitening, threshold)

    def to_metadata(self) -> dict[str, Any]:
        """What the model store keeps (plain lists and floats)."""
        return {"method": METHOD, "measurements": list(MEASURED), "percentile": PERCENTILE,
                "threshold": self.threshold, "means": self.means.tolist(), "whitening": self.whitening.tolist()}

    def score(self, rows: npt.ArrayLike, class_indices: npt.ArrayLike) -> Float64Array:
        """Each bean's distance to its variety (`class_indices` into data.schema.CLASSES), from rows of 16 raw
        features; above `threshold`, the bean is out of distribution."""
        return self._distances(_log_measurements(np.asarray(rows, dtype=np.float64)), np.asarray(class_indices))

    def _distances(self, logs: Float64Array, class_indices: IndexArray) -> Float64Array:
        """Each bean whitened by its variety's matrix: gathered per bean for a few hundred beans (one call: 5 µs for
        one bean against 9), one matrix product per variety beyond (gathering costs more from ~500 beans on)."""
        if len(logs) < _GATHER_BELOW:
            whitened = np.matmul((logs - self.means[class_indices])[:, np.newaxis, :],
                                 self.whitening[class_indices])[:, 0]
            return np.sqrt(np.einsum("ni,ni->n", whitened, whitened))  # type: ignore[no-any-return]
        order = np.argsort(class_indices.astype(np.uint8), kind="stable")  # a radix sort: beans by variety
        ends = np.bincount(class_indices, minlength=len(self.means)).cumsum().tolist()
        whitened = logs[order]
        for variety, (start, end) in enumerate(zip([0, *ends[:-1]], ends, strict=True)):
            if end > start:
                whitened[start:end] = (whitened[start:end] - self.means[variety]) @ self.whitening[variety]
        distances = np.empty(len(logs))
        distances[order] = np.sqrt(np.einsum("ni,ni->n", whitened, whitened))
        return distances


def _log_measurements(rows: Float64Array) -> Float64Array:
    measured = rows[:, _COLUMNS]  # a copy, then in place
    np.maximum(measured, _TINY, out=measured)
    return np.log(measured, out=measured)
