"""A photo's bytes to its beans' features: decoded, segmented, measured, and scaled when the scale is known."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from api import errors
from data.schema import FEATURES
from photos.decode import MAX_MEGAPIXELS, decode
from photos.measure import MeasuredBean, measure
from photos.scale import find_disc, rescale
from photos.segment import BACKGROUNDS, MAX_BEANS, Background, segment

MAX_BYTES = 32_000_000
ASSUMED = "assumed the model's own pixels"  # neither scale known


@dataclass(frozen=True, eq=False)
class Photo:
    """The beans measured in one photo, in pixels of that photo."""

    width: int
    height: int
    pixels_per_mm: float | None  # None: the photo's scale is unknown
    beans: list[MeasuredBean]

    def rows(self, pixels_per_mm: float | None = None) -> NDArray[np.float64]:
        """(n, 16) features in FEATURES order: in the photo's pixels, or in pixels of another scale (the
        model's pixels per millimetre), which needs the photo's own."""
        rows = np.array([bean.features for bean in self.beans], dtype=np.float64).reshape(-1, len(FEATURES))
        if pixels_per_mm is None:
            return rows
        if self.pixels_per_mm is None:
            raise errors.PhotoRefused(errors.PHOTO_SCALE_UNKNOWN)
        return rescale(rows, self.pixels_per_mm, pixels_per_mm)

    def rows_for_model(self, model_pixels_per_mm: float | None) -> tuple[NDArray[np.float64], str]:
        """The features in the model's pixels, converted when both scales are known, and how, in words: a scale
        left unknown is said plainly, never assumed silently."""
        photo = self.pixels_per_mm
        if photo is not None and model_pixels_per_mm is not None:
            return self.rows(model_pixels_per_mm), (f"converted from the photo's {photo:.4g} to the model's "
                                                    f"{model_pixels_per_mm:.4g} pixels per mm")
        if model_pixels_per_mm is not None:
            return self.rows(), (f"assumed the model's own pixels: give pixels_per_mm or disc_mm to convert to the "
                                 f"model's {model_pixels_per_mm:.4g} pixels per mm")
        if photo is not None:
            return self.rows(), (f"assumed the model's own pixels: its scale is unknown, so the photo's {photo:.4g} "
                                 "pixels per mm cannot be converted")
        return self.rows(), ASSUMED


def read_photo(data: bytes, *, background: Background | None = None, pixels_per_mm: float | None = None,
               disc_mm: float | None = None, max_bytes: int = MAX_BYTES, max_megapixels: float = MAX_MEGAPIXELS,
               max_beans: int = MAX_BEANS) -> Photo:
    """Every whole bean in a PNG or JPEG photo of beans apart or touching on a plain background (light or dark:
    None decides from the photo's edges). The scale comes from `pixels_per_mm`, or from a flat disc of diameter
    `disc_mm` photographed with the beans, which is then not counted as a bean; without either it is unknown."""
    if background is not None and background not in BACKGROUNDS:
        raise errors.PhotoRefused(errors.PHOTO_BACKGROUND.format(known=", ".join(BACKGROUNDS),
                                                                  background=errors.shown(background)))
    if pixels_per_mm is not None and disc_mm is not None:
        raise errors.PhotoRefused(errors.PHOTO_TWO_SCALES)
    if pixels_per_mm is not None and not (math.isfinite(pixels_per_mm) and pixels_per_mm > 0):
        raise errors.PhotoRefused(errors.PHOTO_SCALE_NOT_POSITIVE.format(value=pixels_per_mm))
    image = decode(data, max_bytes=max_bytes, max_megapixels=max_megapixels)
    with_disc = disc_mm is not None
    beans = [measure(region) for region in segment(image, background=background, max_regions=max_beans + with_disc)]
    if disc_mm is not None:
        disc, pixels_per_mm = find_disc([bean.features for bean in beans], disc_mm)
        del beans[disc]
        if not beans:
            raise errors.PhotoRefused(errors.PHOTO_ONLY_THE_DISC)
    height, width = image.shape
    return Photo(width, height, pixels_per_mm, beans)
