"""A grey-level photo to one pixel mask per bean: smoothed, thresholded (Otsu), holes filled, beans that touch
the frame and specks dropped, touching beans separated by a watershed."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Literal, cast

import numpy as np
from numpy.typing import NDArray
from PIL import Image, ImageFilter
from scipy import ndimage
from skimage.filters import threshold_otsu
from skimage.morphology import local_maxima, reconstruction
from skimage.segmentation import watershed

from api import errors
from photos.hull import convex_area

Background = Literal["light", "dark"]
BACKGROUNDS: tuple[Background, ...] = ("light", "dark")

SMOOTHING_SIGMA = 2.0  # pixels: without it, sensor noise makes the outline ragged and the perimeter ~12% long
MIN_BEAN_PIXELS = 50
SPECK_FRACTION = 0.15  # of the median bean's area: smaller regions are dust, not beans
MAX_FILL_FRACTION = 0.5  # of the photo: a region this large is the background, not a bean
MAX_BEANS = 500
# A region may be several touching beans when it is this far from convex: two touching beans have Solidity 0.88
# to 0.93, and at most 0.954 when the largest bean in the dataset touches the smallest; 99.5% of the dataset's
# beans are above 0.965 (the rest are split for nothing: one bean yields one marker).
MERGED_SOLIDITY = 0.965
# A bean's centre is a maximum of the distance to the background; one that rises less than this fraction of the
# region's largest distance above the saddle to a higher one is the outline's noise, not another bean.
SPLIT_DYNAMIC = 0.2
_EIGHT_CONNECTED = np.ones((3, 3), dtype=bool)


@dataclass(frozen=True, eq=False)
class Region:
    """One bean's pixels: a mask over its bounding box, whose top-left pixel is row `top`, column `left`."""

    mask: NDArray[np.bool_]
    top: int
    left: int

    @cached_property
    def area(self) -> int:
        return int(self.mask.sum())

    @cached_property
    def convex_area(self) -> int:
        return convex_area(self.mask)


def segment(image: NDArray[np.uint8], *, background: Background | None = None,
            max_regions: int = MAX_BEANS) -> list[Region]:
    """Each bean's pixels, in the order of their topmost pixel."""
    # Pillow's Gaussian (three box blurs, symmetric: edges stay put) takes half the time of scipy's on a photo.
    smoothed = np.asarray(Image.fromarray(image).filter(ImageFilter.GaussianBlur(SMOOTHING_SIGMA)))
    foreground, background = _foreground(smoothed, background)
    labels, _ = ndimage.label(foreground, structure=_EIGHT_CONNECTED)
    # Each region's pixels, within its box, for those whose box could hold a bean (no count over the whole photo).
    boxes = ndimage.find_objects(labels)
    masks = {label: labels[box] == label for label, box in enumerate(boxes, start=1)
             if box is not None and _size(box) >= MIN_BEAN_PIXELS}
    areas = {label: int(np.count_nonzero(mask)) for label, mask in masks.items()}
    edges = [set(np.unique(edge).tolist()) - {0} for edge in (labels[0], labels[-1], labels[:, 0], labels[:, -1])]
    _refuse_the_background_as_a_bean(max(areas.values(), default=0), set.intersection(*edges), image.size,
                                     background)
    cut = set().union(*edges)  # beans the frame cuts cannot be measured
    candidates = [label for label, area in areas.items() if area >= MIN_BEAN_PIXELS and label not in cut]
    if not candidates:
        raise errors.PhotoRefused(errors.PHOTO_NO_BEAN.format(background=background, pixels=MIN_BEAN_PIXELS))
    median = float(np.median([areas[label] for label in candidates]))
    smallest = max(MIN_BEAN_PIXELS, SPECK_FRACTION * median)
    kept = [label for label in candidates if areas[label] >= smallest]
    _refuse_too_many(len(kept), max_regions)
    regions = []
    for label in kept:
        box = cast(tuple[slice, slice], boxes[label - 1])  # not None: every kept label has pixels
        region = Region(_fill_holes(masks[label]), box[0].start, box[1].start)
        looks_merged = region.area < MERGED_SOLIDITY * region.convex_area
        regions += [piece for piece in _split(region) if piece.area >= smallest] if looks_merged else [region]
    _refuse_too_many(len(regions), max_regions)
    return regions


def _foreground(smoothed: NDArray[np.uint8], background: Background | None) -> tuple[NDArray[np.bool_], Background]:
    """The pixels on the beans' side of Otsu's threshold, and the background: as given, else the side most of
    the photo's border lies on."""
    if smoothed.min() == smoothed.max():
        raise errors.PhotoRefused(errors.PHOTO_UNIFORM)
    threshold = threshold_otsu(smoothed[::2, ::2])  # every fourth pixel: the same histogram, a quarter the work
    if background is None:
        border = np.concatenate([smoothed[0], smoothed[-1], smoothed[:, 0], smoothed[:, -1]])
        background = "light" if np.median(border) > threshold else "dark"
    return (smoothed <= threshold if background == "light" else smoothed > threshold), background


def _size(box: tuple[slice, slice]) -> int:
    return (box[0].stop - box[0].start) * (box[1].stop - box[1].start)  # type: ignore[no-any-return]


def _refuse_the_background_as_a_bean(largest: int, on_every_edge: set[int], pixels: int,
                                     background: Background) -> None:
    """A region filling most of the photo, or reaching all four edges, is the background seen as a bean."""
    other = BACKGROUNDS[1 - BACKGROUNDS.index(background)]
    advice = errors.PHOTO_BACKGROUND_ADVICE.format(background=background, other=other)
    if largest > MAX_FILL_FRACTION * pixels:
        raise errors.PhotoRefused(errors.PHOTO_REGION_FILLS.format(percent=100 * largest / pixels, advice=advice))
    if on_every_edge:
        raise errors.PhotoRefused(errors.PHOTO_REGION_ON_EVERY_EDGE.format(advice=advice))


def _refuse_too_many(count: int, limit: int) -> None:
    if count > limit:
        raise errors.PhotoRefused(errors.PHOTO_TOO_MANY_BEANS.format(count=count, limit=limit))


def _fill_holes(mask: NDArray[np.bool_]) -> NDArray[np.bool_]:
    """The mask with every background pocket it encloses (a highlight, a speck of the bean's texture) filled."""
    pockets, count = ndimage.label(~mask)
    if count <= 1:
        return mask
    outside = np.unique(np.concatenate([pockets[0], pockets[-1], pockets[:, 0], pockets[:, -1]]))
    return mask | ~np.isin(pockets, outside)  # type: ignore[no-any-return]


def _split(region: Region) -> list[Region]:
    """The region cut into one piece per bean: a watershed of the distance to the background from the maxima
    that stand out (those of its h-maxima transform: each maximum lowered by h, the rest reconstructed under it),
    found on every other pixel of every other row, a quarter of the work."""
    distance = ndimage.distance_transform_edt(region.mask)
    coarse = distance[::2, ::2]
    lowered = reconstruction(coarse - SPLIT_DYNAMIC * coarse.max(), coarse)
    peaks, count = ndimage.label(local_maxima(lowered, connectivity=2), structure=_EIGHT_CONNECTED)
    if count <= 1:
        return [region]
    markers = np.zeros(distance.shape, dtype=np.int32)
    markers[::2, ::2] = peaks
    pieces = watershed(-distance, markers, mask=region.mask)
    return [Region(pieces[box] == label, region.top + box[0].start, region.left + box[1].start)
            for label, box in enumerate(ndimage.find_objects(pieces), start=1) if box is not None]
