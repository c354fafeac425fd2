"""Synthetic photos of beans whose true shape is known: each bean a superellipse drawn from a dataset row.

A superellipse |x/a|^n + |y/b|^n <= 1 (n >= 2: an ellipse at 2, boxier above) has closed forms for its area and
second moments, so a row's MajorAxisLength and MinorAxisLength fix a and b, and its ShapeFactor4 = 4A/(pi L l),
which depends on n alone (1 at n = 2, falling towards 3/pi), fixes n: the drawn bean has the row's Area and axes.
Used by tests/test_photos.py and tests/benchmarks/photo_bench.py.
"""

from __future__ import annotations

import io
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
from numpy.typing import NDArray
from PIL import Image
from scipy import ndimage
from scipy.optimize import brentq
from scipy.special import gammaln

from data.schema import FEATURES

ROOT = Path(__file__).resolve().parents[1]
DATASET = Path(os.environ.get("DRYBEAN_DATA") or ROOT.parent / "shared" / "data" / "Dry_Bean_Dataset.csv")
LEVELS = {"light": (210.0, 70.0), "dark": (35.0, 190.0)}  # background: (background, bean) grey levels
MAX_EXPONENT = 40.0  # boxier superellipses than this have corners no bean has
SUBSAMPLES = 8  # per side, in the pixels the outline crosses
BOUNDARY_POINTS = 100_000  # of the outline, for the perimeter and the bounding box

_AREA, _MAJOR, _MINOR, _SF4 = (FEATURES.index(name) for name in ("Area", "MajorAxisLength", "MinorAxisLength",
                                                                  "ShapeFactor4"))


def _area_factor(n: float) -> float:
    """Area / (4ab) of the superellipse: Gamma(1+1/n)^2 / Gamma(1+2/n)."""
    return math.exp(2 * gammaln(1 + 1 / n) - gammaln(1 + 2 / n))


def _variance_factor(n: float) -> float:
    """Variance of x over the region / a^2: Gamma(3/n) Gamma(1+2/n) / (Gamma(1/n) Gamma(1+4/n))."""
    return math.exp(gammaln(3 / n) + gammaln(1 + 2 / n) - gammaln(1 / n) - gammaln(1 + 4 / n))


def shape_factor4(n: float) -> float:
    """4A / (pi L l) of any superellipse of exponent n (L, l: its second-moment axes, 4 standard deviations)."""
    return _area_factor(n) / (math.pi * _variance_factor(n))


@dataclass(frozen=True)
class Superellipse:
    """|x/a|^n + |y/b|^n <= 1 in its own frame, turned by `angle` degrees (counter-clockwise on screen: y down)
    about its centre (x, y) in pixels."""

    a: float
    b: float
    n: float
    angle: float = 0.0
    center: tuple[float, float] = (0.0, 0.0)

    @classmethod
    def from_row(cls, row: Sequence[float] | NDArray[np.float64], angle: float = 0.0,
                 center: tuple[float, float] = (0.0, 0.0)) -> Superellipse:
        """The superellipse with the row's axes and ShapeFactor4 (hence its Area)."""
        target = float(row[_SF4])
        if target >= 1.0:
            n = 2.0
        elif target <= shape_factor4(MAX_EXPONENT):
            raise ValueError(f"ShapeFactor4 {target} is below what a superellipse up to n={MAX_EXPONENT} reaches")
        else:
            n = brentq(lambda exponent: shape_factor4(exponent) - target, 2.0, MAX_EXPONENT, xtol=1e-12)
        scale = 4 * math.sqrt(_variance_factor(n))
        return cls(float(row[_MAJOR]) / scale, float(row[_MINOR]) / scale, n, angle, center)

    @property
    def area(self) -> float:
        return 4 * self.a * self.b * _area_factor(self.n)

    @property
    def major_axis(self) -> float:
        return 4 * self.a * math.sqrt(_variance_factor(self.n))

    @property
    def minor_axis(self) -> float:
        return 4 * self.b * math.sqrt(_variance_factor(self.n))

    @cached_property
    def outline(self) -> NDArray[np.float64]:
        """(BOUNDARY_POINTS, 2) [x, y] along the outline, in image coordinates."""
        t = np.linspace(0.0, 2 * np.pi, BOUNDARY_POINTS, endpoint=False)
        cos, sin = np.cos(t), np.sin(t)
        u = self.a * np.sign(cos) * np.abs(cos) ** (2 / self.n)
        v = self.b * np.sign(sin) * np.abs(sin) ** (2 / self.n)
        turn = math.radians(self.angle)
        x = self.center[0] + u * math.cos(turn) - v * math.sin(turn)
        y = self.center[1] + u * math.sin(turn) + v * math.cos(turn)
        return np.column_stack([x, y])

    @cached_property
    def perimeter(self) -> float:
        outline = self.outline
        return float(np.linalg.norm(np.diff(outline, axis=0, append=outline[:1]), axis=1).sum())

    def support(self, direction: tuple[float, float]) -> float:
        """How far the shape reaches from its centre along the unit vector `direction`."""
        offsets = self.outline - np.asarray(self.center)
        return float((offsets @ np.asarray(direction)).max())

    @property
    def extent(self) -> float:
        """Area over the area of the image-aligned bounding box."""
        width = self.support((1.0, 0.0)) + self.support((-1.0, 0.0))
        height = self.support((0.0, 1.0)) + self.support((0.0, -1.0))
        return self.area / (width * height)

    def moved(self, dx: float, dy: float) -> Superellipse:
        return Superellipse(self.a, self.b, self.n, self.angle, (self.center[0] + dx, self.center[1] + dy))

    def inside(self, x: NDArray[np.float64], y: NDArray[np.float64]) -> NDArray[np.float64]:
        """(|u/a|^n + |v/b|^n)^(1/n) - 1 at image points: negative inside, about distance / radius outside."""
        turn = math.radians(self.angle)
        dx, dy = x - self.center[0], y - self.center[1]
        u = dx * math.cos(turn) + dy * math.sin(turn)
        v = -dx * math.sin(turn) + dy * math.cos(turn)
        return (np.abs(u / self.a) ** self.n + np.abs(v / self.b) ** self.n) ** (1 / self.n) - 1  # type: ignore[no-any-return]

    def coverage(self, height: int, width: int) -> tuple[tuple[slice, slice], NDArray[np.float64]]:
        """The fraction of each pixel the shape covers (pixel (i, j) spans x in j +- 0.5, y in i +- 0.5), within
        the shape's bounding box: (rows, columns) slices into the image and the fractions there."""
        x, y = self.center
        x0 = max(0, math.floor(x - self.support((-1.0, 0.0))) - 1)
        x1 = min(width, math.ceil(x + self.support((1.0, 0.0))) + 2)
        y0 = max(0, math.floor(y - self.support((0.0, -1.0))) - 1)
        y1 = min(height, math.ceil(y + self.support((0.0, 1.0))) + 2)
        ys, xs = np.mgrid[y0:y1, x0:x1].astype(np.float64)
        level = self.inside(xs, ys)
        fraction = (level < 0).astype(np.float64)
        # Pixels the outline may cross (level x radius is the radial distance to it): supersampled.
        near = np.abs(level) * min(self.a, self.b) < 3.0
        offsets = (np.arange(SUBSAMPLES) + 0.5) / SUBSAMPLES - 0.5
        sub_y, sub_x = np.meshgrid(offsets, offsets, indexing="ij")
        px = xs[near][:, np.newaxis] + sub_x.ravel()
        py = ys[near][:, np.newaxis] + sub_y.ravel()
        fraction[near] = (self.inside(px, py) < 0).mean(axis=1)
        return (slice(y0, y1), slice(x0, x1)), fraction


@dataclass(frozen=True)
class Rendered:
    """A synthetic photo and the beans drawn in it, in drawing order."""

    image: NDArray[np.uint8]
    beans: list[Superellipse]

    def encode(self, format: str = "PNG", quality: int = 95) -> bytes:  # Pillow's name for it
        return encode(self.image, format, quality)


def render(beans: Sequence[Superellipse], width: int, height: int, *,
           background: Literal["light", "dark"] = "light", blur: float = 0.0, noise: float = 0.0,
           seed: int = 0) -> Rendered:
    """Draw the beans anti-aliased on a uniform background, then blur (Gaussian sigma, pixels) and add normal
    noise (standard deviation, grey levels)."""
    background_level, bean_level = LEVELS[background]
    covered = np.zeros((height, width), dtype=np.float32)
    for bean in beans:
        box, fraction = bean.coverage(height, width)
        covered[box] += fraction.astype(np.float32)
    image = background_level + (bean_level - background_level) * np.minimum(covered, 1.0)  # overlaps: drawn once
    if blur:
        image = ndimage.gaussian_filter(image, blur)
    if noise:
        image += np.random.default_rng(seed).normal(0.0, noise, image.shape).astype(np.float32)
    return Rendered(np.clip(np.rint(image), 0, 255).astype(np.uint8), list(beans))


def disc_row(radius: float) -> NDArray[np.float64]:
    """A row drawing a disc of this radius (pixels): what `scatter` needs to place a calibration disc."""
    row = np.zeros(len(FEATURES))
    row[[_AREA, _MAJOR, _MINOR, _SF4]] = math.pi * radius**2, 2 * radius, 2 * radius, 1.0
    return row


def touching(first: Superellipse, row: Sequence[float] | NDArray[np.float64], angle: float, direction: float,
             overlap: float = 0.0) -> Superellipse:
    """The bean drawn from `row`, turned by `angle`, placed against `first` from `direction` (degrees, image
    coordinates): as close as the outlines allow without crossing, then pressed `overlap` pixels further in (two
    beans whose outlines curve with radius R then share a lens of about 1.3 sqrt(R) overlap^1.5 pixels)."""
    second = Superellipse.from_row(row, angle)
    unit = np.array([math.cos(math.radians(direction)), math.sin(math.radians(direction))])
    first_outline, second_outline = first.outline[::10], second.outline[::10]

    def crossing(distance: float) -> bool:
        offset = np.asarray(first.center) + distance * unit
        placed = second.moved(*offset)
        return bool((first.inside(*(second_outline + offset).T) < 0).any()
                    or (placed.inside(*first_outline.T) < 0).any())

    # Apart once the line across `direction` between their supports separates them; crossing at distance 0.
    near, far = 0.0, first.support(tuple(unit)) + second.support(tuple(-unit))
    while far - near > 1e-3:
        middle = (near + far) / 2
        near, far = (middle, far) if crossing(middle) else (near, middle)
    return second.moved(*(np.asarray(first.center) + (far - overlap) * unit))


def scatter(rows: NDArray[np.float64], width: int, height: int, *, pairs: int = 0, overlap: float = 1.0,
            gap: float = 12.0, seed: int = 0, tries: int = 5000) -> list[Superellipse]:
    """The rows' beans, in the rows' order, at random angles and places: the last 2 x `pairs` rows as pairs of
    touching beans (pressed together by `overlap` pixels), the others apart; the bounding boxes of beans and pairs
    `gap` pixels apart and from the photo's edges (placed largest first)."""
    rng = np.random.default_rng(seed)
    singles = len(rows) - 2 * pairs
    groups = [[Superellipse.from_row(row, angle=float(rng.uniform(0, 180)))] for row in rows[:singles]]
    for first_row, second_row in zip(rows[singles::2], rows[singles + 1::2], strict=True):
        first = Superellipse.from_row(first_row, angle=float(rng.uniform(0, 180)))
        second = touching(first, second_row, float(rng.uniform(0, 180)), float(rng.uniform(0, 360)), overlap)
        groups.append([first, second])
    placed: dict[int, tuple[list[Superellipse], tuple[float, float, float, float]]] = {}
    for index in sorted(range(len(groups)), key=lambda i: -sum(bean.area for bean in groups[i])):
        group = groups[index]
        left = min(bean.center[0] - bean.support((-1.0, 0.0)) for bean in group) - gap
        right = max(bean.center[0] + bean.support((1.0, 0.0)) for bean in group) + gap
        top = min(bean.center[1] - bean.support((0.0, -1.0)) for bean in group) - gap
        bottom = max(bean.center[1] + bean.support((0.0, 1.0)) for bean in group) + gap
        for _ in range(tries):
            x, y = float(rng.uniform(-left, width - right)), float(rng.uniform(-top, height - bottom))
            box = (x + left, y + top, x + right, y + bottom)
            if all(box[2] <= other[0] or other[2] <= box[0] or box[3] <= other[1] or other[3] <= box[1]
                   for _, other in placed.values()):
                placed[index] = ([bean.moved(x, y) for bean in group], box)
                break
        else:
            raise ValueError(f"{len(rows)} beans do not fit apart in {width} x {height} pixels")
    return [bean for index in range(len(groups)) for bean in placed[index][0]]


def encode(image: NDArray[np.uint8], format: str = "PNG", quality: int = 95) -> bytes:
    """The image as PNG or JPEG bytes."""
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format=format, quality=quality)
    return buffer.getvalue()


def held_out_rows(count: int, seed: int = 0, dataset: Path = DATASET) -> pd.DataFrame:
    """`count` rows of the tutorial's held-out part (train.py's split), at random, that a superellipse can draw."""
    from sklearn.model_selection import train_test_split

    from model.training import RANDOM_STATE, TEST_SIZE

    frame = pd.read_csv(dataset)
    _, held_out = train_test_split(np.arange(len(frame)), test_size=TEST_SIZE, random_state=RANDOM_STATE)
    rows = frame.iloc[np.sort(held_out)]
    rows = rows[rows["ShapeFactor4"] > shape_factor4(MAX_EXPONENT)]
    return rows.sample(count, random_state=seed).reset_index(drop=True)
