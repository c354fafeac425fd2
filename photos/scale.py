"""Features measured at one scale (pixels per millimetre) expressed at another, and the scale read from a
calibration disc of known diameter."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

from api import errors
from data.schema import FEATURES

# Each feature's dimension in pixels: a length 1, an area 2, L/A -1, A/L^3 -1, a ratio 0.
DIMENSIONS = {"Area": 2, "Perimeter": 1, "MajorAxisLength": 1, "MinorAxisLength": 1, "ConvexArea": 2,
              "EquivDiameter": 1, "ShapeFactor1": -1, "ShapeFactor2": -1}
_POWERS = np.array([DIMENSIONS.get(name, 0) for name in FEATURES], dtype=np.float64)
_INDEX = {name: FEATURES.index(name)
          for name in ("MajorAxisLength", "MinorAxisLength", "Solidity", "roundness", "EquivDiameter")}
# A disc photographed square-on: round (Crofton's perimeter of a digitised disc is within ~0.3%), convex, axes equal.
DISC_MIN_ROUNDNESS = 0.95
DISC_MIN_SOLIDITY = 0.98
DISC_MIN_AXIS_RATIO = 0.97


def rescale(rows: NDArray[np.float64], photo_pixels_per_mm: float, model_pixels_per_mm: float) -> NDArray[np.float64]:
    """(n, 16) features measured at the photo's scale, as the model's scale would have measured them."""
    for name, value in (("photo", photo_pixels_per_mm), ("model", model_pixels_per_mm)):
        if not (math.isfinite(value) and value > 0):
            raise errors.PhotoRefused(errors.SCALE_NOT_POSITIVE.format(name=name, value=value))
    factor = model_pixels_per_mm / photo_pixels_per_mm
    return np.asarray(rows, dtype=np.float64) * factor**_POWERS  # type: ignore[no-any-return]


def circularity(features: NDArray[np.float64]) -> float:
    """How disc-like a region is, 0 to 1: roundness x solidity x minor/major axis."""
    minor_over_major = features[_INDEX["MinorAxisLength"]] / features[_INDEX["MajorAxisLength"]]
    return float(features[_INDEX["roundness"]] * features[_INDEX["Solidity"]] * minor_over_major)


def find_disc(rows: Sequence[NDArray[np.float64]], diameter_mm: float) -> tuple[int, float]:
    """Which region is the calibration disc (the most circular one, if it is round enough) and the photo's pixels
    per millimetre that its diameter gives."""
    if not (math.isfinite(diameter_mm) and diameter_mm > 0):
        raise errors.PhotoRefused(errors.DISC_NOT_POSITIVE.format(value=diameter_mm))
    if not rows:
        raise errors.PhotoRefused(errors.NO_DISC_NOTHING_FOUND)
    index = max(range(len(rows)), key=lambda i: circularity(rows[i]))
    disc = rows[index]
    minor_over_major = disc[_INDEX["MinorAxisLength"]] / disc[_INDEX["MajorAxisLength"]]
    if (disc[_INDEX["roundness"]] < DISC_MIN_ROUNDNESS or disc[_INDEX["Solidity"]] < DISC_MIN_SOLIDITY
            or minor_over_major < DISC_MIN_AXIS_RATIO):
        raise errors.PhotoRefused(errors.NO_DISC_ROUND_ENOUGH.format(
            roundness=disc[_INDEX["roundness"]], solidity=disc[_INDEX["Solidity"]], ratio=minor_over_major,
            diameter=diameter_mm))
    return index, float(disc[_INDEX["EquivDiameter"]]) / diameter_mm
