"""Conformal prediction sets: the varieties that together hold a bean's true variety with a requested probability.

Split conformal with the LAC score, 1 - (calibrated probability of the true variety), calibrated on the out-of-fold
probabilities of the training beans (beans the scoring model never saw, like the beans served). For a coverage c
and n calibration beans, the set keeps every variety whose probability reaches the ceil((n + 1) c)-th largest
true-variety probability of the calibration beans, which is the ceil((n + 1) c)/n quantile of the scores; then a
new bean's true variety is in its set with probability at least c, on average over beans (marginal coverage, not
per variety nor per bean).

LAC rather than an adaptive score (APS): its sets may be empty (no variety is probable enough, 2% of the holdout
at 0.90), which is what keeps the coverage near 0.90 although the most probable variety alone is right for 93% of
beans; a set that always holds the most probable variety, as APS's without randomisation, covers at least 93%.
Randomised APS reaches 0.90 by chance instead, answering the same bean differently twice.

The thresholds are kept on a grid of coverages, 0.500 to 0.999 by 0.001, each computed exactly: 500 numbers in
the model's YAML metadata rather than all 9,527 calibration scores. A coverage between grid points takes the next
point up, so a set never covers less than asked.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

METHOD = "split conformal, LAC score (1 - calibrated probability of the true variety), out-of-fold calibration"
MIN_COVERAGE = 0.5
MAX_COVERAGE = 0.999
_GRID_STEP = 1000  # grid points per unit of coverage: 0.001 apart
_GRID = range(round(MIN_COVERAGE * _GRID_STEP), round(MAX_COVERAGE * _GRID_STEP) + 1)  # in thousandths


@dataclass(frozen=True)
class ConformalSets:
    """The probability a variety needs to enter a bean's prediction set, at each coverage of the grid."""

    thresholds: tuple[float, ...]  # at coverages 0.500, 0.501, ..., 0.999
    calibration_beans: int

    def __post_init__(self) -> None:
        if len(self.thresholds) != len(_GRID):
            raise ValueError(f"expected {len(_GRID)} thresholds (coverages {MIN_COVERAGE} to {MAX_COVERAGE} by "
                             f"{1 / _GRID_STEP}), got {len(self.thresholds)}")

    @classmethod
    def fit(cls, probabilities: npt.ArrayLike, true_indices: npt.ArrayLike) -> ConformalSets:
        """Calibrate on out-of-fold calibrated `probabilities` (beans x varieties) of beans whose true varieties
        are `true_indices` (column indices)."""
        probabilities = np.asarray(probabilities, dtype=np.float64)
        n = len(probabilities)
        largest_first = -np.sort(-probabilities[np.arange(n), np.asarray(true_indices)])
        # rank k = ceil((n + 1) c) in integers, c = g / 1000; beyond n, only threshold 0 (every variety) covers.
        ranks = [-(-(n + 1) * g // _GRID_STEP) for g in _GRID]
        return cls(tuple(float(largest_first[k - 1]) if k <= n else 0.0 for k in ranks), n)

    @classmethod
    def from_metadata(cls, metadata: Mapping[str, Any]) -> ConformalSets:
        """The sets saved by `to_metadata`; ValueError when they are malformed."""
        try:
            return cls(tuple(float(t) for t in metadata["thresholds"]), int(metadata["calibration_beans"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"the model's conformal metadata ('trust.conformal') is unusable ({exc!r})") from None

    def to_metadata(self) -> dict[str, Any]:
        """What the model store keeps (plain lists and floats)."""
        return {"method": METHOD, "coverages": {"first": MIN_COVERAGE, "last": MAX_COVERAGE, "step": 1 / _GRID_STEP},
                "calibration_beans": self.calibration_beans, "thresholds": list(self.thresholds)}

    def threshold(self, coverage: float) -> float:
        """The probability a variety needs to be in the set at `coverage` (in [0.5, 0.999]; off the grid, the
        next grid point up)."""
        if not MIN_COVERAGE <= coverage <= MAX_COVERAGE:
            raise ValueError(f"coverage {coverage} is outside [{MIN_COVERAGE}, {MAX_COVERAGE}]")
        # 1e-9: a grid point written in decimal (0.95) lands a rounding error either side of it
        return self.thresholds[math.ceil(coverage * _GRID_STEP - 1e-9) - _GRID.start]

    def sets(self, probabilities: npt.ArrayLike, coverage: float) -> npt.NDArray[np.bool_]:
        """Each bean's prediction set (beans x varieties: True for the varieties in it) from calibrated
        `probabilities`, at `coverage`."""
        return np.asarray(probabilities, dtype=np.float64) >= self.threshold(coverage)


def named_sets(sets: npt.NDArray[np.bool_], classes: Sequence[str]) -> list[tuple[str, ...]]:
    """Each bean's prediction set as variety names (in `classes` order). Beans share a few distinct sets: each is
    named once, found by its code (a bit per variety): 1 ms for 10,000 beans, where naming each bean's took 50."""
    codes = (sets.astype(np.int64) @ (1 << np.arange(len(classes), dtype=np.int64))).tolist()
    named = {code: tuple(name for bit, name in enumerate(classes) if code >> bit & 1) for code in set(codes)}
    return [named[code] for code in codes]
