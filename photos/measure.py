"""One bean's pixels to its 16 Dry Bean features (the dataset's MATLAB regionprops definitions), its centroid,
bounding box and outline."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from skimage.measure import find_contours, regionprops

from data.schema import FEATURES
from photos.segment import Region

MAX_CONTOUR_POINTS = 200
CONTOUR_TOLERANCE = 1.0  # pixels: how far the drawn outline may stray from the mask's


@dataclass(frozen=True, eq=False)
class MeasuredBean:
    """A bean as the dataset describes it, and where it lies in the photo (pixels; x is the column)."""

    features: NDArray[np.float64]  # the 16 FEATURES, in their order
    centroid: tuple[float, float]  # [x, y]
    bbox: tuple[int, int, int, int]  # [x0, y0, x1, y1]: columns x0..x1-1, rows y0..y1-1
    contour: tuple[tuple[float, float], ...]  # [x, y] vertices of the outline, closed (last == first)


def derive(area: float, perimeter: float, major: float, minor: float, convex: float,
           extent: float) -> NDArray[np.float64]:
    """All 16 features, in FEATURES order, from the six measured ones."""
    equivalent_diameter = math.sqrt(4 * area / math.pi)
    compactness = equivalent_diameter / major
    values = {
        "Area": area, "Perimeter": perimeter, "MajorAxisLength": major, "MinorAxisLength": minor,
        "AspectRation": major / minor, "Eccentricity": math.sqrt(max(0.0, 1 - (minor / major) ** 2)),
        "ConvexArea": convex, "EquivDiameter": equivalent_diameter, "Extent": extent,
        "Solidity": area / convex, "roundness": 4 * math.pi * area / perimeter**2, "Compactness": compactness,
        "ShapeFactor1": major / area, "ShapeFactor2": area / major**3, "ShapeFactor3": compactness**2,
        "ShapeFactor4": 4 * area / (math.pi * major * minor),
    }
    return np.array([values[name] for name in FEATURES], dtype=np.float64)


def measure(region: Region) -> MeasuredBean:
    """The bean's features and placement in the photo."""
    props = regionprops(region.mask.astype(np.uint8))[0]
    area = float(region.area)
    # MATLAB's axes: each pixel a unit square, whose own second moment (1/12) adds to its centre's.
    largest, smallest = (float(value) + 1 / 12 for value in props.inertia_tensor_eigvals)
    major, minor = 4 * math.sqrt(largest), 4 * math.sqrt(smallest)
    # No outline is shorter than a circle's of the same area: an estimate below that bound is known to be short.
    perimeter = max(float(props.perimeter_crofton), math.sqrt(4 * math.pi * area))
    top, left, bottom, right = props.bbox
    extent = area / ((bottom - top) * (right - left))
    features = derive(area, perimeter, major, minor, float(region.convex_area), extent)
    row, column = props.centroid_local  # from the moments, as are the axes
    return MeasuredBean(
        features=features,
        centroid=(float(region.left + column), float(region.top + row)),
        bbox=(int(region.left + left), int(region.top + top), int(region.left + right), int(region.top + bottom)),
        contour=_outline(region),
    )


def _outline(region: Region) -> tuple[tuple[float, float], ...]:
    """The mask's outer boundary (between its pixels and the background's centres) as a polygon of at most
    MAX_CONTOUR_POINTS vertices, to the nearest tenth of a pixel."""
    boundary = max(find_contours(np.pad(region.mask, 1).astype(np.float32), 0.5), key=len)
    tolerance = CONTOUR_TOLERANCE
    polygon = simplify(boundary, tolerance)
    while len(polygon) > MAX_CONTOUR_POINTS:
        tolerance *= 2
        polygon = simplify(boundary, tolerance)
    return tuple((round(region.left + column - 1, 1), round(region.top + row - 1, 1))
                 for row, column in polygon.tolist())


def simplify(points: NDArray[np.float64], tolerance: float) -> NDArray[np.float64]:
    """Douglas-Peucker: some of the points, whose polyline stays within `tolerance` of them all; every segment
    split at its farthest point at once, level by level (a dozen array passes, not a call per vertex)."""
    keep = np.zeros(len(points), dtype=bool)
    keep[[0, -1]] = True
    while True:
        kept = np.flatnonzero(keep)
        starts, ends = kept[:-1], kept[1:]
        segment = np.repeat(np.arange(len(starts)), ends - starts)  # points start..end-1 of each segment
        first, last, where = points[starts][segment], points[ends][segment], points[: len(segment)]
        along = last - first
        length = np.einsum("ij,ij->i", along, along)
        t = np.clip(np.einsum("ij,ij->i", where - first, along) / np.where(length > 0, length, 1.0), 0.0, 1.0)
        distance = np.hypot(*(where - first - t[:, np.newaxis] * along).T)
        farthest = np.maximum.reduceat(distance, starts)
        splits = np.flatnonzero(farthest > tolerance)
        if not splits.size:
            return points[keep]  # type: ignore[no-any-return]
        at_farthest = np.flatnonzero(distance == farthest[segment])
        segments, first_at = np.unique(segment[at_farthest], return_index=True)
        keep[at_farthest[first_at][np.isin(segments, splits)]] = True
