"""The pixel count of a mask's convex hull (MATLAB's ConvexArea, scikit-image's area_convex), counted row by row
from the hull's edges rather than by testing every pixel of the bounding box."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray
from scipy.spatial import ConvexHull

# A pixel stands for the diamond through the middles of its sides, as in scikit-image's convex_hull_image.
_DIAMOND = np.array([[-0.5, 0.0], [0.5, 0.0], [0.0, -0.5], [0.0, 0.5]])
_TOLERANCE = 1e-9  # pixel centres on the hull's edges count as inside


def convex_area(mask: NDArray[np.bool_]) -> int:
    """How many pixel centres lie in (or on) the convex hull of the mask's pixels."""
    rows = np.flatnonzero(mask.any(axis=1))
    width = mask.shape[1]
    first = mask[rows].argmax(axis=1)
    last = width - 1 - mask[rows, ::-1].argmax(axis=1)
    ends = np.column_stack([np.concatenate([rows, rows]), np.concatenate([first, last])]).astype(np.float64)
    hull = ConvexHull((ends[:, np.newaxis, :] + _DIAMOND).reshape(-1, 2))
    # Facets n . (row, column) + c <= 0: on each row of centres, bounds on the column.
    normal_row, normal_column, offset = hull.equations.T
    centre_rows = np.arange(rows[0], rows[-1] + 1, dtype=np.float64)[:, np.newaxis]
    with np.errstate(divide="ignore", invalid="ignore"):
        bound = (-offset - normal_row * centre_rows) / normal_column
    lower = np.where(normal_column < 0, bound, -np.inf).max(axis=1)
    upper = np.where(normal_column > 0, bound, np.inf).min(axis=1)
    counts = np.floor(upper + _TOLERANCE) - np.ceil(lower - _TOLERANCE) + 1
    return int(np.maximum(counts, 0).sum())
